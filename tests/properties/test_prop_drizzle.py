"""Properties of the drizzle kernel: flux conservation and associative partial sums.

Inputs are random positive images with a 5-pixel zero border ("away from the edges"),
drizzled with the square kernel, a random pixfrac in (0.1, 1] and an identity or pure
sub-pixel-shift pixel map onto a larger output grid (every drop lands on it).  Under a pure
shift the drops of a regular lattice tile every covered output pixel with the same total
area, so with a uniform input weight each output pixel is the area-weighted mean of the drops
on it and the total flux ``sum(sci) * (output/input pixel area = 1)`` equals ``sum(input)``.
With any weights, drizzle's weight is ``w * overlap / pixfrac**2``, so ``sum(num) =
sum(w * d)`` and ``sum(wht) = sum(w)`` exactly (up to round-off).  Truths are sums of the
inputs, never numbers from the kernel.  Tolerances: drizzle accumulates in float32, so totals
agree to float32 round-off; measured max relative error 1.2e-7 over 200 derandomized examples
per property (asserted: 2e-6).  Regrouping the float64 partial sums (non-negative terms) of up
to 5 images changes them by float64 round-off, at most 4 eps = 9e-16 relative (measured 3.9e-16,
asserted 1e-14), hence the float32 products by at most one ulp (measured: 0).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coron3_dask.kernels import drizzle as K

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)
MARGIN, PAD = 5, 3  # zero border of the inputs; output grid = input grid + PAD on each side
FLUX_RTOL = 2e-6  # float32 accumulation in drizzle (measured <= 1.2e-7)
REGROUP_RTOL = 1e-14  # float64 sums of <= 5 non-negative terms (measured <= 3.9e-16)
F32_ULP = 2.0**-23  # one float32 ulp, relative


@st.composite
def images(draw: st.DrawFn, shape: tuple[int, int] | None = None, weights: str = "uniform"):
    """(sci, var_rnoise or None, weight, pixmap) of one image: random positive interior, random shift."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ny, nx = shape or (draw(st.integers(2 * MARGIN + 1, 30)), draw(st.integers(2 * MARGIN + 1, 30)))
    sci = np.zeros((ny, nx), np.float32)
    sci[MARGIN:-MARGIN, MARGIN:-MARGIN] = rng.lognormal(0.0, 1.0, size=(ny - 2 * MARGIN, nx - 2 * MARGIN))
    shift = st.floats(-1.5, 1.5, exclude_min=True, exclude_max=True)
    sx, sy = draw(st.one_of(st.just((0.0, 0.0)), st.tuples(shift, shift)))
    y, x = np.indices((ny, nx), dtype=np.float64)
    pixmap = np.dstack([x + sx + PAD, y + sy + PAD])
    if weights == "uniform":
        var = None if draw(st.booleans()) else np.full((ny, nx), draw(st.floats(0.25, 4.0)), np.float32)
    else:
        var = rng.uniform(0.25, 4.0, size=(ny, nx)).astype(np.float32)
    weight = np.ones((ny, nx)) if var is None else 1.0 / var.astype(np.float64)
    return sci, var, weight, pixmap


def _partial(image, *, pixfrac, index=0, n=1):
    sci, var, _, pixmap = image
    ny, nx = sci.shape
    return K.drizzle_partial(sci, np.zeros(sci.shape, np.uint32), var, None, None, pixmap,
                             out_shape=(ny + 2 * PAD, nx + 2 * PAD), image_index=index, n_images=n,
                             pixfrac=pixfrac, kernel="square", bad_bits=1 | 512)


pixfracs = st.floats(0.1, 1.0, exclude_min=True)


def _approx(value: float):
    return pytest.approx(value, rel=FLUX_RTOL, abs=0)


def _total(a) -> float:
    return float(np.sum(np.asarray(a, np.float64)))


