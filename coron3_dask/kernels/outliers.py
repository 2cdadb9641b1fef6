"""Outlier detection in coronagraphic mode: pure NumPy kernels for one exposure.

Reproduces jwst ``outlier_detection`` with ``mode='coron'`` (jwst 3.0.0,
``jwst/outlier_detection/coron.py`` with stcal's ``flag_crs`` and
``compute_weight_threshold``): the median of an exposure's own integrations is the
reference, and a pixel is an outlier when it deviates by more than ``snr`` times its error.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["flag_exposure", "flag_one", "good_pixels", "harmonise_invalid", "median_image", "weight_threshold"]


def good_pixels(dq: NDArray[np.uint32], *, good_bits: int) -> NDArray[np.bool_]:
    """Return True where every set DQ bit is one of ``good_bits`` (jwst ``build_mask``).

    Parameters
    ----------
    dq : ndarray of uint32
        Data-quality flags, any shape.
    good_bits : int
        Bits that are acceptable (``~DO_NOT_USE`` is every bit except 1).

    Returns
    -------
    ndarray of bool
        Same shape as ``dq``.
    """
    return (dq & np.uint32(~good_bits & 0xFFFFFFFF)) == 0


def weight_threshold(weight: NDArray[np.floating] | NDArray[np.bool_], *, maskpt: float) -> float:
    """Weight threshold ``maskpt * mean(sigma_clip(weight[finite & weight != 0]))``.

    Parameters
    ----------
    weight : ndarray
        Per-pixel weights (0/1 in coron mode).
    maskpt : float
        Fraction of the clipped mean weight below which pixels are masked.

    Returns
    -------
    float
        The threshold; NaN when no pixel has a non-zero finite weight.

    Notes
    -----
    stcal clips at 3 sigma for 5 iterations.  With 0/1 weights every non-zero weight is 1,
    the clipped set is all ones and the threshold is exactly ``maskpt``: this function
    implements the clip for general weights with the same rule (centre = median,
    bounds at median +/- 3 std), which is what astropy's ``sigma_clip`` does by default.
    """
    w = np.asarray(weight, dtype=np.float64)
    w = w[np.isfinite(w) & (w != 0)]
    if w.size == 0:
        return float("nan")
    for _ in range(5):
        centre, std = np.median(w), w.std()
        kept = w[(w >= centre - 3 * std) & (w <= centre + 3 * std)]
        if kept.size == w.size:
            break
        w = kept
    return float(maskpt * w.mean())


def median_image(sci: NDArray[np.float32], usable: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Median across integrations of the usable pixels, float32 (stcal ``nanmedian3D``).

    Parameters
    ----------
    sci : ndarray, (integration, y, x) float32
        The exposure's science cube.
    usable : ndarray, (integration, y, x) bool
        Pixels whose weight reaches the threshold.

    Returns
    -------
    ndarray, (y, x) float32
        NaN where no integration is usable.
    """
    masked = np.where(usable, sci, np.float32(np.nan)).astype(np.float32, copy=False)
    # all-NaN columns are answered directly: numpy would warn, and warning filters are not
    # thread-safe under a threaded scheduler
    empty = np.isnan(masked).all(axis=0)
    masked[:, empty] = 0.0
    median = np.nanmedian(masked, axis=0).astype(np.float32, copy=False)
    median[empty] = np.nan
    return median


