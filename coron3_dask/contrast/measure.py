"""``measure_contrast``: S/N map, detections, raw and calibrated contrast curves, companion photometry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dask
import numpy as np

from coron3_dask import pipeline
from coron3_dask.analysis import contrast as stats
from coron3_dask.analysis.detection import find_detections, measure_companion, snr_map
from coron3_dask.config import Coron3Config
from coron3_dask.contrast.injection import PHOTOMETRY_FWHM, injection_recovery, photometric_flux, throughput
from coron3_dask.contrast.model import (
    CombinedImage,
    ContrastOptions,
    ContrastResult,
    Sky,
    mask_sources,
)
from coron3_dask.files import metadata

__all__ = ["MASK_FWHM", "measure_contrast"]

log = logging.getLogger(__name__)


#: radius (in FWHM) of the disks that hide known companions from the noise estimates
MASK_FWHM = 1.0


def _warn_sparse_rings(curves: Sequence[Any], truncations: Sequence[int], companions: Sequence[Any]) -> None:
    """Log the separations left with fewer than 3 noise apertures (NaN contrast), e.g. by companion masks."""
    for k, curve in zip(truncations, curves, strict=True):
        sparse = curve.separation[(curve.n_samples < 3)]
        if sparse.size:
            log.warning(
                "KL %d: %d separations (%.1f-%.1f px) have fewer than 3 usable noise apertures%s: no contrast there",
                k,
                sparse.size,
                sparse.min(),
                sparse.max(),
                f" ({len(companions)} known companions masked)" if companions else "",
            )


def measure_contrast(
    inputs: pipeline.Inputs,
    config: Coron3Config,
    image: CombinedImage,
    options: ContrastOptions,
    *,
    compute: Callable[..., Sequence[Any]] | None = None,
) -> ContrastResult:
    """Measure S/N, detections, the calibrated contrast curve and known companions of a finished run.

    Parameters
    ----------
    inputs : pipeline.Inputs
        The run's inputs (the injections rebuild its graph).
    config : Coron3Config
        The run's resolved parameters (the injections use the same graph).
    image : CombinedImage
        The run's combined product (:func:`read_combined`).
    options : ContrastOptions
        PSF model, aperture, host flux, injection settings, known companions.
    compute : callable, optional
        ``compute(*collections)``; default ``dask.compute`` (the CLI passes the cluster's).

    Returns
    -------
    ContrastResult

    Raises
    ------
    ValueError
        A non-positive host flux, or no separation with a finite noise estimate to calibrate.

    Notes
    -----
    Fluxes of companions and fakes alike are measured at their PSF-fitted positions in an aperture of
    ``PHOTOMETRY_FWHM`` FWHM; the contrast curve uses the matched aperture (diameter FWHM) for the
    noise, the host's aperture flux and its throughput.  Known companions are masked (disks of
    ``MASK_FWHM`` FWHM) from the noise of the curve and from each other's noise rings.
    """
    compute = compute or (lambda *c: dask.compute(*c, optimize_graph=False))
    if not options.host_flux > 0:
        raise ValueError(f"the host star flux must be > 0, got {options.host_flux}")
    sky = Sky(image)
    center, scale = sky.star, sky.pixel_scale_arcsec
    detector = float(np.sqrt(float(metadata.card(inputs.science[0].attrs, "PIXAR_A2") or scale**2)))
    if abs(scale / detector - 1) > 0.01:  # the PSF model, FWHM and fluxes are on the detector's pixels
        raise ValueError(
            f'the combined image has {scale:.4f}" pixels, the detector {detector:.4f}": the contrast step needs '
            "resample.pixel_scale_ratio = 1"
        )
    fwhm, psf, planes = options.fwhm, options.psf_model, image.planes
    ap_frac = stats.aperture_fraction(psf, fwhm), stats.aperture_fraction(psf, PHOTOMETRY_FWHM * fwhm)
    known = [sky.pixel(s, pa) for s, pa in options.companions]
    masked = mask_sources(planes, known, MASK_FWHM * fwhm)  # known companions are not noise
    curves = [
        stats.raw_contrast_curve(p, center, fwhm, options.host_flux * ap_frac[0], sigma=options.sigma) for p in masked
    ]
    radii = curves[0].separation
    curve_throughput = np.ones((2, len(planes), len(radii)))  # (matched, photometric) apertures
    records: list[dict[str, Any]] = []
    if options.throughput:
        noise = np.array([c.noise for c in curves])
        finite = np.isfinite(noise).all(axis=0) & (noise.min(axis=0) > 0)
        if not finite.any():
            raise ValueError("no separation with a finite noise estimate: nothing to calibrate")
        _, records = injection_recovery(
            inputs, config, image, options, (radii[finite], noise.min(axis=0)[finite]), compute
        )
        seps = [r["separation_px"] for r in records]
        for m in range(len(planes)):
            for a in range(2):
                injected = np.array([r["flux"] * ap_frac[a] for r in records])
                curve_throughput[a, m] = throughput(
                    seps, injected, np.array([r["recovered"][m][a] for r in records]), radii
                )
    rows = [
        {
            "truncation": image.truncations[m],
            "separation_px": float(r),
            "separation_arcsec": float(r * scale),
            "n_apertures": int(curve.n_samples[i]),
            "noise": float(curve.noise[i]),
            "threshold": float(curve.threshold[i]),
            "raw_contrast": float(curve.contrast[i]),
            "throughput": float(curve_throughput[0, m, i]),
            "contrast": float(stats.calibrated_contrast(curve.contrast[i], curve_throughput[0, m, i])),
        }
        for m, curve in enumerate(curves)
        for i, r in enumerate(curve.separation)
    ]
    snr = np.stack([snr_map(p, center, fwhm) for p in planes])
    detections = [
        (m, d)
        for m in range(len(planes))
        for d in find_detections(snr[m], planes[m], center, fwhm, threshold=options.threshold)
    ]
    _warn_sparse_rings(curves, image.truncations, options.companions)
    companions = []
    for k, ((sep_arcsec, pa), xy) in enumerate(zip(options.companions, known, strict=True)):
        others = mask_sources(planes, known[:k] + known[k + 1 :], MASK_FWHM * fwhm)  # neighbours are not noise
        for m, plane in enumerate(planes):
            found = measure_companion(others[m], xy, center, fwhm, psf_model=psf)
            t = float(np.interp(found.separation, radii, curve_throughput[1, m]))
            flux = photometric_flux(plane, (found.x, found.y), fwhm) / (ap_frac[1] * t)  # total, throughput-corrected
            companions.append((m, (sep_arcsec, pa), found, flux / options.host_flux))
    for r in records:  # JSON-friendly: one matched-aperture throughput per plane
        got = r.pop("recovered")
        r.update(
            {f"throughput_{image.truncations[m]}": got[m][0] / (r["flux"] * ap_frac[0]) for m in range(len(planes))}
        )
    meta: dict[str, Any] = {
        "star_xy": list(center),
        "pixel_scale_arcsec": scale,
        "fwhm_px": fwhm,
        "sigma": options.sigma,
        "host_flux": options.host_flux,
        "host_aperture_flux": options.host_flux * ap_frac[0],
        "photometry_aperture_fwhm": PHOTOMETRY_FWHM,
        "truncations": list(image.truncations),
        "product": image.kind,
        "injections": records,
        "fake_snr": options.fake_snr,
        "branches": options.branches,
    }
    return ContrastResult(rows, snr, detections, companions, meta)
