"""Float64 Fourier least-squares fit of the shifts of reference PSFs to one science frame.

The fit that jwst 3.0.0 ``align_refs`` intends (spec sections 6.3 and 6.5): the objective of
``align_fourier_lsq`` in ``jwst/coron/imageregistration.py``, minimised in float64 with
analytic derivatives and batched over references.  The bit-for-bit reproduction of the
released single-precision fit is :func:`coron3_dask.kernels.align.fit_shift_jwst`.

Conventions: ``x`` is the column (last) axis and ``y`` the row axis;
``S(A; sx, sy) = Re IFFT2[FFT2(A) exp(-2 pi i (f_y sy + f_x sx))]`` with numpy ``fftfreq``
frequencies, so a positive shift moves content to larger indices.  The fitted parameters
``(sx, sy, beta)`` are those for which ``beta * S(target; sx, sy)`` best matches a reference.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

__all__ = ["fit_shifts"]

#: half-width (px) of the integer cross-correlation search that seeds :func:`fit_shifts`
_START_RADIUS = 4
#: initial Newton damping (relative to the Hessian diagonal), and the damping at which a fit stops
_LAMBDA0 = 1e-3
_LAMBDA_MAX = 1e12
#: references fitted together by :func:`fit_shifts` (bounds the working memory)
_BATCH = 16


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
    it runs (:func:`~coron3_dask.kernels.align.fit_shift_jwst`). The result is the least-squares optimum and agrees
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
        from scipy import signal  # here, not at import: scipy.signal costs ~0.4 s to import

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
