"""Bad-pixel replacement and Fourier least-squares alignment of reference PSFs.

Kernels of jwst 3.0.0 ``align_refs`` (spec section 6): ``median_replace_img``
(``jwst/coron/median_replace_img.py``) for one plane, the Fourier shift operator and the
"Fourier LSQ" shift fit of ``jwst/coron/imageregistration.py``, and the per-target
alignment of a reference stack.  Two fits are offered: :func:`fit_shift_jwst`, a
bit-for-bit reproduction of the released single-precision MINPACK fit (which stalls near
zero shift, spec 6.5), and :func:`fit_shifts`, the intended float64 least-squares fit with
analytic derivatives, batched over references.

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
from scipy import ndimage, optimize, signal

__all__ = ["align_one", "fit_shift_jwst", "fit_shifts", "fourier_shift", "median_replace_one"]

#: half-width (px) of the integer cross-correlation search that seeds :func:`fit_shifts`
_START_RADIUS = 4
#: initial Newton damping (relative to the Hessian diagonal), and the damping at which a fit stops
_LAMBDA0 = 1e-3
_LAMBDA_MAX = 1e12
#: references fitted together by :func:`fit_shifts` (bounds the working memory)
_BATCH = 16


# --------------------------------------------------------------------------------------
# bad-pixel replacement
# --------------------------------------------------------------------------------------
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


def fit_shifts(
    target: NDArray[np.floating],
    refs: NDArray[np.floating],
    mask: NDArray[np.floating],
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
) -> NDArray[np.float64]:
    """Float64 least-squares fit of ``refs[m] ~ beta_m * S(target; sx_m, sy_m)``.

    Parameters
    ----------
    target : ndarray, (ny, nx) float
        Science frame, already median-replaced.
    refs : ndarray, (n_ref, ny, nx) float
        Reference PSF planes, already median-replaced.
    mask : ndarray, (ny, nx) float
        PSFMASK weights multiplying the residual (1 = full weight).
    max_iter : int, optional
        Maximum Newton iterations per reference.
    tol : float, optional
        A reference is converged when its Newton step is below ``tol * (1 + |shift|)`` or
        the step's predicted gain in ``C**2 / E`` (see Notes) is below ``tol`` times it.

    Returns
    -------
    ndarray, (n_ref, 3) float64
        Columns ``(sx, sy, beta)``.

    Raises
    ------
    ValueError
        Bad shapes or non-finite input.

    Notes
    -----
    Minimises the jwst objective (spec 6.3) ``sum(((refs[m] - beta * S(target; sx, sy)) *
    mask) ** 2)`` in float64: the fit jwst intends, not the stalled single-precision one
    it runs (:func:`fit_shift_jwst`). The result is the least-squares optimum and agrees
    with ``scipy.optimize.leastsq`` in float64 to ~1e-7 px or better.

    Method (all references of a batch iterated together, per-reference convergence):
    ``S(target; s)`` is the trigonometric interpolant ``T_up`` of the target sampled at
    ``x - s``, so with ``A = mask**2 * ref`` and ``B = mask**2`` the objective is
    ``sum(A ref) - 2 beta C(s) + beta**2 E(s)`` with ``C(s) = sum A T_up(x - s)`` and
    ``E(s) = sum B T_up(x - s)**2``. Both are exact finite Fourier sums in ``s`` (``E``
    on the doubled frequency grid of ``T_up**2``), evaluated with their analytic first
    and second derivatives as one matrix product per batch, without an FFT per iteration.
    ``beta = C / E`` is eliminated (variable projection) and ``C**2 / E`` is maximised
    over ``(sx, sy)`` by damped Newton steps (2x2 systems, ``np.linalg.solve`` on the
    stack). The start is the best integer shift within +-4 px (exact objective, two
    batched FFTs), refined by a parabola. Shifts far beyond 4 px may converge to another
    local optimum than ``leastsq`` started at zero.
    """
    t = np.asarray(target, dtype=np.float64)
    r = np.asarray(refs)  # cast to float64 batch by batch: memory bounded for many references
    m = np.asarray(mask, dtype=np.float64)
    if t.ndim != 2 or m.shape != t.shape or r.ndim != 3 or r.shape[1:] != t.shape:
        raise ValueError(
            f"expected target (ny, nx), refs (n, ny, nx), mask (ny, nx); got {t.shape}, {r.shape}, {m.shape}"
        )
    if not (np.isfinite(t).all() and np.isfinite(r).all() and np.isfinite(m).all()):
        raise ValueError("fit_shifts needs finite target, refs and mask (median-replace first)")
    out = np.empty((r.shape[0], 3), dtype=np.float64)
    if r.shape[0] == 0:
        return out
    model = _TargetModel(t, m)
    for lo in range(0, r.shape[0], _BATCH):
        out[lo : lo + _BATCH] = _fit_batch(model, r[lo : lo + _BATCH].astype(np.float64), max_iter, tol)
    return out


class _TargetModel:
    """Fourier-sum representation of ``C(s)`` and ``E(s)`` for one target and mask.

    ``a`` holds the coefficients of ``T_up`` on the symmetric grid ``K = -(n//2)..n//2``
    (even axes: the Nyquist bin split in halves, the corner split along the diagonal,
    which is what taking the real part of the shifted inverse FFT does). Sums over the
    full grid of Hermitian terms are folded onto ``Kx >= 0`` with weight 2 (1 at 0).
    """

    def __init__(self, t: NDArray[np.float64], m: NDArray[np.float64]) -> None:
        ny, nx = self.shape = (t.shape[0], t.shape[1])
        self.w2 = m * m
        ky, kx = np.arange(-(ny // 2), ny // 2 + 1), np.arange(-(nx // 2), nx // 2 + 1)
        full = sfft.fft2(t)
        a = full[np.ix_(ky % ny, kx % nx)] / (ny * nx)
        a *= np.where(2 * np.abs(ky) == ny, 0.5, 1.0)[:, None]
        a *= np.where(2 * np.abs(kx) == nx, 0.5, 1.0)[None, :]
        if ny % 2 == 0 and nx % 2 == 0:
            a[0, 0] = a[-1, -1] = full[ny // 2, nx // 2] / (2 * ny * nx)
            a[0, -1] = a[-1, 0] = 0.0
        half = kx >= 0
        self.ky, self.kx = ky, kx[half]
        self.rows = ky % ny  # rows of rfft2(A) for the C sums
        self.a_half = a[:, half] * np.where(kx[half] == 0, 1.0, 2.0)
        # E: coefficients of T_up**2 (linear convolution of a with itself)
        b = signal.fftconvolve(a, a)
        ky2, kx2 = np.arange(-2 * (ny // 2), 2 * (ny // 2) + 1), np.arange(-2 * (nx // 2), 2 * (nx // 2) + 1)
        half2 = kx2 >= 0
        self.ky2, self.kx2 = ky2, kx2[half2]
        b_hat = sfft.fft2(self.w2)
        self.g_e = b[:, half2] * np.where(kx2[half2] == 0, 1.0, 2.0) * np.conj(b_hat[np.ix_(ky2 % ny, kx2[half2] % nx)])
        # for the integer-shift start
        self.t_hat = sfft.rfft2(t)
        self.e_int = sfft.irfft2(sfft.rfft2(self.w2) * np.conj(sfft.rfft2(t * t)), s=self.shape)

    def moments(self, g_c: NDArray[np.complex128], s: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        """``C`` and ``E`` moments (k, 3, 3): ``[., i, j] = d^i/dsx^i d^j/dsy^j`` at ``s`` (k, 2)."""
        ny, nx = self.shape
        out = []
        for g, ky, kx in ((g_c, self.ky, self.kx), (self.g_e, self.ky2, self.kx2)):
            fx, fy = -2j * np.pi * kx / nx, -2j * np.pi * ky / ny
            powers = np.arange(3)
            v = np.exp(fx * s[:, :1])[:, :, None] * fx[None, :, None] ** powers  # (k, Kx, 3)
            u = np.exp(fy * s[:, 1:])[:, :, None] * fy[None, :, None] ** powers  # (k, Ky, 3)
            if g.ndim == 3:
                h = g @ v  # (k, Ky, 3)
            else:
                h = (g @ v.transpose(1, 0, 2).reshape(kx.size, -1)).reshape(ky.size, -1, 3)
                h = h.transpose(1, 0, 2)
            out.append(np.einsum("kyi,kyj->kij", h, u).real)
        return out[0], out[1]


def _reduced(mc: NDArray[np.float64], me: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """``q = C**2 / E`` with its gradient (k, 2) and Hessian (k, 2, 2) in ``(sx, sy)``."""
    c, e = mc[:, 0, 0], me[:, 0, 0]
    gc = np.stack([mc[:, 1, 0], mc[:, 0, 1]], axis=1)
    ge = np.stack([me[:, 1, 0], me[:, 0, 1]], axis=1)
    hc = np.stack([mc[:, 2, 0], mc[:, 1, 1], mc[:, 1, 1], mc[:, 0, 2]], axis=1).reshape(-1, 2, 2)
    he = np.stack([me[:, 2, 0], me[:, 1, 1], me[:, 1, 1], me[:, 0, 2]], axis=1).reshape(-1, 2, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ce = (c / e)[:, None]
        grad = 2 * ce * gc - ce**2 * ge
        outer_cc = gc[:, :, None] * gc[:, None, :]
        outer_ce = gc[:, :, None] * ge[:, None, :]
        outer_ee = ge[:, :, None] * ge[:, None, :]
        ce3 = ce[:, :, None]
        hess = (
            2 * (outer_cc + c[:, None, None] * hc) / e[:, None, None]
            - 2 * ce3 * (outer_ce + outer_ce.transpose(0, 2, 1)) / e[:, None, None]
            - ce3**2 * he
            + 2 * ce3**2 * outer_ee / e[:, None, None]
        )
        q = c * c / e
    return q, grad, hess


def _integer_start(model: _TargetModel, a_hat: NDArray[np.complex128]) -> NDArray[np.float64]:
    """Start shifts (k, 2) = (sx, sy): argmax of ``C(u)**2 / E(u)`` over integer ``u``.

    At integer ``u`` the shift is a circular roll, so ``C`` and ``E`` are plain
    cross-correlations (one batched inverse FFT). A 3-point parabola refines the peak.
    """
    ny, nx = model.shape
    c = sfft.irfft2(a_hat * np.conj(model.t_hat), s=model.shape)
    ry, rx = min(_START_RADIUS, (ny - 1) // 2), min(_START_RADIUS, (nx - 1) // 2)
    uy, ux = np.arange(-ry, ry + 1), np.arange(-rx, rx + 1)
    cw, ew = c[:, uy % ny][:, :, ux % nx], model.e_int[uy % ny][:, ux % nx]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ew > 0, cw * cw / ew, -np.inf)
    nearest_first = np.argsort(np.add.outer(uy**2, ux**2).ravel(), kind="stable")  # ties -> small |u|
    flat = score.reshape(score.shape[0], -1)[:, nearest_first]
    best = nearest_first[flat.argmax(axis=1)]
    iy, ix = np.unravel_index(best, score.shape[1:])
    pick = np.arange(score.shape[0])
    start = np.stack([ux[ix], uy[iy]], axis=1).astype(np.float64)
    for col, (idx, other, size) in enumerate(((ix, iy, ux.size), (iy, ix, uy.size))):
        inner = (idx > 0) & (idx < size - 1)
        k, i, o = pick[inner], idx[inner], other[inner]
        if col == 0:
            s0, sm, sp = score[k, o, i], score[k, o, i - 1], score[k, o, i + 1]
        else:
            s0, sm, sp = score[k, i, o], score[k, i - 1, o], score[k, i + 1, o]
        with np.errstate(divide="ignore", invalid="ignore"):
            curv = sm - 2 * s0 + sp
            frac = np.where(np.isfinite(curv) & (curv < 0), 0.5 * (sm - sp) / curv, 0.0)
        start[k, col] += np.clip(np.nan_to_num(frac), -0.5, 0.5)
    return start


def _fit_batch(model: _TargetModel, refs: NDArray[np.float64], max_iter: int, tol: float) -> NDArray[np.float64]:
    """Damped Newton on ``C(s)**2 / E(s)`` for a batch of references (see :func:`fit_shifts`)."""
    a_hat = sfft.rfft2(refs * model.w2)
    g_c = model.a_half[None] * np.conj(a_hat[:, model.rows, : model.kx.size])
    shift = _integer_start(model, a_hat)
    q, grad, hess = _reduced(*model.moments(g_c, shift))
    lam = np.full(shift.shape[0], _LAMBDA0)
    ids = np.flatnonzero(np.isfinite(q) & np.isfinite(grad).all(axis=1))  # E > 0
    for _ in range(max_iter):
        if ids.size == 0:
            break
        h_k = -hess[ids]  # positive definite at a maximum
        damp = np.abs(np.diagonal(h_k, axis1=1, axis2=2))
        damp = np.where(damp > 0, damp, 1.0)
        step = np.linalg.solve(h_k + lam[ids, None, None] * damp[:, :, None] * np.eye(2), grad[ids][:, :, None])[
            :, :, 0
        ]
        gain = np.einsum("ki,ki->k", grad[ids], step) - 0.5 * np.einsum("ki,kij,kj->k", step, h_k, step)
        convex = (h_k[:, 0, 0] > 0) & (h_k[:, 0, 0] * h_k[:, 1, 1] - h_k[:, 0, 1] ** 2 > 0)
        tiny = np.all(np.abs(step) <= tol * (1.0 + np.abs(shift[ids])), axis=1)
        final = tiny | (convex & (gain >= 0) & (gain <= tol * np.abs(q[ids])))
        shift[ids[final]] += step[final]  # below tolerance: take it without testing
        ids, step = ids[~final], step[~final]
        if ids.size == 0:
            break
        trial = shift[ids] + step
        q_t, grad_t, hess_t = _reduced(*model.moments(g_c[ids], trial))
        ok = q_t > q[ids]
        better = ids[ok]
        shift[better], q[better], grad[better], hess[better] = trial[ok], q_t[ok], grad_t[ok], hess_t[ok]
        lam[ids] = np.where(ok, np.maximum(lam[ids] / 10.0, 1e-12), lam[ids] * 10.0)
        ids = ids[lam[ids] <= _LAMBDA_MAX]
    mc, me = model.moments(g_c, shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(me[:, 0, 0] > 0, mc[:, 0, 0] / me[:, 0, 0], 1.0)
    return np.column_stack([shift, beta])


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
