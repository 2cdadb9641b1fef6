"""Fake point sources for injection-recovery: a PSF model placed at sub-pixel positions in one frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from coron3_dask.kernels.shift import fourier_shift

__all__ = ["add_point_sources"]


def add_point_sources(
    frame: NDArray[np.floating],
    psf_model: NDArray[np.floating],
    positions: Sequence[tuple[float, float]],
    fluxes: Sequence[float],
) -> NDArray[np.float32]:
    """Add scaled copies of a PSF model to one frame.

    Parameters
    ----------
    frame : ndarray, (y, x)
        Image (not modified).
    psf_model : ndarray, (h, w)
        PSF stamp normalised to unit total flux, centred on its central pixel
        ``((h - 1) / 2, (w - 1) / 2)``.
    positions : sequence of (float, float)
        Source centres (x, y), 0-based pixels of ``frame``.
    fluxes : sequence of float
        Total flux of each source (the model is multiplied by it).

    Returns
    -------
    ndarray, (y, x) float32
        ``frame`` plus the sources; the part of a stamp beyond the frame edge is dropped.

    Notes
    -----
    The stamp is moved by the sub-pixel remainder with the Fourier shift theorem (the
    periodic wrap is negligible for a stamp whose edges hold little flux), then added at the
    integer offset.

    Examples
    --------
    >>> psf = np.zeros((5, 5)); psf[2, 2] = 1.0
    >>> out = add_point_sources(np.zeros((10, 10)), psf, [(3.0, 6.0)], [2.0])
    >>> float(out[6, 3]), float(out.sum())
    (2.0, 2.0)
    """
    out = np.array(frame, dtype=np.float64)
    h, w = psf_model.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for (x, y), flux in zip(positions, fluxes, strict=True):
        ix, iy = int(np.round(x - cx)), int(np.round(y - cy))
        stamp = fourier_shift(np.asarray(psf_model, dtype=np.float64), x - cx - ix, y - cy - iy) * flux
        y0, x0 = max(iy, 0), max(ix, 0)
        y1, x1 = min(iy + h, out.shape[0]), min(ix + w, out.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0:y1, x0:x1] += stamp[y0 - iy : y1 - iy, x0 - ix : x1 - ix]
    return out.astype(np.float32)