@SETTINGS
@given(images(), pixfracs)
def test_one_image_conserves_flux(image, pixfrac):
    sci_in, _, weight, _ = image
    part = _partial(image, pixfrac=pixfrac)
    sci = K.finalize(part, fillval=0)[0]
    truth = _total(sci_in)
    assert truth > 0
    assert _total(sci) == _approx(truth)  # output pixel area / input pixel area = 1
    assert _total(part.wht) == _approx(_total(weight))


@SETTINGS
@given(images(weights="random"), pixfracs)
def test_weighted_sums_are_conserved_for_any_weights(image, pixfrac):
    sci_in, _, weight, _ = image
    part = _partial(image, pixfrac=pixfrac)
    assert _total(part.num) == _approx(_total(weight * sci_in))
    assert _total(part.wht) == _approx(_total(weight))


def _regroup(parts, order, splits):
    """Combine ``parts`` in the given order as a binary tree whose split points come from ``splits``."""
    items = [parts[i] for i in order]

    def tree(lo, hi):
        if hi - lo == 1:
            return items[lo]
        mid = lo + 1 + splits[(lo + hi) % len(splits)] % (hi - lo - 1)
        return K.combine(tree(lo, mid), tree(mid, hi))

    return tree(0, len(items))


@st.composite
def image_sets(draw: st.DrawFn, weights: str):
    shape = (draw(st.integers(2 * MARGIN + 1, 24)), draw(st.integers(2 * MARGIN + 1, 24)))
    k = draw(st.integers(2, 5))
    return [draw(images(shape, weights)) for _ in range(k)]


@SETTINGS
@given(image_sets("random"), pixfracs, st.data())
def test_any_grouping_of_partials_gives_the_same_result(imgs, pixfrac, data):
    n = len(imgs)
    parts = [_partial(img, pixfrac=pixfrac, index=i, n=n) for i, img in enumerate(imgs)]
    order = data.draw(st.permutations(range(n)))
    splits = data.draw(st.lists(st.integers(0, 10), min_size=1, max_size=4))
    left = functools.reduce(K.combine, parts)
    other = _regroup(parts, order, splits)
    for name in ("num", "wht", "var_num", "var_wht"):
        np.testing.assert_allclose(getattr(other, name), getattr(left, name), rtol=REGROUP_RTOL, atol=0, err_msg=name)
    np.testing.assert_array_equal(other.con, left.con)
    for a, b in zip(K.finalize(other), K.finalize(left), strict=True):
        np.testing.assert_allclose(a, b, rtol=F32_ULP, atol=0, equal_nan=True)
    # independent truth for the combined sums: every input's weighted flux and weight arrive
    weights, scis = [img[2] for img in imgs], [img[0] for img in imgs]
    assert _total(other.num) == _approx(sum(_total(w * s) for w, s in zip(weights, scis, strict=True)))
    assert _total(other.wht) == _approx(sum(_total(w) for w in weights))
    # context: image k's bit is set exactly on its footprint
    for k, part in enumerate(parts):
        bit = np.int32(1) << np.int32(k)
        np.testing.assert_array_equal((other.con[0] & bit) != 0, part.wht > 0)


@SETTINGS
@given(image_sets("uniform"), pixfracs, st.data())
def test_equal_weight_combination_is_the_mean_flux(imgs, pixfrac, data):
    """With one uniform weight for all images, the combined image's flux is the mean input flux."""
    n = len(imgs)
    var = np.full(imgs[0][0].shape, data.draw(st.floats(0.25, 4.0)), np.float32)
    imgs = [(sci, var, None, pixmap) for sci, _, _, pixmap in imgs]
    parts = [_partial(img, pixfrac=pixfrac, index=i, n=n) for i, img in enumerate(imgs)]
    order = data.draw(st.permutations(range(n)))
    sci = K.finalize(_regroup(parts, order, [data.draw(st.integers(0, 10))]), fillval=0)[0]
    truth = np.mean([_total(img[0]) for img in imgs])
    assert _total(sci) == _approx(truth)
