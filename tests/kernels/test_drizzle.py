"""Drizzle kernel: analytic truths, associativity of the partial sums, DQ exclusion, context bits."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from coron3_dask.kernels import drizzle as K

BAD = 1 | 512


def _identity(shape):
    y, x = np.indices(shape, dtype=np.float64)
    return np.dstack([x, y])


def _affine(shape, *, angle_deg=0.0, shift=(0.0, 0.0), scale=1.0, centre=None):
    """Pixel map of a rotation by ``angle`` about ``centre``, a scale and a shift (output = input frame)."""
    y, x = np.indices(shape, dtype=np.float64)
    cy, cx = centre if centre is not None else ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    a = np.deg2rad(angle_deg)
    u, v = x - cx, y - cy
    ox = scale * (np.cos(a) * u - np.sin(a) * v) + cx + shift[0]
    oy = scale * (np.sin(a) * u + np.cos(a) * v) + cy + shift[1]
    return np.dstack([ox, oy])


def _partial(sci, *, dq=None, rn=None, flat=None, pois=None, pixmap=None, out_shape=None, index=0, n=1, **kw):
    shape = sci.shape
    return K.drizzle_partial(
        sci.astype(np.float32), np.zeros(shape, np.uint32) if dq is None else dq, rn, flat, pois,
        _identity(shape) if pixmap is None else pixmap, out_shape=out_shape or shape, image_index=index,
        n_images=n, bad_bits=BAD, **kw)


def test_identity_constant_image_is_reproduced_with_weight_1_over_rnoise():
    shape = (9, 11)
    sci = np.full(shape, 3.5)
    rn = np.full(shape, 0.25, np.float32)
    sci_out, wht, err, var_rn, var_flat, var_pois, con = K.finalize(
        _partial(sci, rn=rn, flat=rn * 2, pois=rn * 4))
    np.testing.assert_array_equal(sci_out, 3.5)
    np.testing.assert_array_equal(wht, 4.0)
    np.testing.assert_allclose(var_rn, 0.25, rtol=1e-6)
    np.testing.assert_allclose(var_flat, 0.5, rtol=1e-6)
    np.testing.assert_allclose(var_pois, 1.0, rtol=1e-6)
    np.testing.assert_allclose(err, np.sqrt(1.75), rtol=1e-6)
    np.testing.assert_array_equal(con, 1)
    assert sci_out.dtype == wht.dtype == err.dtype == var_rn.dtype == np.float32 and con.dtype == np.int32


@pytest.mark.parametrize(("angle", "shift", "scale"), [(0.0, (0.0, 0.0), 1.0), (30.0, (3.3, -1.7), 1.0),
                                                      (-47.0, (0.4, 0.9), 1.0), (12.0, (1.2, 0.3), 2.0)])
def test_point_source_flux_is_conserved_under_shift_rotation_and_scale(angle, shift, scale):
    shape = (31, 29)
    sci = np.zeros(shape)
    sci[14, 13] = 100.0
    out_shape = (int(31 * scale) + 8, int(29 * scale) + 8)
    centre = ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    pixmap = _affine(shape, angle_deg=angle, shift=shift, scale=scale, centre=centre)
    pixmap += 4.0  # keep everything on the output grid
    out = K.finalize(_partial(sci, pixmap=pixmap, out_shape=out_shape))[0]
    # surface brightness: flux = sum * output pixel area (1/scale**2 of an input pixel)
    assert np.nansum(out) / scale**2 == pytest.approx(100.0, rel=1e-5)
    peak = np.unravel_index(np.nanargmax(out), out.shape)
    expected = pixmap[14, 13][::-1]
    assert np.hypot(*(np.array(peak) - expected)) < 1.0


def test_interior_weight_is_fully_covered_under_rotation():
    shape = (20, 20)
    pixmap = _affine(shape, angle_deg=33.0, shift=(0.37, -0.21))
    wht = K.finalize(_partial(np.ones(shape), pixmap=pixmap))[1]
    np.testing.assert_allclose(wht[7:13, 7:13], 1.0, rtol=1e-5)


def _random_partials(k, seed=3):
    rng = np.random.default_rng(seed)
    shape = (12, 10)
    parts = []
    for i in range(k):
        rn = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        pixmap = _affine(shape, angle_deg=rng.uniform(-40, 40), shift=tuple(rng.uniform(-1, 1, 2)))
        parts.append(_partial(rng.normal(size=shape), rn=rn, flat=rn / 3, pois=rn * 2, pixmap=pixmap,
                              index=i, n=k))
    return parts


def _assert_partials_close(a, b, rtol=1e-13):
    for name in ("num", "wht", "var_num", "var_wht"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-12)
    np.testing.assert_array_equal(a.con, b.con)


def test_combine_is_associative_and_commutative():
    a, b, c = _random_partials(3)
    _assert_partials_close(K.combine(a, K.combine(b, c)), K.combine(K.combine(a, b), c))
    ab, ba = K.combine(a, b), K.combine(b, a)
    for name in ("num", "wht", "var_num", "var_wht", "con"):
        np.testing.assert_array_equal(getattr(ab, name), getattr(ba, name))  # IEEE addition commutes exactly


def test_any_reduction_order_gives_the_same_products():
    parts = _random_partials(5)
    sequential = K.finalize(functools.reduce(K.combine, parts))
    shuffled = K.finalize(functools.reduce(K.combine, [parts[i] for i in (3, 0, 4, 2, 1)]))
    for x, y in zip(sequential, shuffled, strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-7, equal_nan=True)


def test_sum_of_partials_is_the_weighted_mean_of_two_images():
    shape = (6, 7)
    a = _partial(np.full(shape, 2.0), rn=np.full(shape, 1.0, np.float32), index=0, n=2)
    b = _partial(np.full(shape, 5.0), rn=np.full(shape, 0.5, np.float32), index=1, n=2)
    sci, wht, err, var_rn, _, _, con = K.finalize(K.combine(a, b))
    np.testing.assert_allclose(sci, (2.0 * 1 + 5.0 * 2) / 3, rtol=1e-6)
    np.testing.assert_allclose(wht, 3.0)
    np.testing.assert_allclose(var_rn, 1 / 3, rtol=1e-6)  # (v1 w1^2 + v2 w2^2) / (w1 + w2)^2 with w = 1/v
    np.testing.assert_allclose(err, np.sqrt(1 / 3), rtol=1e-6)  # flat/poisson absent: NaN, ignored by nansum
    np.testing.assert_array_equal(con, 3)


def test_exptime_weighting_uses_the_exposure_time():
    shape = (5, 5)
    a = _partial(np.full(shape, 1.0), rn=np.full(shape, 4.0, np.float32), weight_type="exptime", exptime=10.0)
    b = _partial(np.full(shape, 4.0), rn=np.full(shape, 1.0, np.float32), weight_type="exptime", exptime=30.0)
    sci, wht, _, var_rn, *_ = K.finalize(K.combine(a, b))
    np.testing.assert_allclose(sci, (10 * 1 + 30 * 4) / 40, rtol=1e-6)
    np.testing.assert_allclose(wht, 40.0)
    np.testing.assert_allclose(var_rn, (4 * 100 + 1 * 900) / 1600, rtol=1e-6)


def test_bad_dq_and_nan_pixels_get_zero_weight():
    shape = (8, 8)
    sci = np.full(shape, 1.0)
    rn = np.full(shape, 1.0, np.float32)
    pois = rn.copy()
    dq = np.zeros(shape, np.uint32)
    dq[1, 1] = 1  # DO_NOT_USE
    dq[2, 2] = 512  # NON_SCIENCE
    dq[3, 3] = 4  # JUMP_DET: not a resample bad bit
    sci[4, 4] = np.nan
    pois[5, 5] = np.nan
    weight = K.drizzle_weight(dq, rn, np.isnan(sci) | np.isnan(pois), weight_type="ivm", exptime=1.0, bad_bits=BAD)
    assert weight.dtype == np.float32
    zero = {(1, 1), (2, 2), (4, 4), (5, 5)}
    for j, i in np.ndindex(shape):
        assert (weight[j, i] == 0) == ((j, i) in zero)
    sci_out, wht, err, *_ = K.finalize(_partial(sci, dq=dq, rn=rn, pois=pois))
    for j, i in zero:
        assert wht[j, i] == 0 and np.isnan(sci_out[j, i]) and np.isnan(err[j, i])
    assert wht[3, 3] == 1 and sci_out[3, 3] == 1


def test_non_finite_inverse_variance_gives_zero_weight():
    rn = np.array([[0.0, np.inf, 2.0]], np.float32)
    weight = K.drizzle_weight(np.zeros((1, 3), np.uint32), rn, np.zeros((1, 3), bool), weight_type="ivm",
                              exptime=1.0, bad_bits=BAD)
    np.testing.assert_array_equal(weight, [[0.0, 0.0, 0.5]])
    ones = K.drizzle_weight(np.zeros((1, 3), np.uint32), None, np.zeros((1, 3), bool), weight_type="ivm",
                            exptime=1.0, bad_bits=BAD)
    np.testing.assert_array_equal(ones, 1.0)


@pytest.mark.parametrize("index", [0, 5, 31, 32, 33, 63, 64])
def test_context_bit_k_of_plane_k_over_32(index):
    shape = (4, 4)
    con = _partial(np.ones(shape), index=index, n=70).con
    assert con.shape == (3, *shape) and con.dtype == np.int32
    expected = np.zeros(3, np.int64)
    expected[index // 32] = 1 << (index % 32)
    np.testing.assert_array_equal(con[:, 0, 0].astype(np.int64) & 0xFFFFFFFF, expected)


def test_no_coverage_gives_fillval_and_nan_variances():
    shape = (4, 4)
    pixmap = _identity(shape)
    out_shape = (4, 10)
    sci, wht, err, var_rn, *_ = K.finalize(_partial(np.ones(shape), rn=np.ones(shape, np.float32), pixmap=pixmap,
                                                    out_shape=out_shape), fillval="-7")
    assert np.all(sci[:, 6:] == -7) and np.all(wht[:, 6:] == 0)
    assert np.all(np.isnan(var_rn[:, 6:])) and np.all(np.isnan(err[:, 6:]))
    assert K.fill_value("NAN") != K.fill_value("NAN") and K.fill_value(None) != K.fill_value(None)


def test_pixel_scale_ratio_divides_variance_by_its_square():
    shape = (5, 5)
    p = _partial(np.ones(shape), rn=np.full(shape, 2.0, np.float32))
    np.testing.assert_allclose(K.finalize(p, pixel_scale_ratio=0.5)[3], 8.0, rtol=1e-6)


def test_kernel_does_not_modify_its_inputs():
    shape = (6, 6)
    sci = np.full(shape, 2.0, np.float32)
    sci[1, 1] = np.nan
    rn = np.ones(shape, np.float32)
    dq = np.zeros(shape, np.uint32)
    copies = [a.copy() for a in (sci, rn, dq)]
    K.drizzle_partial(sci, dq, rn, None, None, _identity(shape), out_shape=shape, image_index=0, n_images=1,
                      bad_bits=BAD, sky_level=1.0)
    for before, after in zip(copies, (sci, rn, dq), strict=True):
        np.testing.assert_array_equal(before, after)
