"""The one Fourier shift of the package: the shift theorem, in float64 or as jwst evaluates it.

``S(A; sx, sy) = Re IFFT2[FFT2(A) exp(-2 pi i (f_y sy + f_x sx))]`` with numpy ``fftfreq``
frequencies, so a positive shift moves content to larger indices; ``x`` is the column (last)
axis and ``y`` the row axis, and the argument order is always ``(image, sx, sy)``.
:func:`fourier_shift` shifts one image; :func:`shift_stack` shifts a stack plane by plane into
float32 with bounded float64 work memory (align_refs); :func:`shift_spectrum_jwst` is jwst's
``fourier_imshift`` (single precision for float32 input), used by the bit-exact compat path.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

__all__ = ["fourier_shift", "shift_spectrum_jwst", "shift_stack"]

#: planes Fourier-shifted together by :func:`shift_stack` (bounds the float64 working memory)
_BATCH = 16


def fourier_shift(
    image: NDArray[np.floating], sx: float, sy: float, *, single_precision: bool = False, pixel_mtf: bool = False
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
    pixel_mtf : bool, optional
        Also multiply the spectrum by the pixel transfer function ``sinc(f_y) sinc(f_x)``
        (integrates a Nyquist-sampled intensity over square pixels; the simulator's detector).
        Float64 path only.

    Returns
    -------
    ndarray, (ny, nx)
        float32 for a float32 image with ``single_precision=True``, else float64 (for other
        input dtypes with ``single_precision=True``: whatever ``numpy.fft`` returns).

    Raises
    ------
    ValueError
        If ``image`` is not 2-D, or ``pixel_mtf`` is asked of the single-precision path.

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
        if pixel_mtf:
            raise ValueError("pixel_mtf is only available on the float64 path")
        return shift_spectrum_jwst(np.fft.fftn(arr), sx, sy)
    if pixel_mtf:
        return _shift_with_mtf(arr.astype(np.float64), float(sx), float(sy))
    shifted = _shift_batch(arr[None].astype(np.float64), np.array([float(sx)]), np.array([float(sy)]))
    return shifted[0]


def shift_spectrum_jwst(spectrum: NDArray[np.complexfloating], sx: float, sy: float) -> NDArray[np.floating]:
    """Jwst's ``fourier_imshift`` for one plane, given ``numpy.fft.fftn`` of the plane."""
    from scipy import ndimage  # here: only the jwst-compat shift needs it

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


def shift_stack(images: NDArray[np.floating], sx: NDArray[np.float64], sy: NDArray[np.float64]) -> NDArray[np.float32]:
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


def _shift_with_mtf(image: NDArray[np.float64], sx: float, sy: float) -> NDArray[np.float64]:
    """Float64 ``S(image; sx, sy)`` times the pixel MTF, the whole multiplier applied at once.

    The same phase factors as :func:`_shift_batch` (:func:`_axis_factors`); with the pixel
    transfer function the full multiplier ``c_y c_x`` (corner bin ``cos(pi (sx + sy))``, which
    equals ``c_y c_x + d_y d_x`` there) times ``sinc(f_y) sinc(f_x)`` is built first and the
    spectrum multiplied once, the evaluation order the simulator's data were made with.
    """
    ny, nx = image.shape
    cy, _ = _axis_factors(ny, np.array([sy]))
    cx, _ = _axis_factors(-nx, np.array([sx]))
    ramp = cy[0][:, None] * cx[0][None, :]
    if ny % 2 == 0 and nx % 2 == 0:
        ramp[ny // 2, nx // 2] = np.cos(np.pi * (sy + sx))
    ramp *= np.sinc(sfft.fftfreq(ny))[:, None] * np.sinc(sfft.rfftfreq(nx))[None, :]
    return np.fft.irfft2(np.fft.rfft2(image) * ramp, s=(ny, nx))
