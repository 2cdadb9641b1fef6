"""Post-processing measurements on products: companion photometry and signal-to-noise.

Pure NumPy.  Used by the science checks, the benchmarks and the notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Detection", "centroid", "companion_snr", "shift_errors"]


@dataclass(frozen=True)
class Detection:
    """Aperture photometry of a point source against same-separation noise apertures."""

    flux: float
    noise: float
    snr: float
    n_reference_apertures: int


def _aperture_sum(image: NDArray[np.floating], x: float, y: float, radius: float) -> float:
    yy, xx = np.indices(image.shape)
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    return float(np.nansum(image[inside]))


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
    Apertures adjacent to the source (within two aperture diameters) are excluded.
    """
    x, y = xy
    cx, cy = centre_xy
    sep = float(np.hypot(x - cx, y - cy))
    theta0 = np.arctan2(y - cy, x - cx)
    n = int(np.floor(2 * np.pi * sep / (2 * radius)))
    sums = []
    for k in range(2, n - 1):
        theta = theta0 + 2 * np.pi * k / n
        ax, ay = cx + sep * np.cos(theta), cy + sep * np.sin(theta)
        if radius <= ax < image.shape[1] - radius and radius <= ay < image.shape[0] - radius:
            sums.append(_aperture_sum(image, ax, ay, radius))
    flux = _aperture_sum(image, x, y, radius)
    if len(sums) < 3:
        raise ValueError(f"too few noise apertures at separation {sep:.1f} px")
    ref = np.asarray(sums)
    noise = float(ref.std(ddof=1) * np.sqrt(1 + 1 / len(ref)))
    return Detection(flux - float(ref.mean()), noise, (flux - float(ref.mean())) / noise, len(ref))


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
