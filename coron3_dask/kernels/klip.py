"""Karhunen-Loeve Image Projection (KLIP) PSF subtraction for one integration.

Soummer, Pueyo & Larkin (2012, ApJ 755, L28).  Reproduces jwst 3.0.0 ``jwst/coron/klip.py``
(spec section 7): float64 internals, each reference made zero-mean, covariance
eigen-decomposition sorted by descending eigenvalue, KL vectors normalised to unit norm and
truncated, projection of the raw target, output = (target - mean(target)) - projection,
error = population standard deviation over references of their own KLIP residuals.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["klip_model", "klip_modes", "klip_one", "klip_subtract", "project"]


def project(vectors: NDArray[np.float64], basis: NDArray[np.float64]) -> NDArray[np.float64]:
    """Projection of row vectors onto the span of an orthonormal basis.

    Parameters
    ----------
    vectors : ndarray, (..., npix)
        Vectors to project.
    basis : ndarray, (k, npix)
        Orthonormal rows.

    Returns
    -------
    ndarray, (..., npix)
    """
    return np.dot(np.dot(vectors, basis.T), basis)


def _finite(array: NDArray[np.float64], what: str) -> NDArray[np.float64]:
    if not np.isfinite(array).all():
        raise ValueError(f"KLIP {what} contain NaN or infinite values (bad pixels were not replaced)")
    return array


def _blocks(npix: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, npix)) for start in range(0, npix, size)]


def klip_model(
    refs: NDArray[np.floating], *, truncate: int, block: int = 32768
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """KL basis of aligned references and the KLIP error image they imply.

    Parameters
    ----------
    refs : ndarray, (ref, y, x)
        Aligned references (float32 or float64; not copied to float64 as a whole).
    truncate : int
        Number of KL modes kept.
    block : int
        Pixels processed at a time: memory stays at ``ref * block`` float64 values
        beyond the inputs and the ``(k, y*x)`` basis, whatever the frame size.

    Returns
    -------
    basis : ndarray, (k, y*x) float64
        Orthonormal KL vectors, ``k = min(truncate, ref)``.
    err : ndarray, (y, x) float32
        Population standard deviation over references of ``R_k - projection(R_k)``
        (jwst's psfsub ERR; it does not depend on the target).

    Raises
    ------
    ValueError
        Fewer than two references or non-finite values.

    Notes
    -----
    The same arithmetic as jwst (each reference made zero-mean in float64, covariance
    normalised by ``npix - 1``, eigenvectors sorted by descending eigenvalue, KL vectors
    normalised to unit norm), accumulated over pixel blocks; results agree with the
    one-shot computation to float64 round-off.
    """
    basis, errs = _model(refs, (truncate,), block)
    return basis, errs[0]


def _model(
    refs: NDArray[np.floating], truncations: tuple[int, ...], block: int
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """KL basis for ``max(truncations)`` modes and the error image of each truncation."""
    n_ref = len(refs)
    if n_ref < 2:
        raise ValueError(f"KLIP needs at least 2 reference images, got {n_ref}")
    if min(truncations) < 0:
        raise ValueError(f"KLIP truncate must be >= 0, got {min(truncations)}")
    flat = np.asarray(refs).reshape(n_ref, -1)
    npix = flat.shape[1]
    blocks = _blocks(npix, block)
    means = flat.mean(axis=1, dtype=np.float64)[:, None]

    def centred(sl: slice) -> NDArray[np.float64]:
        return _finite(flat[:, sl].astype(np.float64) - means, "references")

    cov = np.zeros((n_ref, n_ref))
    for sl in blocks:
        c = centred(sl)
        cov += c @ c.T
    eigval, eigvect = np.linalg.eigh(cov / (npix - 1))
    vectors = eigvect[:, eigval.argsort()[::-1]].T[: max(truncations)]
    basis = np.empty((len(vectors), npix))
    for sl in blocks:
        basis[:, sl] = vectors @ centred(sl)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    errs = np.empty((len(truncations), npix), dtype=np.float32)
    for m, k in enumerate(truncations):  # coefficients per truncation: each as a single-truncation run
        coeffs = np.zeros((n_ref, len(basis[:k])))
        for sl in blocks:
            coeffs += centred(sl) @ basis[:k, sl].T
        for sl in blocks:
            errs[m, sl] = (centred(sl) - coeffs @ basis[:k, sl]).std(axis=0)
    return basis, errs.reshape(len(truncations), *refs.shape[1:])


def klip_subtract(target: NDArray[np.floating], basis: NDArray[np.float64]) -> NDArray[np.float32]:
    """Subtract the KL projection of one (y, x) frame: ``(t - mean(t)) - Z^T Z t``.

    Parameters
    ----------
    target : ndarray, (y, x)
        Science integration (bad pixels already replaced).
    basis : ndarray, (k, y*x) float64
        From :func:`klip_model`.

    Returns
    -------
    ndarray, (y, x) float32

    Raises
    ------
    ValueError
        Non-finite target values.
    """
    t = _finite(np.asarray(target, dtype=np.float64).reshape(-1), "target")
    out = t - t.mean()
    out -= project(t, basis)
    return out.reshape(target.shape).astype(np.float32)


def klip_one(
    target: NDArray[np.floating], refs: NDArray[np.floating], *, truncate: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """KLIP-subtract one (y, x) frame using aligned (ref, y, x) references.

    Parameters
    ----------
    target : ndarray, (y, x)
        Science integration (bad pixels already replaced).
    refs : ndarray, (ref, y, x)
        References aligned to this integration.
    truncate : int
        Number of KL modes kept.

    Returns
    -------
    sci : ndarray, (y, x) float32
        ``(target - mean(target)) - projection``.
    err : ndarray, (y, x) float32
        Standard deviation over references of each reference's KLIP residual.

    Raises
    ------
    ValueError
        Fewer than two references, or non-finite values in target or references (jwst
        would silently return an all-NaN plane).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> refs = rng.normal(size=(5, 8, 8))
    >>> sci, err = klip_one(refs[0] * 2.0, refs, truncate=5)
    >>> bool(np.abs(sci).max() < 1e-5)
    True
    """
    basis, err = klip_model(refs, truncate=truncate)
    return klip_subtract(target, basis), err


def klip_modes(
    target: NDArray[np.floating], refs: NDArray[np.floating], *, numbasis: tuple[int, ...]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """KLIP-subtract one frame for several truncations from one KL basis.

    Parameters
    ----------
    target : ndarray, (...)
        Science pixels: a (y, x) frame or the (npix,) pixels of one optimisation region.
    refs : ndarray, (ref, ...)
        Aligned references on the same pixels.
    numbasis : tuple of int
        Numbers of KL modes kept (pyKLIP's ``numbasis``); each is clipped to the number of
        references, as in jwst and pyKLIP.

    Returns
    -------
    sci : ndarray, (mode, ...) float32
        ``(target - mean(target)) - projection`` on the first ``k`` modes, per ``k``.
    err : ndarray, (mode, ...) float32
        jwst's KLIP error image per truncation (see :func:`klip_model`).

    Notes
    -----
    The basis is computed once, for ``max(numbasis)`` modes; a truncation uses its leading
    rows.  The arithmetic per truncation is that of :func:`klip_one`.  pyKLIP's
    ``klip_math`` projects the mean-subtracted target and normalises the KL vectors by
    ``1 / sqrt(eigenvalue (npix - 1))``; both are the same numbers up to round-off (KL vectors
    have zero mean and that normalisation gives them unit norm).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> refs = rng.normal(size=(6, 50))
    >>> sci, err = klip_modes(refs[0] + 0.1 * rng.normal(size=50), refs, numbasis=(1, 6))
    >>> sci.shape, bool(np.abs(sci[1]).std() < np.abs(sci[0]).std())
    ((2, 50), True)
    """
    basis, errs = _model(refs, tuple(numbasis), 32768)
    sci = np.stack([klip_subtract(target, basis[:k]) for k in numbasis])
    return sci, errs
