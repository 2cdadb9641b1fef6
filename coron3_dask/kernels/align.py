"""Fourier shifts and least-squares alignment of reference PSFs to a science frame.

Kernels of jwst 3.0.0 ``align_refs`` (spec section 6): the Fourier shift operator and the
"Fourier LSQ" shift fit of ``jwst/coron/imageregistration.py``, and the per-target
alignment of a reference stack.  Two fits are offered: :func:`fit_shift_jwst`, a
bit-for-bit reproduction of the released single-precision MINPACK fit (which stalls near
zero shift, spec 6.5), and :func:`fit_shifts`, the intended float64 least-squares fit with
analytic derivatives, batched over references (in :mod:`coron3_dask.kernels.shift_fit`).
:func:`median_replace_one` (``median_replace_img``, in
:mod:`coron3_dask.kernels.median_replace`) is re-exported here with the other
``align_refs`` kernels.

Conventions: ``x`` is the column (last) axis and ``y`` the row axis;
``S(A; sx, sy) = Re IFFT2[FFT2(A) exp(-2 pi i (f_y sy + f_x sx))]`` with numpy ``fftfreq``
frequencies, so a positive shift moves content to larger indices.  The fitted parameters
``(sx, sy, beta)`` are those for which ``beta * S(target; sx, sy)`` best matches a
reference; the aligned reference is ``S(ref; -sx, -sy)`` (``beta`` not applied).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy import ndimage, optimize

from coron3_dask.kernels.median_replace import median_replace_one
from coron3_dask.kernels.shift_fit import fit_shifts

__all__ = ["align_one", "fit_shift_jwst", "fit_shifts", "fourier_shift", "median_replace_one"]

#: planes Fourier-shifted together by :func:`align_one` (bounds the float64 working memory)
_BATCH = 16


# --------------------------------------------------------------------------------------
# Fourier shift
# --------------------------------------------------------------------------------------
def fourier_shift(
    image: NDArray[np.floating], sx: float, sy: float, *, single_precision: bool = False
) -> NDArray[np.floating]:
    """Shift an image by ``(sx, sy)`` pixels with the Fourier shift theorem.

    Parameters
    ----------
    image : ndarray, (ny, nx) float
        Image to shift (periodic boundary).
    sx, sy : float
        Shift along x (columns) and y (rows); positive moves content to larger index.
    single_precision : bool, optional
        If True, evaluate exactly as jwst does: ``numpy.fft.fftn``, then
        ``scipy.ndimage.fourier_shift(..., (sy, sx))``, then ``numpy.fft.ifftn(...).real``
        on the array as given: the precision follows ``numpy.fft`` (numpy >= 2: complex64
        for a float32 image, giving a float32 result bit-identical to jwst; complex128 for
        float64). If False (default), compute in float64.

    Returns
    -------
    ndarray, (ny, nx)
        float32 for a float32 image with ``single_precision=True``, else float64 (for other
        input dtypes with ``single_precision=True``: whatever ``numpy.fft`` returns).

    Raises
    ------
    ValueError
        If ``image`` is not 2-D.

    Notes
    -----
    ``S(A; sx, sy) = Re IFFT2[FFT2(A) exp(-2 pi i (f_y sy + f_x sx))]``, ``f = fftfreq(n)``
    (the Nyquist bin of an even axis is -0.5). The float64 path uses real FFTs with the
    Nyquist bins treated so that it equals the real part of the full complex transform;
    the two paths agree to round-off. A NaN anywhere in ``image`` makes the whole output
    NaN (as in jwst).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((8, 8))
    >>> img[2, 3] = 1.0
    >>> moved = fourier_shift(img, 1.0, 2.0)  # one column right, two rows down
    >>> bool(np.allclose(moved, np.roll(img, (2, 1), axis=(0, 1))))
    True
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {arr.shape}")
    if single_precision:
        return _shift_jwst(np.fft.fftn(arr), sx, sy)
    shifted = _shift_batch(arr[None].astype(np.float64), np.array([float(sx)]), np.array([float(sy)]))
    return shifted[0]


def _shift_jwst(spectrum: NDArray[np.complexfloating], sx: float, sy: float) -> NDArray[np.floating]:
    """Jwst's ``fourier_imshift`` for one plane, given ``numpy.fft.fftn`` of the plane."""
    return np.fft.ifftn(ndimage.fourier_shift(spectrum, (sy, sx))).real