def flag_one(
    sci: NDArray[np.float32],
    err: NDArray[np.float32],
    dq: NDArray[np.uint32],
    *,
    good_bits: int,
    maskpt: float,
    snr: float,
) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
    """Find outliers in one exposure against the median of its integrations.

    Parameters
    ----------
    sci, err : ndarray, (integration, y, x) float32
        Science and 1-sigma error cubes (a spatial block of them is fine: the rule is
        per pixel).
    dq : ndarray, (integration, y, x) uint32
        Data-quality flags.
    good_bits : int
        Acceptable DQ bits (``dq.parse_bits("~DO_NOT_USE")``).
    maskpt : float
        Weight-threshold fraction.
    snr : float
        Detection threshold in units of ``err`` (the first ``snr`` value).

    Returns
    -------
    outliers : ndarray, (integration, y, x) bool
        ``|sci - median| > snr * nan_to_num(err)``; NaN data or median never flags.
    median : ndarray, (y, x) float32
        The median image.

    Notes
    -----
    With one integration the median equals the data and nothing is flagged; with two, the
    median is their mean.  NaN errors count as zero, so any finite non-zero difference is
    flagged there, exactly as stcal's ``flag_crs``.
    """
    if not 0.0 <= maskpt <= 1.0 or not snr > 0:
        raise ValueError(f"outlier detection needs 0 <= maskpt <= 1 and snr > 0, got maskpt={maskpt}, snr={snr}")
    weight = good_pixels(dq, good_bits=good_bits)
    threshold = weight_threshold(weight, maskpt=maskpt)
    usable = ~(weight.astype(np.float32) < np.float32(threshold)) if np.isfinite(threshold) else np.ones_like(weight)
    median = median_image(sci, usable)
    with np.errstate(invalid="ignore"):
        outliers = np.greater(np.abs(sci - median), np.float32(snr) * np.nan_to_num(err))
    return outliers, median


def harmonise_invalid(
    dq: NDArray[np.uint32], *planes: NDArray[np.floating], do_not_use: int
) -> tuple[NDArray[np.bool_], NDArray[np.uint32]]:
    """Invalid-pixel mask and updated DQ for jwst's ``match_nans_and_flags``.

    Parameters
    ----------
    dq : ndarray of uint32
        Data-quality flags.
    *planes : ndarray
        SCI, ERR and VAR_* arrays of the same shape as ``dq``.
    do_not_use : int
        The DO_NOT_USE bit value.

    Returns
    -------
    invalid : ndarray of bool
        NaN in any plane or DO_NOT_USE set; callers set every plane to NaN there.
    dq : ndarray of uint32
        ``dq`` with DO_NOT_USE OR-ed in at invalid pixels (a new array).
    """
    invalid = (dq & np.uint32(do_not_use)) != 0
    for plane in planes:
        invalid |= np.isnan(plane)
    return invalid, np.where(invalid, dq | np.uint32(do_not_use), dq).astype(np.uint32)


def flag_exposure(
    sci: NDArray[np.float32],
    err: NDArray[np.float32],
    dq: NDArray[np.uint32],
    *variances: NDArray[np.float32],
    good_bits: int,
    maskpt: float,
    snr: float,
    flag_bits: int,
    do_not_use: int,
) -> tuple[NDArray[np.float32] | NDArray[np.uint32], ...]:
    """Flag outliers in one exposure and harmonise NaNs and flags (jwst coron mode).

    Parameters
    ----------
    sci, err : ndarray, (integration, y, x) float32
        Science and error cubes.
    dq : ndarray, (integration, y, x) uint32
        Data-quality flags.
    *variances : ndarray, (integration, y, x) float32
        VAR_POISSON, VAR_RNOISE, VAR_FLAT (those present).
    good_bits, maskpt, snr : see :func:`flag_one`
    flag_bits : int
        Bits OR-ed into DQ at outliers (DO_NOT_USE | OUTLIER = 17).
    do_not_use : int
        The DO_NOT_USE bit.

    Returns
    -------
    tuple of ndarray
        ``(sci, err, dq, *variances)``, new arrays: outliers flagged, and every plane NaN
        wherever any plane is NaN or DO_NOT_USE is set.
    """
    outliers, _ = flag_one(sci, err, dq, good_bits=good_bits, maskpt=maskpt, snr=snr)
    flagged = dq | (outliers.astype(np.uint32) * np.uint32(flag_bits))
    invalid, new_dq = harmonise_invalid(flagged, sci, err, *variances, do_not_use=do_not_use)
    nan = np.float32(np.nan)
    planes = tuple(np.where(invalid, nan, p).astype(np.float32) for p in (sci, err, *variances))
    return (planes[0], planes[1], new_dq, *planes[2:])
