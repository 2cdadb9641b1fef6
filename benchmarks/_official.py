"""Run jwst 3.0.0's ``Coron3Pipeline`` offline on a (simulated) coron3 programme, with per-step timing.

Used by ``benchmarks/bench_pipeline.py`` and importable by tests.  Three pieces:

* :func:`offline_crds` — the no-network CRDS set-up of spec section 12: a private ``CRDS_PATH``
  holding ``config/jwst/server_config``, a ``CRDS_SERVER_URL`` containing ``serverless`` on a
  never-resolving domain, ``CRDS_CONTEXT=jwst_0000.pmap``, ``CRDS_MODE=local`` and
  ``STPIPE_DISABLE_CRDS_STEPPARS=true``.
* :func:`prepare_programme` — copy an association and its members into a work directory and
  attach a gWCS to every member (``resample`` needs one): each calints is opened as a
  ``CubeModel``, ``meta.wcs`` is set to a gWCS built from the SCI header's FITS TAN WCS
  (Shift | Affine(PC) | Scale | Pix2Sky_TAN | RotateNative2Celestial, bounding box
  -0.5 .. n-0.5, as in ``tests/test_resample_parity.py``) and ``meta.wcsinfo`` is filled in.
* :func:`run_official` — ``Coron3Pipeline`` with ``align_refs.override_psfmask``, every
  sub-step's ``run`` and every ``save_model`` wrapped with a timer, so one run gives the
  end-to-end wall time and the time per step (the same grouping as coron3_dask's stages).
  ``fit_dtype="float64"`` runs it with :func:`float64_shift_fit` in force.
* :func:`float64_shift_fit` — a context manager that makes jwst's ``align_refs`` shift fit
  run in float64 (and changes nothing else); see its docstring for exactly what is patched.

No pixels are changed by :func:`prepare_programme`; only the ASDF extension and WCS keywords
are added.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OFFLINE_CONTEXT", "STEPS", "OfficialRun", "attach_gwcs", "build_gwcs", "copy_psfmask",
           "float64_shift_fit", "offline_crds", "offline_crds_env", "prepare_programme", "run_official"]

OFFLINE_CONTEXT = "jwst_0000.pmap"
#: official sub-steps, in the grouping used for coron3_dask's stages
STEPS = ("outlier_detection", "stack_refs", "align_refs", "klip", "resample")


def offline_crds_env(root: str | Path) -> dict[str, str]:
    """Create a private CRDS cache under ``root`` and return the environment that uses it offline.

    Parameters
    ----------
    root : path
        Directory for the cache (created); ``config/jwst/server_config`` is written in it.

    Returns
    -------
    dict
        ``CRDS_PATH``, ``CRDS_SERVER_URL``, ``CRDS_MODE``, ``CRDS_CONTEXT``,
        ``STPIPE_DISABLE_CRDS_STEPPARS``.
    """
    root = Path(root).resolve()
    config = root / "config" / "jwst"
    config.mkdir(parents=True, exist_ok=True)
    # crds 14.0.3 reads ``last_synced`` and ``force_remote_mode`` from the cached server config
    # when it has no server (AttributeError without them)
    (config / "server_config").write_text(repr({
        "observatory": "jwst", "operational_context": OFFLINE_CONTEXT, "last_synced": "offline (benchmark cache)",
        "force_remote_mode": False}))
    return {"CRDS_PATH": str(root), "CRDS_SERVER_URL": "https://jwst-serverless.invalid",
            "CRDS_MODE": "local", "CRDS_CONTEXT": OFFLINE_CONTEXT, "STPIPE_DISABLE_CRDS_STEPPARS": "true"}


@contextlib.contextmanager
def offline_crds(root: str | Path | None = None) -> Iterator[dict[str, str]]:
    """Set the offline CRDS environment for the duration of the block (restored afterwards).

    Must be entered before ``crds``/``jwst`` read their configuration (the CRDS client caches
    the server URL at import), so import jwst inside the block.
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="crds_offline_"))
        env = offline_crds_env(root)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def build_gwcs(header: Mapping[str, Any], shape: tuple[int, int]) -> Any:
    """gWCS equal to a FITS TAN WCS (CRPIX, PC, CDELT, CRVAL), bounding box -0.5 .. n - 0.5.

    Parameters
    ----------
    header : mapping
        SCI header cards (``CRPIX1/2``, ``PC1_1`` .. ``PC2_2``, ``CDELT1/2``, ``CRVAL1/2``).
    shape : (ny, nx)
        Frame shape.
    """
    import gwcs
    import numpy as np
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as m
    from gwcs import coordinate_frames as cf

    pc = np.array([[header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
                   [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)]], dtype=float)
    transform = (m.Shift(-(header["CRPIX1"] - 1)) & m.Shift(-(header["CRPIX2"] - 1))
                 | m.AffineTransformation2D(matrix=pc)
                 | m.Scale(header["CDELT1"]) & m.Scale(header["CDELT2"]) | m.Pix2Sky_TAN()
                 | m.RotateNative2Celestial(header["CRVAL1"], header["CRVAL2"], 180))
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    w = gwcs.WCS([(detector, transform), (sky, None)])
    w.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    w.pixel_shape = (shape[1], shape[0])
    return w


