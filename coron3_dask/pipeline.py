"""Build the calwebb_coron3 graph lazily, then write every product with one compute.

Processing order follows jwst's ``Coron3Pipeline`` (spec section 1.2): outlier detection of
every PSF exposure, stack_refs, then per science exposure outlier detection, align_refs,
klip; finally resample of all science integrations.  ``build`` returns lazy datasets and
computes nothing; ``run`` turns them into write tasks and calls ``dask.compute`` once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from coron3_dask import dq, files, schema
from coron3_dask.config import Coron3Config
from coron3_dask.files.products import Provenance, exposure_product_name, source_product_name
from coron3_dask.stages.align_refs import align_refs, replace_bad_pixels
from coron3_dask.stages.klip import klip
from coron3_dask.stages.outliers import flag_outliers
from coron3_dask.stages.resample import resample
from coron3_dask.stages.stack_refs import stack_refs

__all__ = ["Inputs", "Products", "RunResult", "build", "open_inputs", "run", "run_record_name"]

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
    asn_path: str | Path, *, psfmask: str | Path | None = None, crds_path: str | Path | None = None
) -> Inputs:
    """Read an association and open its members and PSFMASK lazily.

    Parameters
    ----------
    asn_path : path
        coron3 association JSON.
    psfmask : path, optional
        PSFMASK reference file; looked up in the CRDS-style cache when omitted.
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
    science = tuple(files.open_calints(p) for p in asn.science)
    psf = tuple(files.open_calints(p, read_gwcs=False) for p in asn.psf)  # never resampled
    files.check_same_frame([*science, *psf])
    shape = (science[0].sizes[schema.Y], science[0].sizes[schema.X])
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

    def items(self) -> list[tuple[str, str, xr.Dataset]]:
        """``(kind, file name, dataset)`` for every product, in pipeline order."""
        kinds = ("crfints", "psfstack", "psfalign", "psfsub", "i2d")
        return [(k, name, ds) for k in kinds for name, ds in getattr(self, k).items()]


def _outliers(exposure: xr.Dataset, config: Coron3Config) -> xr.Dataset:
    params = config.outlier_detection
    if params.skip:
        return exposure
    out = flag_outliers(exposure, good_bits=params.good_bits, maskpt=params.maskpt, snr=params.snr1)
    out.attrs["steps"] = {**exposure.attrs.get("steps", {}), "outlier_detection": "COMPLETE"}
    return out


def _zero_bits(exposure: xr.Dataset) -> int:
    """MIRI's NON_SCIENCE branch of the bad-pixel replacement (spec 6.2 step 2)."""
    instrument = str(exposure.attrs["primary_header"].get("INSTRUME", "")).upper()
    return dq.NON_SCIENCE if instrument == "MIRI" else 0


def build(inputs: Inputs, config: Coron3Config) -> Products:
    """Build every product of one association as lazy xarray datasets.

    Parameters
    ----------
    inputs : Inputs
        From :func:`open_inputs`.
    config : Coron3Config
        Resolved parameters.

    Returns
    -------
    Products
        Lazy datasets; nothing is computed.
    """
    asn = inputs.association
    products = Products()
    align = config.align_refs
    bad_bits = dq.parse_bits(align.bad_bits)
    psf_flagged = []
    for path, exposure in zip(asn.psf, inputs.psf, strict=True):
        flagged = _outliers(exposure, config)
        psf_flagged.append(flagged)
        products.crfints[exposure_product_name(path, asn.asn_id, "crfints")] = flagged
    stack = stack_refs(psf_flagged)
    stack.attrs["steps"] = {**stack.attrs.get("steps", {}), "stack_refs": "COMPLETE"}
    products.psfstack[source_product_name(asn.product_name, "psfstack")] = stack
    stack_replaced = replace_bad_pixels(
        stack, box=align.median_box_length, bad_bits=bad_bits, zero_bits=_zero_bits(stack)
    )
    to_resample = []
    for path, exposure in zip(asn.science, inputs.science, strict=True):
        flagged = _outliers(exposure, config)
        products.crfints[exposure_product_name(path, asn.asn_id, "crfints")] = flagged
        target = replace_bad_pixels(
            flagged, box=align.median_box_length, bad_bits=bad_bits, zero_bits=_zero_bits(flagged)
        )
        aligned = align_refs(
            target, stack_replaced, stack["err"], inputs.psfmask, align_to=align.align_to, jwst_compat=align.jwst_compat
        )
        aligned.attrs = {
            **stack.attrs,
            "steps": {**stack.attrs["steps"], "align_refs": "COMPLETE"},
            "align_to": align.align_to,
            "jwst_compat": align.jwst_compat,
            "science_sources": [exposure.attrs.get("filename", path.name)],
        }
        products.psfalign[exposure_product_name(path, asn.asn_id, "psfalign")] = aligned
        sub = klip(target, aligned["sci"], truncate=config.klip.truncate)
        psfsub = flagged.assign(sci=sub["sci"], err=sub["err"])
        psfsub.attrs["steps"] = {**flagged.attrs.get("steps", {}), "klip": "COMPLETE"}
        products.psfsub[exposure_product_name(path, asn.asn_id, "psfsub")] = psfsub
        to_resample.append(psfsub)
    if not config.resample.skip:
        params = {k: v for k, v in config.to_dict()["resample"].items() if k != "skip"}
        i2d = resample(to_resample, **params)
        i2d.attrs["steps"] = {**to_resample[0].attrs.get("steps", {}), "resample": "COMPLETE"}
        products.i2d[source_product_name(asn.product_name, config.suffix)] = i2d
    return products


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
    """
    from coron3_dask.files import writers

    out = Path(output_dir).resolve()  # workers may run in another working directory
    if out.exists() and not out.is_dir():
        raise files.InputError(f"--output-dir {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    products = products or build(inputs, config)
    provenance = Provenance(config.to_dict(), inputs.files)
    start = time.perf_counter()
    partials = [out / f".{name}.partial" for _, name, _ in products.items()]
    try:  # planning pre-allocates the product files: from here on, clean up on any failure
        tasks, shifts, _ = writers.plan(products, inputs, config, out, provenance)
        names = list(shifts)
        results = (compute or _compute)(*tasks, *shifts.values())
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise
    paths, fitted = results[: len(tasks)], dict(zip(names, results[len(tasks) :], strict=True))
    record = {
        **provenance.to_dict(),
        "association": str(inputs.association.path),
        "products": [Path(p).name for p in paths],
        "wall_seconds": round(time.perf_counter() - start, 3),
        "shifts_summary": {n: _shift_summary(p) for n, p in fitted.items()},
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


def _shift_summary(params: np.ndarray) -> dict[str, float]:
    sx, sy, beta = params.reshape(-1, 3).T
    r = np.hypot(sx, sy)
    return {
        "n": int(r.size),
        "median_px": float(np.median(r)),
        "max_px": float(r.max()),
        "beta_median": float(np.median(beta)),
    }


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
    sx, sy, beta = params.reshape(-1, 3).T
    log.info(
        "%s: %d fits, |shift| median %.4f px (max %.4f), beta median %.4f",
        name,
        len(sx),
        float(np.median(np.hypot(sx, sy))),
        float(np.max(np.hypot(sx, sy))),
        float(np.median(beta)),
    )
