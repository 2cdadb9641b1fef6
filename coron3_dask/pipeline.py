"""Build the calwebb_coron3 graph lazily, then write every product with one compute.

Processing order follows jwst's ``Coron3Pipeline`` (spec section 1.2): outlier detection of
every PSF exposure, stack_refs, then per science exposure outlier detection, align_refs,
klip; finally resample of all science integrations.  ``build`` returns lazy datasets and
computes nothing; ``run`` turns them into write tasks and calls ``dask.compute`` once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from coron3_dask import dq, files, schema
from coron3_dask.config import Coron3Config
from coron3_dask.files import metadata
from coron3_dask.files.products import Provenance, exposure_product_name, source_product_name
from coron3_dask.graph_names import name_by_step
from coron3_dask.resampling import build_i2d, combined_modes
from coron3_dask.stages.align_refs import align_refs, replace_bad_pixels
from coron3_dask.stages.klip import klip
from coron3_dask.stages.outliers import flag_outliers
from coron3_dask.stages.stack_refs import stack_refs
from coron3_dask.stages.usable import UsableCheck, after_guard, usable_check, usable_guard
from coron3_dask.subtraction import Subtracted, subtract

__all__ = ["Inputs", "Products", "RunResult", "build", "build_i2d", "open_inputs", "run", "run_record_name"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads: the association, lazy exposures and the PSFMASK."""

    association: files.Association
    science: tuple[xr.Dataset, ...]
    psf: tuple[xr.Dataset, ...]
    psfmask: xr.DataArray
    psfmask_path: Path

    @property
    def files(self) -> list[Path]:
        """Every input file (association, members, PSFMASK)."""
        return [self.association.path, *self.association.science, *self.association.psf, self.psfmask_path]


def open_inputs(
    asn_path: str | Path,
    config: Coron3Config | None = None,
    *,
    psfmask: str | Path | None = None,
    crds_path: str | Path | None = None,
) -> Inputs:
    """Read an association and open its members and PSFMASK lazily.

    The one place where a run's inputs are resolved, for ``run`` and ``campaign`` alike.

    Parameters
    ----------
    asn_path : path
        coron3 association JSON.
    config : Coron3Config, optional
        Resolved parameters: ``align_refs.override_psfmask`` names the PSFMASK when ``psfmask``
        is not given.
    psfmask : path, optional
        PSFMASK reference file (the CLI's ``--psfmask``); else the config's override; else
        looked up in the CRDS-style cache.
    crds_path : path, optional
        CRDS cache root (default ``$CRDS_PATH``).

    Returns
    -------
    Inputs

    Raises
    ------
    files.InputError
        Naming the file and the problem.
    """
    asn = files.read_association(asn_path)
    # headers read concurrently (latency-bound on network filesystems); errors raised in ASN order
    with ThreadPoolExecutor(max(1, min(8, len(asn.science) + len(asn.psf)))) as pool:
        science = tuple(pool.map(files.open_calints, asn.science))
        psf = tuple(pool.map(functools.partial(files.open_calints, read_gwcs=False), asn.psf))  # never resampled
    files.check_same_frame([*science, *psf])
    shape = (science[0].sizes[schema.Y], science[0].sizes[schema.X])
    psfmask = psfmask or (config.align_refs.override_psfmask if config is not None else "") or None
    path = Path(psfmask) if psfmask else files.find_psfmask(science[0].attrs["primary_header"], crds_path)
    mask = xr.DataArray(files.lazy_psfmask(path, shape), dims=schema.FRAME_DIMS)
    return Inputs(asn, science, psf, mask, path)