_WCSINFO = {"ra_ref": "RA_REF", "dec_ref": "DEC_REF", "roll_ref": "ROLL_REF", "v2_ref": "V2_REF",
            "v3_ref": "V3_REF", "v3yangle": "V3I_YANG", "vparity": "VPARITY", "s_region": "S_REGION",
            "crpix1": "CRPIX1", "crpix2": "CRPIX2", "crval1": "CRVAL1", "crval2": "CRVAL2",
            "cdelt1": "CDELT1", "cdelt2": "CDELT2", "pc1_1": "PC1_1", "pc1_2": "PC1_2", "pc2_1": "PC2_1",
            "pc2_2": "PC2_2", "ctype1": "CTYPE1", "ctype2": "CTYPE2", "cunit1": "CUNIT1", "cunit2": "CUNIT2",
            "wcsaxes": "WCSAXES"}


def attach_gwcs(src: str | Path, dst: str | Path) -> Path:
    """Write ``src`` (a calints) to ``dst`` as a ``CubeModel`` carrying a gWCS built from its SCI header."""
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    src, dst = Path(src), Path(dst)
    header = fits.getheader(src, "SCI")
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    with datamodels.CubeModel(str(src)) as model:
        model.meta.wcs = build_gwcs(header, shape)
        info = model.meta.wcsinfo
        for attr, key in _WCSINFO.items():
            if key in header:
                setattr(info, attr, header[key])
        if "PIXAR_SR" in header:
            model.meta.photometry.pixelarea_steradians = float(header["PIXAR_SR"])
            model.meta.photometry.pixelarea_arcsecsq = float(header["PIXAR_A2"])
        model.meta.filename = dst.name
        model.save(str(dst), overwrite=True)
    return dst


def prepare_programme(asn_path: str | Path, work_dir: str | Path) -> Path:
    """Copy an association and its members to ``work_dir``, each member with a gWCS.

    Parameters
    ----------
    asn_path : path
        coron3 association JSON (members relative to it, as ``simulate_programme`` writes).
    work_dir : path
        Destination (created).

    Returns
    -------
    Path
        The copied association.
    """
    asn_path, work = Path(asn_path), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    asn = json.loads(asn_path.read_text())
    for product in asn["products"]:
        for member in product["members"]:
            name = Path(member["expname"]).name
            attach_gwcs(asn_path.parent / member["expname"], work / name)
            member["expname"] = name
    out = work / asn_path.name
    out.write_text(json.dumps(asn, indent=2))
    return out


@dataclass
class OfficialRun:
    """Timings of one ``Coron3Pipeline`` run (seconds)."""

    wall: float
    #: user + sys CPU seconds of this process (and any reaped children) during the run
    cpu: float
    #: step alias (plus ``read``, ``write``, ``other``) -> seconds of wall time, summed over calls
    steps: dict[str, float] = field(default_factory=dict)
    #: step alias -> number of calls
    calls: dict[str, int] = field(default_factory=dict)
    products: list[Path] = field(default_factory=list)


def _cpu_seconds() -> float:
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class _Timer:
    """Exclusive wall time per name: a timed call nested in another is charged to itself only."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []  # time spent in nested timed calls, per open call

    def wrap(self, fn: Any, name: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                nested = self._stack.pop()
                self.spent[name] += elapsed - nested
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1] += elapsed
        return wrapper


@contextlib.contextmanager
def float64_shift_fit() -> Iterator[None]:
    """Make jwst's ``align_refs`` shift fit run in float64 for the duration of the block.

    jwst 3.0.0 fits each reference integration's shift in
    ``jwst.coron.imageregistration.align_fourier_lsq(reference, target, mask)``: a
    ``scipy.optimize.leastsq`` (MINPACK, forward-difference Jacobian) of the residual
    ``((target - beta * fourier_imshift(reference, (sx, sy))) * mask).ravel()``.  It is called
    by ``align_array`` (looked up as a module global at each call), which ``align_models``
    calls with ``reference = science.data[0]``, ``target = psf.data`` and ``mask = psfmask.data``:
    all float32.  numpy >= 2 keeps float32 through ``fft`` (and ``ndimage.fourier_shift``
    through complex64), so the shifted reference is computed in float32; the residual comes
    out float64 only because ``beta`` is a numpy float64, so its precision (and that of the
    forward-difference Jacobian, whose shift steps are ~1e-8 px) is float32's.

    Patched: the module attribute ``jwst.coron.imageregistration.align_fourier_lsq`` is
    replaced by a wrapper that casts ``reference``, ``target`` and ``mask`` (when not None)
    to float64 and calls the original function (same ``leastsq`` call, same tolerances).
    Nothing else changes: the fitted shifts were float64 already, and the aligned PSFs are
    still ``fourier_imshift(psf.data, -shifts)`` of the unchanged float32 data.  The original
    is restored on exit.
    """
    import numpy as np
    from jwst.coron import imageregistration

    original = imageregistration.align_fourier_lsq

    def align_fourier_lsq_float64(reference: Any, target: Any, mask: Any = None) -> Any:
        reference = np.asarray(reference, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if mask is not None:
            mask = np.asarray(mask, dtype=np.float64)
        return original(reference, target, mask=mask)

    imageregistration.align_fourier_lsq = align_fourier_lsq_float64
    try:
        yield
    finally:
        imageregistration.align_fourier_lsq = original


@contextlib.contextmanager
def _timed_fit(total: list[float]) -> Iterator[None]:
    """Add the process CPU time spent in jwst's shift fit (``align_fourier_lsq``) to ``total[0]``."""
    from jwst.coron import imageregistration

    fit = imageregistration.align_fourier_lsq

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fit(*args, **kwargs)
        finally:
            total[0] += time.process_time() - start

    imageregistration.align_fourier_lsq = timed
    try:
        yield
    finally:
        imageregistration.align_fourier_lsq = fit


