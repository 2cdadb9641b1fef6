"""Injection-recovery: fake companions through the run's own graph, and the throughput they measure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from coron3_dask import pipeline
from coron3_dask.analysis import contrast as stats
from coron3_dask.analysis.detection import measure_companion
from coron3_dask.config import Coron3Config
from coron3_dask.contrast.model import CombinedImage, ContrastOptions, Sky
from coron3_dask.files import metadata
from coron3_dask.files.products import source_product_name
from coron3_dask.stages.inject import inject_companions
from coron3_dask.wcs.input_wcs import exposure_wcs, radec_to_pixel
from coron3_dask.wcs.tan import offset_sky

__all__ = ["PHOTOMETRY_FWHM", "injection_recovery", "photometric_flux", "throughput"]


def throughput(separations: list[float], injected: np.ndarray, recovered: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Throughput at ``radii`` from the fakes that could be measured; NaN inside the innermost one."""
    ok = np.isfinite(recovered)
    if not ok.any():
        return np.full(len(radii), np.nan)
    sep = np.asarray(separations)[ok]
    curve = stats.throughput_curve(sep, np.asarray(injected)[ok], np.asarray(recovered)[ok], radii)
    return np.where(radii >= sep.min(), curve, np.nan)


#: diameter (in FWHM) of the aperture that measures fluxes (companions and fakes alike): wider than the matched
#: aperture so that the flux hardly depends on where the source falls on the pixel grid
PHOTOMETRY_FWHM = 2.0


def photometric_flux(image: np.ndarray, xy: tuple[float, float], fwhm: float) -> float:
    """Flux in the ``PHOTOMETRY_FWHM``-FWHM aperture at ``xy`` (NaN if it touches NaN or the edge)."""
    sums, _ = stats.aperture_sums(image, [xy[0]], [xy[1]], PHOTOMETRY_FWHM * fwhm)
    return float(sums[0])


def _recovered(
    difference: np.ndarray, xy: tuple[float, float], center: tuple[float, float], fwhm: float, psf: np.ndarray
) -> tuple[float, float]:
    """Return a fake's (matched-aperture, photometric) fluxes in (injected - original), measured as a companion is.

    The position is PSF-fitted as for a companion (the injected one when nothing can be fitted); measuring
    fakes and companions alike makes the throughput carry every loss they share: KLIP over-subtraction, the
    coronagraph's transmission, and the resampling's blur.
    """
    try:
        found = measure_companion(difference, xy, center, fwhm, psf_model=psf)
        if np.hypot(found.x - xy[0], found.y - xy[1]) <= fwhm / 2:
            xy = (found.x, found.y)
    except ValueError:  # nothing recovered to fit (deep inside the mask): measure at the injected position
        pass
    sums, _ = stats.aperture_sums(difference, [xy[0]], [xy[1]], fwhm)  # NaN where an aperture touches NaN
    return float(sums[0]), photometric_flux(difference, xy, fwhm)


#: interleaved radius sets per branch: fakes of one set are this many radius steps (FWHM) apart
_INTERLEAVE = 3


def _injection_sets(radii: np.ndarray, branches: int) -> list[list[tuple[float, float]]]:
    """Fakes as (separation px, position angle deg): radii one FWHM apart, spread over interleaved sets.

    Within a set the fakes are ``_INTERLEAVE`` FWHM apart in radius (VIP's ``fc_rad_sep = 3``) on one
    position angle; the sets of a branch are rotated from one another so that no two fakes share a region
    of the image, and the branches divide the circle.
    """
    sets = []
    for b in range(branches):
        for s in range(_INTERLEAVE):
            pa = (360.0 * b / branches + 360.0 * s / (branches * _INTERLEAVE) + 17.0) % 360.0
            sets.append([(float(r), pa) for r in radii[s::_INTERLEAVE]])
    return sets


def _fake_builder(
    inputs: pipeline.Inputs,
    fakes: list[tuple[float, float]],
    fluxes: np.ndarray,
    scale: float,
    psf: np.ndarray,
    transmission: np.ndarray,
) -> Callable[[int, xr.DataArray], xr.DataArray]:
    """``fakes(exposure, target)`` for ``pipeline.build``: the fakes at fixed sky positions.

    ``transmission`` is the coronagraph's intensity transmission on the detector grid (in memory).
    """
    mask = transmission
    ra0, dec0 = (float(metadata.card(inputs.science[0].attrs, k)) for k in ("TARG_RA", "TARG_DEC"))

    def add(e: int, target: xr.DataArray) -> xr.DataArray:
        wcs = exposure_wcs(inputs.science[e].attrs)
        positions, total = [], []
        for (sep, pa), flux in zip(fakes, fluxes, strict=True):
            ra, dec = offset_sky(ra0, dec0, sep * scale, pa)
            x, y = (float(v) for v in radec_to_pixel(wcs, ra, dec))
            yi, xi = int(np.clip(round(y), 0, mask.shape[0] - 1)), int(np.clip(round(x), 0, mask.shape[1] - 1))
            positions.append((x, y))
            total.append(float(flux) * float(mask[yi, xi]))  # the coronagraph's transmission
        return inject_companions(target, psf, positions, total)

    return add


def _combined(products: pipeline.Products, name: str, kind: str) -> xr.DataArray:
    """Return the lazy combined image ``(mode, y, x)`` of built products."""
    if kind == "klmodes":
        return products.klmodes[name]["sci"]
    return products.i2d[name]["sci"].expand_dims(mode=1)


def injection_recovery(
    inputs: pipeline.Inputs,
    config: Coron3Config,
    image: CombinedImage,
    options: ContrastOptions,
    noise: tuple[np.ndarray, np.ndarray],
    compute: Callable[..., Sequence[Any]],
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Inject fakes set by set through the run's graph (one compute for all); return their recovered fluxes.

    Returns ``(separations, recovered)`` as a record per fake: separation, position angle, injected
    total flux, position, and per plane the (matched, photometric) aperture fluxes recovered.
    """
    sky, fwhm, psf = Sky(image), options.fwhm, options.psf_model
    radii, level = noise
    step = np.arange(radii[0], radii[-1] - fwhm, fwhm)
    sets = _injection_sets(step, options.branches)
    fluxes = np.interp(step, radii, level) * options.fake_snr / stats.aperture_fraction(psf, fwhm)
    scale = sky.pixel_scale_arcsec
    name = source_product_name(inputs.association.product_name, image.kind)
    transmission = np.asarray(inputs.psfmask) if options.transmission is None else options.transmission  # read once
    lazy = []
    for fakes in sets:
        builder = _fake_builder(inputs, fakes, np.interp([r for r, _ in fakes], step, fluxes), scale, psf, transmission)
        lazy.append(_combined(pipeline.build(inputs, config, fakes=builder), name, image.kind))
    center = sky.star
    records = []
    for fakes, injected in zip(sets, compute(*lazy), strict=True):
        for sep, pa in fakes:
            x, y = sky.pixel(sep * scale, pa)
            flux = float(np.interp(sep, step, fluxes))
            got = [
                _recovered(np.asarray(injected[m]) - image.planes[m], (x, y), center, fwhm, psf)
                for m in range(len(image.planes))
            ]
            records.append({"separation_px": sep, "pa_deg": pa, "flux": flux, "x": x, "y": y, "recovered": got})
    return step, records
