"""Usable-pixel counts: the guard that keeps a run from writing products that are silently garbage.

A pixel is usable when its science value is finite, it carries none of the ``bad_bits`` DQ
flags and, where a weight map is given (the PSFMASK), its weight is positive.  A reference
integration without one usable pixel would be median-replaced into an all-zero plane (and
its KL modes into NaN); a science integration without one usable pixel inside the PSFMASK
has nothing to align or subtract.  :func:`require_usable` turns such counts into one error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["UnusableDataError", "count_usable", "require_usable"]


class UnusableDataError(ValueError):
    """Every pixel a stage needs from some integration is unusable (NaN, flagged or masked out)."""


def count_usable(
    sci: NDArray[np.floating], dq: NDArray[np.integer], *, bad_bits: int, weights: NDArray[np.floating] | None = None
) -> NDArray[np.int64]:
    """Count the usable pixels of each frame of a cube.

    Parameters
    ----------
    sci : ndarray, (n, ny, nx) float
        Science values.
    dq : ndarray, (n, ny, nx) unsigned int
        Data-quality flags.
    bad_bits : int
        DQ bits that make a pixel unusable; must be >= 0.
    weights : ndarray, (ny, nx) float, optional
        Weight map (PSFMASK); only pixels with a positive weight count.

    Returns
    -------
    ndarray, (n,) int64

    Raises
    ------
    ValueError
        Shapes that do not match, or a negative ``bad_bits``.

    Examples
    --------
    >>> sci = np.array([[[1.0, np.nan], [2.0, 3.0]]])
    >>> dq = np.array([[[0, 0], [1, 0]]], dtype=np.uint32)
    >>> count_usable(sci, dq, bad_bits=1).tolist()
    [2]
    """
    s, q = np.asarray(sci), np.asarray(dq)
    if s.ndim != 3 or q.shape != s.shape or (weights is not None and np.shape(weights) != s.shape[1:]):
        w_shape = None if weights is None else np.shape(weights)
        raise ValueError(f"expected sci and dq (n, ny, nx) and weights (ny, nx); got {s.shape}, {q.shape}, {w_shape}")
    if bad_bits < 0:
        raise ValueError(f"bad_bits must be >= 0, got {bad_bits}")
    usable = np.isfinite(s) & ((q & np.asarray(bad_bits, dtype=q.dtype)) == 0)
    if weights is not None:
        usable &= np.asarray(weights) > 0
    return usable.sum(axis=(1, 2), dtype=np.int64)


def require_usable(
    counts: Sequence[NDArray[np.int64]], labels: Sequence[Sequence[tuple[str, int]]], problem: Sequence[str]
) -> bool:
    """Raise if any integration has no usable pixel; return True otherwise.

    Parameters
    ----------
    counts : sequence of ndarray
        Per group (e.g. the reference stack, then each science exposure), the usable-pixel count of
        each of its integrations.
    labels : sequence of sequence of (str, int)
        Per group, each integration's ``(file name, integration number)``.
    problem : sequence of str
        Per group, what an empty integration means (``"no usable pixel (all NaN or DO_NOT_USE)"``).

    Returns
    -------
    bool
        True (a token later tasks can depend on).

    Raises
    ------
    UnusableDataError
        One line naming every file with empty integrations, their numbers and the problem.
    """
    found: dict[tuple[str, str], list[int]] = {}
    for group_counts, group_labels, what in zip(counts, labels, problem, strict=True):
        for n, (name, number) in zip(np.asarray(group_counts).tolist(), group_labels, strict=True):
            if n == 0:
                found.setdefault((name, what), []).append(int(number))
    if found:
        parts = [f"{name}: integration(s) {', '.join(map(str, ns))} have {what}" for (name, what), ns in found.items()]
        raise UnusableDataError("; ".join(parts) + "; nothing was written")
    return True
