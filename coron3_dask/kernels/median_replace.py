"""Bad-pixel replacement of one plane by the median of its good neighbours.

Kernel of jwst 3.0.0 ``align_refs`` (spec section 6.2): ``median_replace_img``
(``jwst/coron/median_replace_img.py``) for one plane, vectorised and bit-identical.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["median_replace_one"]


def median_replace_one(
    image: NDArray[np.floating],
    dq: NDArray[np.integer],
    *,
    box: int = 3,
    bad_bits: int = 1,
    zero_bits: int = 0,
) -> NDArray[np.float32]:
    """Replace bad pixels of one plane by the median of the good pixels around them.

    Parameters
    ----------
    image : ndarray, (ny, nx) float
        Science plane; computed in float32 (the dtype of a jwst ``CubeModel``).
    dq : ndarray, (ny, nx) integer
        Data-quality plane.
    box : int, optional
        Full width of the median box (``median_box_length``); the half width is
        ``int(box / 2)``.
    bad_bits : int, optional
        DQ bits marking a pixel bad (``DO_NOT_USE`` = 1 by default). NaNs are always bad.
    zero_bits : int, optional
        Bad pixels carrying any of these bits are set to 0.0 without a median (jwst does
        this for MIRI ``NON_SCIENCE`` = 512; pass 0 for other instruments).

    Returns
    -------
    ndarray, (ny, nx) float32
        A new array; the inputs are not modified.

    Raises
    ------
    ValueError
        If the arrays are not 2-D of equal shape or ``box`` is negative.

    Notes
    -----
    Reproduces ``jwst.coron.median_replace_img`` bit for bit (spec 6.2), including: bad
    pixels found once, before any replacement; windows taken with Python slice semantics,
    so a window whose start row or column is negative is empty and the pixel becomes 0.0
    (for ``box`` 3: every bad pixel in row 0 or column 0), while high edges are truncated;
    ``good = isfinite & (dq & bad_bits) == 0``; float32 ``np.median``; 0.0 when no good
    pixel is in the window; sequential replacement in row-major order.

    The medians are computed vectorised. Order matters only for a bad pixel whose window
    contains an *earlier* bad pixel that is NaN but not flagged (it becomes good once
    replaced); those pixels, and low-edge pixels of images narrower than the box, are
    redone with jwst's sequential loop, so the result is exact in every case.
    """
    img = np.array(image, dtype=np.float32)
    q = np.asarray(dq)
    if img.ndim != 2 or q.shape != img.shape:
        raise ValueError(f"image and dq must be 2-D of equal shape, got {img.shape}, {q.shape}")
    if box < 0:
        raise ValueError(f"box must be >= 0, got {box}")
    half = int(box / 2)
    flagged = (q & bad_bits) > 0
    bad = flagged | np.isnan(img)
    if zero_bits:
        zero = bad & ((q & zero_bits) > 0)
        img[zero] = 0.0
        bad &= ~zero
    if not bad.any():
        return img
    ny, nx = img.shape
    good = np.isfinite(img) & ((q & bad_bits) == 0)
    becomes_good = bad & ~flagged  # unflagged NaNs: good for later windows once replaced
    rows, cols = np.nonzero(bad)  # row-major, as jwst's np.where
    order = rows * nx + cols
    empty = (rows < half) | (cols < half)  # negative slice start
    tiny = ny < 2 * half + 1 or nx < 2 * half + 1  # then a negative start may wrap around
    values = _window_medians(np.where(good, img, np.float32(np.nan)), rows, cols, half)
    values[empty] = 0.0
    redo = empty & np.bool_(tiny)
    if becomes_good.any():
        first = np.where(becomes_good, np.arange(ny * nx).reshape(ny, nx), ny * nx)
        padded = np.pad(first, half, constant_values=ny * nx)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * half + 1,) * 2)
        earliest = windows[rows, cols].reshape(rows.size, -1).min(axis=1)
        affected = earliest < order
        if not tiny:
            affected &= ~empty  # an empty window gives 0.0 whatever came before
        redo |= affected
    img[rows, cols] = values
    if redo.any():
        grid = np.arange(ny * nx).reshape(ny, nx)
        for r, c, k in zip(rows[redo], cols[redo], order[redo], strict=True):
            win = (slice(r - half, r + half + 1), slice(c - half, c + half + 1))
            ok = good[win] | (becomes_good[win] & (grid[win] < k))
            vals = img[win][ok]
            img[r, c] = np.median(vals) if vals.size else 0.0
    return img


def _window_medians(
    work: NDArray[np.float32], rows: NDArray[np.intp], cols: NDArray[np.intp], half: int
) -> NDArray[np.float32]:
    """Float32 ``np.median`` of the non-NaN values of the windows centred on given pixels.

    Windows are clipped at the high edges (NaN padding); 0.0 where a window has no value.
    """
    width = 2 * half + 1
    padded = np.pad(work, half, constant_values=np.float32(np.nan))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (width, width))
    vals = np.sort(windows[rows, cols].reshape(rows.size, width * width), axis=1)  # NaN last
    count = np.count_nonzero(~np.isnan(vals), axis=1)
    pick = np.arange(rows.size)
    lo = vals[pick, np.maximum(count - 1, 0) // 2]
    hi = vals[pick, count // 2 - (count == 0)]
    zero = np.float32(0.0)
    # np.median = np.mean of the middle one or two values: a float32 sum from +0.0, / n
    with np.errstate(invalid="ignore"):
        med = np.where(count % 2 == 1, zero + lo, ((zero + lo) + hi) / np.float32(2.0))
    return np.where(count > 0, med, zero).astype(np.float32)
