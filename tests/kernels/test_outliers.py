"""Outlier kernel on hand-made cubes: the rule, the threshold, NaN/flag harmonisation."""

import numpy as np
import pytest

from coron3_dask.kernels import outliers


def _cube(n=5, shape=(6, 7), seed=0):
    rng = np.random.default_rng(seed)
    sci = (10 + rng.normal(scale=0.1, size=(n, *shape))).astype(np.float32)
    err = np.full_like(sci, 0.1)
    dq = np.zeros(sci.shape, np.uint32)
    return sci, err, dq


def test_single_hit_is_found_and_nothing_else():
    sci, err, dq = _cube()
    sci[2, 3, 4] += 5.0  # 50 sigma
    bad, median = outliers.flag_one(sci, err, dq, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0)
    assert [tuple(i) for i in np.argwhere(bad)] == [(2, 3, 4)]
    assert median.dtype == np.float32
    np.testing.assert_array_equal(median, np.median(sci, axis=0))


def test_threshold_is_snr_times_err():
    sci, err, dq = _cube(n=3)
    sci[:] = 1.0
    sci[0, 0, 0] = 1.0 + 0.49  # 4.9 sigma: kept
    sci[0, 1, 1] = 1.0 + 0.51  # 5.1 sigma: flagged
    bad, _ = outliers.flag_one(sci, err, dq, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0)
    assert not bad[0, 0, 0] and bad[0, 1, 1]


def test_single_integration_never_flags_and_two_use_the_mean():
    sci, err, dq = _cube(n=1)
    sci[0, 2, 2] = 1e6
    bad, _ = outliers.flag_one(sci, err, dq, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0)
    assert not bad.any()
    sci2, err2, dq2 = _cube(n=2)
    _, median = outliers.flag_one(sci2, err2, dq2, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0)
    np.testing.assert_allclose(median, sci2.mean(axis=0), rtol=1e-6)


def test_do_not_use_pixels_are_excluded_from_the_median():
    sci, err, dq = _cube(n=3)
    sci[:, 1, 1] = [1.0, 2.0, 100.0]
    dq[2, 1, 1] = 1
    _, median = outliers.flag_one(sci, err, dq, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0)
    assert median[1, 1] == pytest.approx(1.5)


def test_nan_error_counts_as_zero():
    sci, err, dq = _cube(n=3)
    sci[:, 0, 0] = [1.0, 1.0, 1.001]
    err[2, 0, 0] = np.nan
    bad, _ = outliers.flag_one(sci, err, dq, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0)
    assert bad[2, 0, 0]


def test_weight_threshold_is_maskpt_for_binary_weights_and_nan_when_empty():
    w = np.ones((3, 4, 4))
    w[0, 0, 0] = 0
    assert outliers.weight_threshold(w, maskpt=0.7) == pytest.approx(0.7)
    assert np.isnan(outliers.weight_threshold(np.zeros(5), maskpt=0.7))


def test_flag_exposure_harmonises_nans_and_flags():
    sci, err, dq = _cube(n=4)
    var = np.ones_like(sci)
    var[1, 2, 2] = np.nan  # NaN only in a variance plane
    dq[3, 0, 1] = 1  # flagged but finite
    sci[0, 4, 4] += 10  # outlier
    out_sci, out_err, out_dq, out_var = outliers.flag_exposure(
        sci, err, dq, var, good_bits=~1 & 0xFFFFFFFF, maskpt=0.7, snr=5.0, flag_bits=17, do_not_use=1)
    for idx in [(1, 2, 2), (3, 0, 1), (0, 4, 4)]:
        assert np.isnan(out_sci[idx]) and np.isnan(out_err[idx]) and np.isnan(out_var[idx])
        assert out_dq[idx] & 1
    assert out_dq[0, 4, 4] == 17
    assert np.isfinite(out_sci).sum() == sci.size - 3
    assert np.isfinite(sci).all(), "inputs must not be modified"