def run_official(asn_path: str | Path, psfmask: str | Path, output_dir: str | Path, *,
                 save_results: bool = True, crds_root: str | Path | None = None,
                 step_pars: Mapping[str, Mapping[str, Any]] | None = None, quiet: bool = True,
                 fit_dtype: str | None = None) -> OfficialRun:
    """Run ``Coron3Pipeline`` offline on ``asn_path`` (members must carry a gWCS) and time its steps.

    Parameters
    ----------
    asn_path : path
        Association from :func:`prepare_programme`.
    psfmask : path
        PSFMASK reference file (``align_refs.override_psfmask``).
    output_dir : path
        Where the products go (created).
    save_results : bool
        Write the crfints too (as ``strun`` does; coron3_dask writes them by default).
    crds_root : path, optional
        Private CRDS cache (default: a temporary directory).
    step_pars : mapping, optional
        Extra per-step parameters, e.g. ``{"klip": {"truncate": 20}}``.
    quiet : bool
        Raise the stpipe/jwst loggers to WARNING (logging is part of the cost; INFO logging of
        ~100 lines per run is negligible next to the steps).
    fit_dtype : {None, "float32", "float64"}
        ``"float64"``: fit the ``align_refs`` shifts in float64 (:func:`float64_shift_fit`);
        None or ``"float32"``: jwst as released (float32 inputs to the fit).

    Returns
    -------
    OfficialRun
        ``steps`` holds, per step alias, the wall time of its ``run`` calls excluding the
        crfints writes (``write`` holds every product write: crfints, psfstack, psfalign,
        psfsub, i2d); ``read`` is the association read (``prepare_output``: every member
        opened); ``other`` is the remainder (reference prefetch, header blending, splitting
        psfsub into images, ``gc.collect`` calls, ...).
    """
    import logging

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with offline_crds(crds_root):
        from jwst.pipeline import Coron3Pipeline

        if quiet:
            for name in ("stpipe", "jwst", "stcal", "stdatamodels", "crds", "py.warnings"):
                logging.getLogger(name).setLevel(logging.WARNING)
        pars: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (step_pars or {}).items()}
        pars.setdefault("align_refs", {})["override_psfmask"] = str(psfmask)
        pipe = Coron3Pipeline(output_dir=str(output_dir), save_results=save_results, steps=pars)
        timer = _Timer()
        for name in STEPS:
            step = getattr(pipe, name)
            step.run = timer.wrap(step.run, name)
            step.save_model = timer.wrap(step.save_model, "write")
        pipe.save_model = timer.wrap(pipe.save_model, "write")
        pipe.prepare_output = timer.wrap(pipe.prepare_output, "read")
        if fit_dtype not in (None, "float32", "float64"):
            raise ValueError(f"fit_dtype must be None, 'float32' or 'float64', not {fit_dtype!r}")
        before = {p.name for p in output_dir.iterdir()}
        fit_cpu = [0.0]
        with float64_shift_fit() if fit_dtype == "float64" else contextlib.nullcontext(), \
                _timed_fit(fit_cpu):
            cpu0 = _cpu_seconds()
            start = time.perf_counter()
            pipe.run(str(asn_path))
            wall = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu0
    steps = dict(timer.spent)
    steps["other"] = wall - sum(steps.values())
    steps["align_fit_cpu"] = fit_cpu[0]  # inside align_refs: the CPU time of the shift fits alone
    products = sorted(p for p in output_dir.iterdir() if p.name not in before)
    return OfficialRun(wall, cpu, steps, dict(timer.calls), products)


def copy_psfmask(psfmask: str | Path, work_dir: str | Path) -> Path:
    """Copy the PSFMASK beside the prepared programme (convenience for tests)."""
    dst = Path(work_dir) / Path(psfmask).name
    shutil.copy2(psfmask, dst)
    return dst