@dataclass
class Products:
    """The lazy products of one association, keyed by output file name."""

    crfints: dict[str, xr.Dataset] = field(default_factory=dict)
    psfstack: dict[str, xr.Dataset] = field(default_factory=dict)
    psfalign: dict[str, xr.Dataset] = field(default_factory=dict)
    psfsub: dict[str, xr.Dataset] = field(default_factory=dict)
    i2d: dict[str, xr.Dataset] = field(default_factory=dict)
    #: KL-mode cubes (several truncations, regions or ADI): per exposure (mode, integration, y, x)
    #: and combined (mode, y, x) on the i2d grid
    klmodes: dict[str, xr.Dataset] = field(default_factory=dict)
    #: a task that raises :class:`~coron3_dask.kernels.usable.UnusableDataError` when some
    #: integration has no usable pixel; no product is renamed into place before it passes
    guard: Delayed | None = None

    def items(self) -> list[tuple[str, str, xr.Dataset]]:
        """``(kind, file name, dataset)`` for every product, in pipeline order."""
        kinds = ("crfints", "psfstack", "psfalign", "psfsub", "i2d", "klmodes")
        return [(k, name, ds) for k in kinds for name, ds in getattr(self, k).items()]


def _outliers(exposure: xr.Dataset, config: Coron3Config) -> xr.Dataset:
    params = config.outlier_detection
    if params.skip:
        return exposure
    out = flag_outliers(exposure, good_bits=params.good_bits_mask, maskpt=params.maskpt, snr=params.snr1)
    out.attrs["steps"] = metadata.mark_step(exposure.attrs, "outlier_detection")
    return out


def _zero_bits(exposure: xr.Dataset) -> int:
    """MIRI's NON_SCIENCE branch of the bad-pixel replacement (spec 6.2 step 2)."""
    instrument = str(exposure.attrs["primary_header"].get("INSTRUME", "")).upper()
    return dq.NON_SCIENCE if instrument == "MIRI" else 0


def build(
    inputs: Inputs, config: Coron3Config, *, fakes: Callable[[int, xr.DataArray], xr.DataArray] | None = None
) -> Products:
    """Build every product of one association as lazy xarray datasets.

    Parameters
    ----------
    inputs : Inputs
        From :func:`open_inputs`.
    config : Coron3Config
        Resolved parameters.
    fakes : callable, optional
        ``fakes(exposure_index, cube) -> cube``: adds fake companions to a cube (injection-recovery;
        see ``contrast``).  They are added to the science integrations KLIP subtracts and to the
        ADI self-references; the alignment fits are those of the data without them.

    Returns
    -------
    Products
        Lazy datasets; nothing is computed.
    """
    asn = inputs.association
    products = Products()
    align = config.align_refs
    bad_bits = align.bad_bits_mask
    psf_flagged = []
    for path, exposure in zip(asn.psf, inputs.psf, strict=True):
        flagged = _outliers(exposure, config)
        psf_flagged.append(flagged)
        products.crfints[exposure_product_name(path, asn.asn_id, "crfints")] = flagged
    stack = stack_refs(psf_flagged)
    stack.attrs["steps"] = metadata.mark_step(stack.attrs, "stack_refs")
    products.psfstack[source_product_name(asn.product_name, "psfstack")] = stack
    science = [_outliers(exposure, config) for exposure in inputs.science]
    # every rename waits for the whole guard; each exposure's alignment and KLIP only for its own data
    ref_check = usable_check(stack, bad_bits=bad_bits, problem=_NO_REFERENCE)
    checks = [usable_check(f, bad_bits=bad_bits, weights=inputs.psfmask, problem=_NO_SCIENCE) for f in science]
    products.guard = usable_guard([ref_check, *checks])

    def replaced(cube: xr.Dataset, *checked: UsableCheck) -> xr.DataArray:
        zero_bits = _zero_bits(cube)
        out = replace_bad_pixels(cube, box=align.median_box_length, bad_bits=bad_bits, zero_bits=zero_bits)
        return after_guard(out, usable_guard(checked))

    stack_replaced = replaced(stack, ref_check)
    targets = [replaced(f, ref_check, c) for f, c in zip(science, checks, strict=True)]
    # injection-recovery: fake companions alone, added to what KLIP sees (the alignment fits never see them)
    alone = None if fakes is None else [fakes(e, xr.zeros_like(t)) for e, t in enumerate(targets)]
    aligned = []
    for path, exposure, target in zip(asn.science, inputs.science, targets, strict=True):
        ds = align_refs(
            target, stack_replaced, stack["err"], inputs.psfmask, align_to=align.align_to, jwst_compat=align.jwst_compat
        )
        ds.attrs = {
            **stack.attrs,
            "steps": metadata.mark_step(stack.attrs, "align_refs"),
            "align_to": align.align_to,
            "science_sources": [exposure.attrs.get("filename", path.name)],
        }
        products.psfalign[exposure_product_name(path, asn.asn_id, "psfalign")] = ds
        aligned.append(ds["sci"])
    if config.klip.official:
        subjects = targets if alone is None else [t + f for t, f in zip(targets, alone, strict=True)]
        subs: list[xr.Dataset | Subtracted] = [
            klip(t, a, truncate=config.klip.numbasis[0]) for t, a in zip(subjects, aligned, strict=True)
        ]
    else:
        subs = list(subtract(targets, aligned, science, inputs.psfmask, config.klip, align, fakes=alone))
    to_resample = []
    for path, flagged, sub in zip(asn.science, science, subs, strict=True):
        products.crfints[exposure_product_name(path, asn.asn_id, "crfints")] = flagged
        if isinstance(sub, Subtracted):
            cube = sub.modes.transpose("mode", ...).assign_attrs(flagged.attrs, klip_cards=sub.cards)
            products.klmodes[exposure_product_name(path, asn.asn_id, "klmodes")] = cube
            dq_bad = xr.DataArray(
                np.where(sub.unprocessed, dq.DO_NOT_USE, 0).astype(schema.DQ_DTYPE), dims=schema.FRAME_DIMS
            )
            first = sub.modes.isel(mode=0, drop=True)
            psfsub = flagged.assign(sci=first["sci"], err=first["err"], dq=flagged["dq"] | dq_bad)
            psfsub.attrs["primary_header"] = {**flagged.attrs["primary_header"], **klip_cards(sub, config)}
        else:
            psfsub = flagged.assign(sci=sub["sci"], err=sub["err"])
        psfsub.attrs["steps"] = metadata.mark_step(flagged.attrs, "klip")
        products.psfsub[exposure_product_name(path, asn.asn_id, "psfsub")] = psfsub
        to_resample.append(psfsub)
    if not config.resample.skip:
        i2d = build_i2d(to_resample, config.resample)
        i2d.attrs["steps"] = metadata.mark_step(to_resample[0].attrs, "resample")
        if subs and isinstance(subs[0], Subtracted):  # how the psfsub were made, on the i2d too
            i2d.attrs["exposure_cards"] = {**i2d.attrs.get("exposure_cards", {}), **klip_cards(subs[0], config)}
        products.i2d[source_product_name(asn.product_name, config.suffix)] = i2d
        if products.klmodes:
            products.klmodes[source_product_name(asn.product_name, "klmodes")] = combined_modes(
                to_resample, list(products.klmodes.values()), config, i2d
            )
    return products


