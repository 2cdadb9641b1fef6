"""KLIP kernel: analytic properties (orthonormality, orthogonal residual, exact recovery)."""

import numpy as np
import pytest

from coron3_dask.kernels import klip


def _refs(k=6, shape=(12, 10), seed=1):
    return np.random.default_rng(seed).normal(size=(k, *shape))


def test_basis_is_orthonormal_and_sorted():
    refs = _refs()
    r = refs.reshape(6, -1)
    r = r - r.mean(axis=1, keepdims=True)
    basis, _ = klip.klip_model(refs, truncate=6)
    np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-10)
    energy = ((r @ basis.T) ** 2).sum(axis=0)
    assert np.all(np.diff(energy) <= 1e-9), "modes must be ordered by captured variance"


@pytest.mark.parametrize("truncate", [1, 3, 5])
def test_residual_orthogonal_to_truncated_basis(truncate):
    refs = _refs()
    target = np.random.default_rng(5).normal(size=refs.shape[1:])
    sci, _ = klip.klip_one(target, refs, truncate=truncate)
    basis, _ = klip.klip_model(refs, truncate=truncate)
    assert np.abs(basis @ sci.astype(np.float64).ravel()).max() < 1e-4


def test_target_in_reference_span_is_removed_and_companion_survives():
    refs = _refs()
    target = 2.0 * refs[0] - 0.5 * refs[3] + 7.0
    sci, _ = klip.klip_one(target, refs, truncate=6)
    assert np.abs(sci).max() < 1e-5
    companion = np.zeros(refs.shape[1:])
    companion[5, 5] = 50.0
    sci2, _ = klip.klip_one(target + companion, refs, truncate=2)
    assert sci2[5, 5] > 20.0


def test_err_is_std_of_reference_residuals():
    refs = _refs(k=4)
    _, err = klip.klip_one(refs[0], refs, truncate=2)
    r = refs.reshape(4, -1)
    r = r - r.mean(axis=1, keepdims=True)
    # oracle: projection onto the top-2 principal components from an SVD (not our basis)
    _, _, vt = np.linalg.svd(r, full_matrices=False)
    basis = vt[:2]
    expected = (r - (r @ basis.T) @ basis).std(axis=0).reshape(refs.shape[1:])
    np.testing.assert_allclose(err, expected, rtol=1e-5)
    assert err.dtype == np.float32


def test_matches_independent_eigendecomposition():
    """Oracle: PCA via SVD of the mean-subtracted references (same subspace as the KL basis)."""
    refs = _refs(k=5)
    target = np.random.default_rng(9).normal(size=refs.shape[1:])
    sci, _ = klip.klip_one(target, refs, truncate=3)
    r = refs.reshape(5, -1)
    r = r - r.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(r, full_matrices=False)
    t = target.ravel()
    expected = (t - t.mean()) - vt[:3].T @ (vt[:3] @ t)
    np.testing.assert_allclose(sci.ravel(), expected, atol=1e-5)


def test_blocked_accumulation_is_independent_of_block_size():
    refs = _refs(k=7, shape=(33, 31))
    b1, e1 = klip.klip_model(refs, truncate=4, block=100)
    b2, e2 = klip.klip_model(refs, truncate=4, block=10**6)
    np.testing.assert_allclose(np.abs(b1 @ b2.T), np.eye(4), atol=1e-10)
    np.testing.assert_allclose(e1, e2, rtol=1e-5)


def test_errors_are_clear():
    refs = _refs(k=1)
    with pytest.raises(ValueError, match="at least 2 reference"):
        klip.klip_one(refs[0], refs, truncate=5)
    refs = _refs()
    bad = refs.copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        klip.klip_one(refs[0], bad, truncate=5)
