"""Post-processing measurements on products: companion photometry and signal-to-noise.

Pure NumPy.  Used by the science checks, the benchmarks and the notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coron3_dask.analysis.detection import _mawet, aperture_sums

__all__ = ["Detection", "centroid", "companion_snr", "shift_errors"]


@dataclass(frozen=True)
class Detection:
    """Aperture photometry of a point source against same-separation noise apertures."""

    flux: float
    noise: float
    snr: float
    n_reference_apertures: int


def companion_snr(
    image: NDArray[np.floating],
    xy: tuple[float, float],
    centre_xy: tuple[float, float],
    *,
    radius: float = 2.0,
) -> Detection:
    """Signal-to-noise of a point source, noise from apertures at the same separation.

    Parameters
    ----------
    image : ndarray, (y, x)
        PSF-subtracted image.
    xy : (float, float)
        Source position (0-based x, y).
    centre_xy : (float, float)
        Star position (0-based x, y): the noise apertures sit on the circle through the source.
    radius : float
        Aperture radius in pixels.

    Returns
    -------
    Detection
        ``snr = flux / std(reference aperture sums)`` with the small-sample correction of
        Mawet et al. (2014, ApJ 792, 97): the noise is multiplied by ``sqrt(1 + 1/n)``.

    Notes
    -----
    Apertures adjacent to the source (within two aperture diameters) are excluded.  Aperture sums use exact
    pixel overlaps and the small-sample statistic of :mod:`coron3_dask.analysis.detection` (NaN pixels count as
    zero; apertures leaving the frame are dropped).
    """
    x, y = xy
    cx, cy = centre_xy
    sep = float(np.hypot(x - cx, y - cy))
    theta0 = np.arctan2(y - cy, x - cx)
    n = int(np.floor(2 * np.pi * sep / (2 * radius)))
    theta = theta0 + 2 * np.pi * np.arange(2, n - 1) / n
    filled = np.where(np.isfinite(image), image, 0.0)
    sums, valid = aperture_sums(filled, cx + sep * np.cos(theta), cy + sep * np.sin(theta), 2 * radius)
    ref = sums[valid]
    if len(ref) < 3:
        raise ValueError(f"too few noise apertures at separation {sep:.1f} px")
    flux = float(aperture_sums(filled, [x], [y], 2 * radius)[0][0])
    snr, mean, noise, _ = _mawet(np.array([flux]), ref[None, :])
    return Detection(flux - float(mean[0]), float(noise[0]), float(snr[0]), len(ref))


def centroid(image: NDArray[np.floating], xy: tuple[float, float], *, radius: float = 3.0) -> tuple[float, float]:
    """Flux-weighted centroid (x, y) of the positive signal within ``radius`` of ``xy``.

    Parameters
    ----------
    image : ndarray, (y, x)
        Image.
    xy : (float, float)
        Starting position (0-based x, y).
    radius : float
        Window radius in pixels.

    Returns
    -------
    (float, float)
        Centroid after three re-centring iterations.
    """
    x, y = xy
    yy, xx = np.indices(image.shape)
    for _ in range(3):
        win = ((xx - x) ** 2 + (yy - y) ** 2 <= radius**2) & np.isfinite(image)
        w = np.clip(np.where(win, image, 0.0), 0.0, None)
        total = w.sum()
        if total <= 0:
            break
        x, y = float((w * xx).sum() / total), float((w * yy).sum() / total)
    return x, y


def shift_errors(
    shifts: Mapping[str, NDArray[np.float64]],
    references: Mapping[str, Sequence[tuple[str, int]]],
    truth: Mapping[str, Any],
) -> NDArray[np.float64]:
    """Distance (px) between fitted and true shifts for every fitted pair.

    Parameters
    ----------
    shifts : mapping
        psfalign product name to fitted (sx, sy, beta), ``(integration, ref, 3)`` as in
        ``pipeline.RunResult`` (one integration, number 0, for ``align_to="first"``).
    references : mapping
        psfalign name to each reference plane's (PSF file name, integration number).
    truth : mapping
        A simulated programme's ``truth.json``: per exposure file, ``offset_dxdy_px`` per
        integration.

    Returns
    -------
    ndarray
        ``|fitted - (reference offset - science offset)|`` for every pair.
    """
    exposures = {e["file"]: e for e in truth["exposures"]}
    errors = []
    for name, fitted in shifts.items():
        science = next(e for f, e in exposures.items() if name.startswith(f.removesuffix("_calints.fits")))
        for i in range(fitted.shape[0]):
            so = np.asarray(science["offset_dxdy_px"][i])
            for m, (source, number) in enumerate(references[name]):
                true = np.asarray(exposures[source]["offset_dxdy_px"][number - 1]) - so
                errors.append(float(np.hypot(*(fitted[i, m, :2] - true))))
    return np.asarray(errors)