def klip_cards(sub: Subtracted, config: Coron3Config) -> dict[str, Any]:
    """Header cards of a non-official KLIP: the reduction's cards and the truncation of the official-layout products."""
    return {**sub.cards, "KLTRUNC": (str(config.klip.numbasis[0]), "KL modes (first of klip.truncate)")}


_NO_REFERENCE = "no usable pixel (all NaN or flagged by align_refs.bad_bits): a reference needs at least one"
_NO_SCIENCE = "no usable pixel inside the PSFMASK (all NaN, flagged or masked out)"


@dataclass
class RunResult:
    """What a run wrote and measured."""

    paths: list[Path]
    #: psfalign name -> fitted (sx, sy, beta), (integration, ref, 3) (one integration for ``first``)
    shifts: dict[str, np.ndarray]
    #: psfalign name -> (PSF file, integration number) of each reference plane
    references: dict[str, list[tuple[str, int]]]


def run(
    inputs: Inputs,
    config: Coron3Config,
    output_dir: str | Path,
    *,
    products: Products | None = None,
    compute: Callable[..., Sequence[Any]] | None = None,
) -> RunResult:
    """Build the graph, then write every product with a single ``dask.compute``.

    Parameters
    ----------
    inputs : Inputs
        From :func:`open_inputs`.
    config : Coron3Config
        Resolved parameters.
    output_dir : path
        Directory for the products (created if missing).
    products : Products, optional
        Already-built products (default: ``build(inputs, config)``).
    compute : callable, optional
        ``compute(*delayed) -> results``, called once with every write task and fitted-shift
        array; default ``dask.compute`` on an unoptimised graph under the caller's scheduler
        context.  The CLI passes one that submits to a distributed cluster with progress.

    Returns
    -------
    RunResult
        Written paths and the fitted (sx, sy, beta) per psfalign product.

    Raises
    ------
    coron3_dask.files.lock.OutputLockedError
        Another run is writing into ``output_dir`` (refused at once, naming the holder).
    coron3_dask.files.errors.WriteError
        A system error (a full disk, a permission) while writing, naming the file.

    Notes
    -----
    The output directory is locked (``files.lock.OutputLock``) from before the first file is
    pre-allocated until the run record is written.  Products are written under names private
    to this call (``.{name}.{run_token}.partial``) and each is renamed into place only once
    complete; on any failure, KeyboardInterrupt included, this run's partial files are
    removed and the products of earlier runs are left as they were (except those this run
    had already completely rewritten).
    """
    from coron3_dask.files import lock, writers

    out = files.ensure_dir(output_dir, "--output-dir")  # absolute: workers may run elsewhere
    run_token = writers.new_run_token()
    with lock.OutputLock(out, association=inputs.association.path, run_token=run_token) as held:
        writers.remove_stale_partials(out)  # left by a killed run: with the lock held, nobody else's
        products = products or build(inputs, config)
        provenance = Provenance(config.to_dict(), inputs.files)
        start = time.perf_counter()
        partials: list[Path] = []
        try:  # planning pre-allocates the product files: from here on, clean up on any failure
            saves = {"save_crfints": config.save_results, "save_psfalign": config.save_psfalign}
            tasks, shifts, partials = writers.plan(products, inputs, out, provenance, run_token=run_token, **saves)
            names = list(shifts)
            results = (compute or _compute)(*name_by_step([*tasks, *shifts.values()], inputs.association.product_name))
        except BaseException:  # KeyboardInterrupt included
            with contextlib.suppress(OSError):
                held.abandon()  # first: a straggling task then removes the file it pre-allocates
            writers.remove_partials(out, run_token, partials)
            raise
        paths, fitted = results[: len(tasks)], dict(zip(names, results[len(tasks) :], strict=True))
        record = {
            **provenance.to_dict(),
            "association": str(inputs.association.path),
            "psfmask": str(inputs.psfmask_path),
            "products": [Path(p).name for p in paths],
            "wall_seconds": round(time.perf_counter() - start, 3),
            "shifts_summary": {n: metadata.shift_summary(p) for n, p in fitted.items()},
        }
        files.write_text(out / run_record_name(inputs.association.product_name), json.dumps(record, indent=2))
    for name, params in fitted.items():
        _log_shifts(name, params)
    references = {
        name: list(zip(ds["source"].values.tolist(), ds["int_number"].values.tolist(), strict=True))
        for name, ds in products.psfalign.items()
    }
    return RunResult([Path(p) for p in paths], fitted, references)


def run_record_name(product_name: str) -> str:
    """File name of a run's record, written last (atomically): its presence marks completion."""
    return f"{product_name}_coron3_dask.json"


def _compute(*collections: Any) -> Sequence[Any]:
    """``dask.compute`` without per-collection optimisation.

    Optimising each collection separately would fuse (and re-key) the align/KLIP tasks
    that several products share, so they would run more than once.
    """
    return dask.compute(*collections, optimize_graph=False)


def _log_shifts(name: str, params: np.ndarray) -> None:
    if log.isEnabledFor(logging.DEBUG):
        for i, per_ref in enumerate(params):
            for m, (sx, sy, beta) in enumerate(per_ref):
                log.debug("%s: integration %d ref %d: sx %+.5f sy %+.5f beta %.6f", name, i, m, sx, sy, beta)
    summary = metadata.shift_summary(params)
    log.info(
        "%s: %d fits, |shift| median %.4f px (max %.4f), beta median %.4f",
        name,
        summary["n"],
        summary["median_px"],
        summary["max_px"],
        summary["beta_median"],
    )