def _axis_factors(n: int, shift: NDArray[np.float64]) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
    """Phase factors of one axis for a batch of shifts (m,).

    Returns ``(c, d)``: ``c`` (m, k) is ``exp(-2 pi i f s)`` on the ``fftfreq`` (``n`` = ny,
    k = n) or ``rfftfreq`` (``n`` = -nx, k = nx//2+1) grid, except at the Nyquist bin of
    an even axis, where it is ``cos(pi s)``; ``d`` (m,) is ``i sin(pi s)`` there (zero for
    odd n). Taking the real part of the inverse transform makes the full multiplier
    Hermitian; it is then ``c_y c_x + d_y d_x`` (``d_y d_x`` only at the corner bin).
    """
    size = abs(n)
    freq = sfft.rfftfreq(size) if n < 0 else sfft.fftfreq(size)
    c = np.exp(-2j * np.pi * freq * shift[:, None])
    d = np.zeros(shift.size, dtype=np.complex128)
    if size % 2 == 0:
        c[:, size // 2] = np.cos(np.pi * shift)
        d = 1j * np.sin(np.pi * shift)
    return c, d


def _shift_stream(
    images: NDArray[np.floating], sx: NDArray[np.float64], sy: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Float64 Fourier shift of every plane, ``_BATCH`` planes at a time, into float32.

    Memory stays at the float32 output plus one batch of float64 work, however many
    planes.  A plane containing a NaN shifts to an all-NaN plane (every Fourier
    coefficient sees the NaN), so it is written directly without the FFTs.
    """
    out = np.empty(images.shape, dtype=np.float32)
    bad = np.isnan(images).any(axis=(1, 2))
    out[bad] = np.nan
    good = np.flatnonzero(~bad)
    for lo in range(0, len(good), _BATCH):
        idx = good[lo : lo + _BATCH]
        out[idx] = _shift_batch(images[idx].astype(np.float64), sx[idx], sy[idx])
    return out


def _shift_batch(images: NDArray[np.float64], sx: NDArray[np.float64], sy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Float64 ``S(images[m]; sx[m], sy[m])`` for a stack (m, ny, nx)."""
    ny, nx = images.shape[1:]
    cy, dy = _axis_factors(ny, sy)
    cx, dx = _axis_factors(-nx, sx)
    spectrum = sfft.rfft2(images)
    z = spectrum * cy[:, :, None]
    z *= cx[:, None, :]
    if ny % 2 == 0 and nx % 2 == 0:
        z[:, ny // 2, nx // 2] += spectrum[:, ny // 2, nx // 2] * dy * dx
    return np.fft.irfft2(z, s=(ny, nx))


# --------------------------------------------------------------------------------------
# shift fits
# --------------------------------------------------------------------------------------
def fit_shift_jwst(
    target: NDArray[np.floating], ref: NDArray[np.floating], mask: NDArray[np.floating]
) -> tuple[float, float, float]:
    """Fit ``ref ~ beta * S(target; sx, sy)`` exactly as jwst 3.0.0 does.

    Parameters
    ----------
    target : ndarray, (ny, nx) float
        Science frame (jwst: first science integration, float32).
    ref : ndarray, (ny, nx) float
        Reference PSF plane.
    mask : ndarray, (ny, nx) float
        PSFMASK weights multiplying the residual.

    Returns
    -------
    tuple of float
        ``(sx, sy, beta)``.

    Notes
    -----
    Reproduces ``imageregistration.align_fourier_lsq(target, ref, mask)``:
    ``scipy.optimize.leastsq`` (MINPACK lmdif, forward differences) from ``(0, 0, 1)``
    with ``xtol = ftol = 1e-15`` on ``((ref - beta * S(target; sx, sy)) * mask).ravel()``,
    with ``S`` evaluated in the dtype of ``target`` (complex64 for float32 with numpy >= 2).
    The arrays are used as given (pass float32 for jwst parity); the result is
    bit-identical to jwst's. The only speed-up is that ``fftn(target)`` is computed once
    (a deterministic value, so the residuals are unchanged). For float32 input the shift
    hardly leaves (0, 0) (spec 6.5): this is the reference behaviour, not a good fit.
    """
    return _fit_jwst_spectrum(np.fft.fftn(np.asarray(target)), np.asarray(ref), np.asarray(mask))


def _fit_jwst_spectrum(
    spectrum: NDArray[np.complexfloating], ref: NDArray[np.floating], mask: NDArray[np.floating]
) -> tuple[float, float, float]:
    """:func:`fit_shift_jwst` given ``numpy.fft.fftn(target)``."""

    def residual(params: NDArray[np.float64]) -> NDArray[np.float64]:
        offset = _shift_jwst(spectrum, params[0], params[1])
        return np.asarray(((ref - params[2] * offset) * mask).ravel())

    result, _ = optimize.leastsq(residual, [0.0, 0.0, 1.0], xtol=1e-15, ftol=1e-15)
    return float(result[0]), float(result[1]), float(result[2])


# --------------------------------------------------------------------------------------
# alignment of a reference stack
# --------------------------------------------------------------------------------------
def align_one(
    target: NDArray[np.floating],
    refs: NDArray[np.floating],
    ref_err: NDArray[np.floating],
    mask: NDArray[np.floating],
    *,
    jwst_compat: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64]]:
    """Align every reference plane (and its error) to one science frame.

    Parameters
    ----------
    target : ndarray, (ny, nx) float
        Science frame, already median-replaced.
    refs : ndarray, (n_ref, ny, nx) float
        Reference PSF planes, already median-replaced.
    ref_err : ndarray, (n_ref, ny, nx) float
        Their ERR planes (not replaced).
    mask : ndarray, (ny, nx) float
        PSFMASK weights.
    jwst_compat : bool, optional
        If True, reproduce jwst 3.0.0 bit for bit: inputs cast to float32 (the dtype of
        the jwst models), :func:`fit_shift_jwst` per reference, shifts applied with the
        single-precision path. If False (default), :func:`fit_shifts` and float64 shifts.

    Returns
    -------
    aligned_sci : ndarray, (n_ref, ny, nx) float32
        ``S(refs[m]; -sx_m, -sy_m)`` (``beta`` is not applied).
    aligned_err : ndarray, (n_ref, ny, nx) float32
        ``S(ref_err[m]; -sx_m, -sy_m)``.
    params : ndarray, (n_ref, 3) float64
        ``(sx, sy, beta)`` per reference.

    Raises
    ------
    ValueError
        Bad shapes (and, without ``jwst_compat``, non-finite ``target``/``refs``/``mask``).

    Notes
    -----
    Reproduces ``imageregistration.align_models`` (spec 6.3-6.4): the science frame is
    shifted to each reference in the fit, and each reference plane and its ERR plane are
    shifted back by the negated shift, each plane on its own. Like jwst, the ERR planes
    are Fourier-shifted as they are, so a NaN anywhere in an ERR plane makes that whole
    aligned ERR plane NaN (with real data, where ERR is NaN at DO_NOT_USE pixels, the
    jwst psfalign ERR is all NaN); this is reproduced, not fixed. The float64 default
    differs from jwst only in the fit (which jwst means to do, spec 6.5) and in the
    shift precision.
    """
    t, r, e, m = (np.asarray(a) for a in (target, refs, ref_err, mask))
    if t.ndim != 2 or m.shape != t.shape or r.ndim != 3 or r.shape[1:] != t.shape or e.shape != r.shape:
        raise ValueError(
            f"expected target (ny, nx), refs and ref_err (n, ny, nx), mask (ny, nx); "
            f"got {t.shape}, {r.shape}, {e.shape}, {m.shape}"
        )
    if r.shape[0] == 0:
        return (np.empty(r.shape, np.float32), np.empty(r.shape, np.float32), np.empty((0, 3), np.float64))
    if not jwst_compat:
        params = fit_shifts(t, r, m)
        return _shift_stream(r, -params[:, 0], -params[:, 1]), _shift_stream(e, -params[:, 0], -params[:, 1]), params
    t32, r32, e32, m32 = (a.astype(np.float32, copy=False) for a in (t, r, e, m))
    spectrum = np.fft.fftn(t32)
    params = np.array([_fit_jwst_spectrum(spectrum, plane, m32) for plane in r32], dtype=np.float64).reshape(-1, 3)
    sci = np.empty(r32.shape, dtype=np.float32)
    err = np.empty(e32.shape, dtype=np.float32)
    for k, (sx_k, sy_k, _) in enumerate(params):
        sci[k] = _shift_jwst(np.fft.fftn(r32[k]), -sx_k, -sy_k)
        err[k] = _shift_jwst(np.fft.fftn(e32[k]), -sx_k, -sy_k)
    return sci, err, params
