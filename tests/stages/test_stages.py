"""Stage wrappers: lazy until computed, lazy == eager kernels, chunking invariance, labels."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from coron3_dask.kernels import klip as klip_kernel
from coron3_dask.kernels import outliers as outlier_kernel
from coron3_dask.stages.klip import klip
from coron3_dask.stages.outliers import flag_outliers
from coron3_dask.stages.stack_refs import stack_refs
from coron3_dask.testing import raise_if_dask_computes

DIMS = ("integration", "y", "x")


def _exposure(n=4, shape=(16, 12), seed=0, name="a_calints.fits"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    psf = 100 * np.exp(-((yy - 7.3) ** 2 + (xx - 5.6) ** 2) / 8.0)
    sci = (psf + rng.normal(scale=1.0, size=(n, *shape))).astype(np.float32)
    sci[1, 3, 3] += 80.0
    dq = np.zeros(sci.shape, np.uint32)
    dq[:, 0, 5] = 1
    sci[:, 0, 5] = np.nan
    ds = xr.Dataset(
        {"sci": (DIMS, sci), "err": (DIMS, np.ones_like(sci)), "dq": (DIMS, dq),
         "var_rnoise": (DIMS, np.ones_like(sci))},
        coords={"int_number": ("integration", np.arange(1, n + 1)), "source": ("integration", [name] * n)},
        attrs={"filename": name},
    )
    return ds.chunk({"integration": 1})


def test_outliers_lazy_and_equal_to_kernel():
    ds = _exposure()
    with raise_if_dask_computes():
        out = flag_outliers(ds, good_bits=0xFFFFFFFE, maskpt=0.7, snr=5.0)  # "~DO_NOT_USE"
    assert out["sci"].dtype == np.float32 and out["dq"].dtype == np.uint32
    eager = outlier_kernel.flag_exposure(
        ds.sci.values, ds.err.values, ds.dq.values, ds.var_rnoise.values,
        good_bits=0xFFFFFFFE, maskpt=0.7, snr=5.0, flag_bits=17, do_not_use=1)
    computed = out.compute()
    for name, expected in zip(["sci", "err", "dq", "var_rnoise"], eager, strict=True):
        np.testing.assert_array_equal(computed[name].values, expected)
    assert computed.dq.values[1, 3, 3] == 17
    assert list(computed.source.values) == list(ds.source.values)


def test_stack_refs_concatenates_in_order_and_checks_shapes():
    a, b = _exposure(n=2, seed=1, name="p1.fits"), _exposure(n=3, seed=2, name="p2.fits")
    with raise_if_dask_computes():
        stack = stack_refs([a, b])
    assert stack.sizes["ref"] == 5
    np.testing.assert_array_equal(stack.sci.values[2:], b.sci.values)
    assert list(stack.source.values) == ["p1.fits"] * 2 + ["p2.fits"] * 3
    with pytest.raises(ValueError, match="different frame sizes"):
        stack_refs([a, _exposure(shape=(10, 10))])


def _refs(k=5, shape=(16, 12)):
    rng = np.random.default_rng(3)
    return rng.normal(size=(k, *shape)).astype(np.float32)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_klip_shared_refs_chunk_invariant_and_equal_to_kernel(size):
    target = xr.DataArray(_exposure().sci.fillna(0).values, dims=DIMS).chunk({"integration": size})
    refs = xr.DataArray(_refs()[None], dims=("integration", "ref", "y", "x"))  # one set shared by all
    with raise_if_dask_computes():
        out = klip(target, refs, truncate=3)
    got = out.compute()
    for i in range(target.sizes["integration"]):
        sci, err = klip_kernel.klip_one(target.values[i], refs.values[0], truncate=3)
        np.testing.assert_allclose(got.sci.values[i], sci, atol=1e-5)
        np.testing.assert_allclose(got.err.values[i], err, atol=1e-6)


def test_klip_per_integration_refs():
    target = xr.DataArray(_exposure().sci.fillna(0).values, dims=DIMS)
    per = np.stack([_refs() * (i + 1) for i in range(4)])
    aligned = xr.DataArray(per, dims=("integration", "ref", "y", "x"))
    got = klip(target, aligned, truncate=2).compute()
    sci, _ = klip_kernel.klip_one(target.values[3], per[3], truncate=2)
    np.testing.assert_allclose(got.sci.values[3], sci, atol=1e-5)


def test_klip_needs_two_refs():
    target = xr.DataArray(np.zeros((2, 4, 4), np.float32), dims=DIMS)
    with pytest.raises(ValueError, match="at least 2"):
        klip(target, xr.DataArray(np.zeros((1, 1, 4, 4), np.float32), dims=("integration", "ref", "y", "x")))


def test_klip_rejects_negative_truncate_and_mismatched_reference_sets():
    target = xr.DataArray(np.zeros((3, 4, 4), np.float32), dims=DIMS)
    refs = xr.DataArray(np.ones((1, 3, 4, 4), np.float32), dims=("integration", "ref", "y", "x"))
    with pytest.raises(ValueError, match="truncate must be >= 0"):
        klip(target, refs, truncate=-1)
    with pytest.raises(ValueError, match="expected 1 or 3"):
        klip(target, xr.concat([refs, refs], "integration"), truncate=2)


@pytest.mark.parametrize(("align_to", "n_sets"), [("each", 2), ("first", 1)])
def test_align_refs_has_one_output_shape(align_to, n_sets):
    """(integration, ref, y, x) in every mode; ``first`` is a size-1 integration axis fitted on integration 0."""
    from coron3_dask.stages import align_refs as stage

    yy, xx = np.mgrid[:16, :16]
    psf = np.exp(-((yy - 7.6) ** 2 + (xx - 8.3) ** 2) / 5.0).astype(np.float32)
    target = xr.DataArray(np.stack([psf, np.roll(psf, 1, axis=1)]), dims=DIMS)
    refs = xr.DataArray(np.stack([psf, psf * 2, psf * 3]), dims=("ref", "y", "x"))
    mask = xr.DataArray(np.ones((16, 16), np.float32), dims=("y", "x"))
    out = stage.align_refs(target, refs, refs, mask, align_to=align_to)
    assert out["sci"].dims == ("integration", "ref", "y", "x") and out["sci"].shape == (n_sets, 3, 16, 16)
    assert out["shifts"].dims == ("integration", "ref", "param") and out["shifts"].shape == (n_sets, 3, 3)
    each = stage.align_refs(target, refs, refs, mask).compute()
    np.testing.assert_array_equal(out["sci"].values[0], each["sci"].values[0])


def test_align_refs_block_size_does_not_change_results(monkeypatch):
    """References split over several tasks give exactly what one block gives."""
    from coron3_dask.stages import align_refs as stage

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:24, :20]
    psf = np.exp(-((yy - 11.6) ** 2 + (xx - 9.3) ** 2) / 6.0) + 0.3 * np.exp(-((yy - 6) ** 2 + (xx - 14) ** 2) / 3.0)
    target = xr.DataArray((psf + rng.normal(scale=1e-3, size=(2, 24, 20))).astype(np.float32), dims=DIMS)
    refs = xr.DataArray((1.3 * psf + rng.normal(scale=1e-3, size=(5, 24, 20))).astype(np.float32),
                        dims=("ref", "y", "x"))
    mask = xr.DataArray(np.ones((24, 20), np.float32), dims=("y", "x"))
    whole = stage.align_refs(target, refs, refs, mask).compute()
    monkeypatch.setattr(stage, "REF_BLOCK_BYTES", 2 * 4 * 24 * 20)  # two references per task
    split = stage.align_refs(target, refs, refs, mask)
    assert len(split["sci"].data.chunks[1]) == 3
    split = split.compute()
    for name in ("sci", "err", "shifts"):
        np.testing.assert_array_equal(split[name].values, whole[name].values)


def test_public_stages_reject_invalid_arguments():
    from coron3_dask.stages.align_refs import replace_bad_pixels

    ds = _exposure()
    with pytest.raises(ValueError, match="maskpt"):
        flag_outliers(ds, good_bits=0xFFFFFFFE, maskpt=1.5, snr=5.0)
    with pytest.raises(ValueError, match="snr"):
        flag_outliers(ds, good_bits=0xFFFFFFFE, maskpt=0.7, snr=-1.0)
    with pytest.raises(ValueError, match="median_box_length"):
        replace_bad_pixels(ds, box=-1, bad_bits=1, zero_bits=0)
    with pytest.raises(ValueError, match="truncate"):
        klip_kernel.klip_model(np.ones((3, 4, 4)), truncate=-2)
    with pytest.raises(ValueError, match="maskpt"):
        outlier_kernel.flag_one(ds.sci.values, ds.err.values, ds.dq.values, good_bits=0, maskpt=-0.1, snr=5.0)
