"""Least-squares alignment of reference PSFs to a science frame.

Kernels of jwst 3.0.0 ``align_refs`` (spec section 6): the "Fourier LSQ" shift fit of
``jwst/coron/imageregistration.py`` and the per-target alignment of a reference stack, in two
kernels: :func:`align_one` (float64 fit and shifts, the default) and :func:`align_one_jwst`
(jwst 3.0.0 bit for bit).  The shift operator is :mod:`coron3_dask.kernels.shift`.  Their
fits: :func:`fit_shift_jwst`, a bit-for-bit reproduction of the released single-precision
MINPACK fit (which stalls near zero shift, spec 6.5), and
:func:`~coron3_dask.kernels.shift_fit.fit_shifts`, the intended float64 least-squares fit
with analytic derivatives, batched over references.

Conventions: ``x`` is the column (last) axis and ``y`` the row axis;
``S(A; sx, sy) = Re IFFT2[FFT2(A) exp(-2 pi i (f_y sy + f_x sx))]`` with numpy ``fftfreq``
frequencies, so a positive shift moves content to larger indices.  The fitted parameters
``(sx, sy, beta)`` are those for which ``beta * S(target; sx, sy)`` best matches a
reference; the aligned reference is ``S(ref; -sx, -sy)`` (``beta`` not applied).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from coron3_dask.kernels.shift import shift_spectrum_jwst, shift_stack
from coron3_dask.kernels.shift_fit import fit_shifts

__all__ = ["align_one", "align_one_jwst", "fit_shift_jwst"]


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
        offset = shift_spectrum_jwst(spectrum, params[0], params[1])
        return np.asarray(((ref - params[2] * offset) * mask).ravel())

    from scipy import optimize  # here: only the jwst-compat fit needs it

    result, _ = optimize.leastsq(residual, [0.0, 0.0, 1.0], xtol=1e-15, ftol=1e-15)
    return float(result[0]), float(result[1]), float(result[2])


# --------------------------------------------------------------------------------------
# alignment of a reference stack
# --------------------------------------------------------------------------------------
def _checked(
    target: NDArray[np.floating],
    refs: NDArray[np.floating],
    ref_err: NDArray[np.floating],
    mask: NDArray[np.floating],
) -> tuple[NDArray[np.floating], ...]:
    """Return the four arrays as ndarrays, after checking that their shapes agree."""
    t, r, e, m = (np.asarray(a) for a in (target, refs, ref_err, mask))
    if t.ndim != 2 or m.shape != t.shape or r.ndim != 3 or r.shape[1:] != t.shape or e.shape != r.shape:
        raise ValueError(
            f"expected target (ny, nx), refs and ref_err (n, ny, nx), mask (ny, nx); "
            f"got {t.shape}, {r.shape}, {e.shape}, {m.shape}"
        )
    return t, r, e, m


def _empty(n_frame: tuple[int, ...]) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64]]:
    return np.empty(n_frame, np.float32), np.empty(n_frame, np.float32), np.empty((0, 3), np.float64)


def align_one(
    target: NDArray[np.floating],
    refs: NDArray[np.floating],
    ref_err: NDArray[np.floating],
    mask: NDArray[np.floating],
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64]]:
    """Align every reference plane (and its error) to one science frame, in float64.

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
        Bad shapes, or non-finite ``target``/``refs``/``mask``.

    Notes
    -----
    Reproduces ``imageregistration.align_models`` (spec 6.3-6.4) with
    :func:`~coron3_dask.kernels.shift_fit.fit_shifts` and float64 shifts: the science frame
    is shifted to each reference in the fit, and each reference plane and its ERR plane are
    shifted back by the negated shift, each plane on its own. Like jwst, the ERR planes are
    Fourier-shifted as they are, so a NaN anywhere in an ERR plane makes that whole aligned
    ERR plane NaN (with real data, where ERR is NaN at DO_NOT_USE pixels, the jwst psfalign
    ERR is all NaN); this is reproduced, not fixed. It differs from jwst only in the fit
    (which jwst means to do, spec 6.5) and in the shift precision.
    """
    t, r, e, m = _checked(target, refs, ref_err, mask)
    if r.shape[0] == 0:
        return _empty(r.shape)
    params = fit_shifts(t, r, m)
    return shift_stack(r, -params[:, 0], -params[:, 1]), shift_stack(e, -params[:, 0], -params[:, 1]), params


def align_one_jwst(
    target: NDArray[np.floating],
    refs: NDArray[np.floating],
    ref_err: NDArray[np.floating],
    mask: NDArray[np.floating],
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64]]:
    """Align every reference plane (and its error) to one science frame exactly as jwst 3.0.0.

    Parameters and returns are those of :func:`align_one`.  The inputs are cast to float32 (the
    dtype of the jwst models), each reference is fitted with :func:`fit_shift_jwst`, and the
    shifts are applied with jwst's single-precision ``fourier_imshift``: the result is
    bit-identical to ``imageregistration.align_models`` (spec 6.3-6.5).

    Raises
    ------
    ValueError
        Bad shapes.
    """
    t, r, e, m = _checked(target, refs, ref_err, mask)
    if r.shape[0] == 0:
        return _empty(r.shape)
    t32, r32, e32, m32 = (a.astype(np.float32, copy=False) for a in (t, r, e, m))
    spectrum = np.fft.fftn(t32)
    params = np.array([_fit_jwst_spectrum(spectrum, plane, m32) for plane in r32], dtype=np.float64).reshape(-1, 3)
    sci = np.empty(r32.shape, dtype=np.float32)
    err = np.empty(e32.shape, dtype=np.float32)
    for k, (sx_k, sy_k, _) in enumerate(params):
        sci[k] = shift_spectrum_jwst(np.fft.fftn(r32[k]), -sx_k, -sy_k)
        err[k] = shift_spectrum_jwst(np.fft.fftn(e32[k]), -sx_k, -sy_k)
    return sci, err, params
