"""resample stage: lazy at build time, lazy == eager kernels, reduction-order invariance, metadata."""

from __future__ import annotations

import functools

import dask
import numpy as np
import pytest
import xarray as xr

from coron3_dask import dq
from coron3_dask import wcs as W
from coron3_dask.config import ResampleParams
from coron3_dask.kernels import drizzle as K
from coron3_dask.pipeline import build_i2d
from coron3_dask.testing import raise_if_dask_computes


def resample(exposures, **params):
    """The i2d of ``exposures`` with the given resample parameters (validated where declared)."""
    return build_i2d(exposures, ResampleParams(**params))

DIMS = ("integration", "y", "x")
SCALE = 0.063 / 3600.0


def _header(roll, crpix, shape):
    vparity, v3yang = -1, -0.5
    rel = np.deg2rad(roll - vparity * v3yang)
    pc = np.array([[vparity * np.cos(rel), np.sin(rel)], [-vparity * np.sin(rel), np.cos(rel)]])
    return {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg", "CRPIX1": crpix[0],
            "CRPIX2": crpix[1], "CRVAL1": 150.1, "CRVAL2": -30.2, "CDELT1": SCALE, "CDELT2": SCALE,
            "PC1_1": pc[0, 0], "PC1_2": pc[0, 1], "PC2_1": pc[1, 0], "PC2_2": pc[1, 1], "RA_REF": 150.1,
            "DEC_REF": -30.2, "ROLL_REF": roll, "V3I_YANG": v3yang, "VPARITY": vparity, "BUNIT": "MJy/sr"}


def _exposure(k, *, n=2, shape=(24, 20), roll=20.0, seed=0, exposure_number=None, chunks=1):
    rng = np.random.default_rng(seed + k)
    yy, xx = np.indices(shape)
    sci = (rng.normal(size=(n, *shape)) + 30 * np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / 6)).astype(np.float32)
    flags = np.zeros(sci.shape, np.uint32)
    flags[0, 3, 4] = dq.DO_NOT_USE
    flags[-1, 5, 6] = dq.NON_SCIENCE
    sci[-1, 7, 7] = np.nan
    rn = rng.uniform(0.5, 1.5, sci.shape).astype(np.float32)
    primary = {"EFFEXPTM": 100.0 + k, "TMEASURE": 90.0 + k, "DURATION": 120.0, "EXPSTART": 60000.0 + k,
               "EXPEND": 60000.5 + k, "PROGRAM": "01386", "OBSERVTN": "002", "VISIT": "001", "VISITGRP": "03",
               "SEQ_ID": "1", "ACT_ID": "08", "EXPOSURE": str(exposure_number or k + 1)}
    ds = xr.Dataset(
        {"sci": (DIMS, sci), "dq": (DIMS, flags), "var_rnoise": (DIMS, rn), "var_poisson": (DIMS, rn * 0.3),
         "var_flat": (DIMS, rn * 0.1), "err": (DIMS, np.sqrt(rn * 1.4))},
        attrs={"sci_header": _header(roll, (10.5 + k, 12.5 - k), shape), "primary_header": primary,
               "filename": f"e{k}_calints.fits"})
    return ds.chunk({"integration": chunks})


@pytest.fixture
def exposures():
    return [_exposure(0, roll=20.0), _exposure(1, n=3, roll=35.0)]


def _partials(exposures, **kw):
    """Per-integration partials from direct kernel calls, in feeding order (no Dask)."""
    headers = [ds.attrs["sci_header"] for ds in exposures]
    shapes = [(ds.sizes["y"], ds.sizes["x"]) for ds in exposures]
    out_wcs, out_shape = W.output_grid(headers, shapes)
    n = sum(ds.sizes["integration"] for ds in exposures)
    parts, index = [], 0
    for ds, h, shape in zip(exposures, headers, shapes, strict=True):
        pixmap = W.pixmap(W.wcs_from_header(h), shape, out_wcs)
        for i in range(ds.sizes["integration"]):
            v = {name: ds[name].values[i] for name in ("sci", "dq", "var_rnoise", "var_flat", "var_poisson", "err")}
            parts.append(K.drizzle_partial(
                v["sci"], v["dq"], v["var_rnoise"], v["var_flat"], v["var_poisson"], pixmap, err=v["err"],
                out_shape=out_shape, image_index=index, n_images=n, bad_bits=dq.RESAMPLE_BAD_BITS,
                exptime=float(ds.attrs["primary_header"]["TMEASURE"]), **kw))
            index += 1
    return parts


def _eager(exposures, **kw):
    """The same products from direct kernel calls: sequential left fold, one finalize."""
    return K.finalize(functools.reduce(K.combine, _partials(exposures, **kw)))


def test_building_the_graph_computes_nothing(exposures):
    with raise_if_dask_computes():
        out = resample(exposures)
    assert set(out.data_vars) == {"sci", "err", "wht", "var_rnoise", "var_poisson", "var_flat", "con"}
    for name in ("sci", "err", "wht", "var_rnoise", "var_poisson", "var_flat"):
        assert out[name].dims == ("y", "x") and out[name].dtype == np.float32
        assert isinstance(out[name].data, dask.array.Array)
    assert out["con"].dims == ("plane", "y", "x") and out["con"].dtype == np.int32
    assert out.sizes["plane"] == 1


def test_lazy_equals_eager_kernels(exposures):
    lazy = resample(exposures).compute(scheduler="synchronous")
    names = ("sci", "wht", "err", "var_rnoise", "var_flat", "var_poisson", "con")
    for name, expected in zip(names, _eager(exposures), strict=True):
        assert lazy[name].shape == expected.shape
        np.testing.assert_allclose(lazy[name].values, expected, rtol=1e-6, atol=0, equal_nan=True)
    np.testing.assert_array_equal(lazy["con"].values, _eager(exposures)[-1])


def test_exptime_weighting_lazy_equals_eager(exposures):
    lazy = resample(exposures, weight_type="exptime").compute(scheduler="synchronous")
    sci, wht, *_ = _eager(exposures, weight_type="exptime")
    np.testing.assert_allclose(lazy["sci"].values, sci, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(lazy["wht"].values, wht, rtol=1e-6)


def test_input_chunking_does_not_change_the_result():
    one = resample([_exposure(0), _exposure(1, n=3, roll=35.0)]).compute(scheduler="synchronous")
    many = resample([_exposure(0, chunks=2), _exposure(1, n=3, roll=35.0, chunks=-1)]).compute(scheduler="threads")
    xr.testing.assert_identical(one, many)


def test_graph_is_a_balanced_tree_with_one_task_per_integration(exposures):
    out = resample(exposures)
    graph = dict(out["sci"].data.__dask_graph__())
    prefixes = [str(k[0] if isinstance(k, tuple) else k).rsplit("-", 1)[0] for k in graph]
    assert prefixes.count("_drizzle_frame") == 5
    assert prefixes.count("combine") == 4
    assert prefixes.count("finalize") == 1
    assert prefixes.count("exposure_pixmap") == 2


def test_reduction_order_does_not_change_the_products(exposures):
    """The stage's balanced tree, a left fold and a reversed fold agree to float32 round-off."""
    tree = resample(exposures).compute(scheduler="synchronous")
    parts = _partials(exposures)
    for order in (parts, parts[::-1], [parts[i] for i in (2, 4, 0, 3, 1)]):
        products = K.finalize(functools.reduce(K.combine, order))
        for name, values in zip(("sci", "wht", "err", "var_rnoise", "var_flat", "var_poisson"), products,
                                strict=False):
            np.testing.assert_allclose(tree[name].values, values, rtol=1e-6, atol=0, equal_nan=True)
        np.testing.assert_array_equal(tree["con"].values, products[-1])


def test_metadata_follows_jwst(exposures):
    extra = _exposure(2, n=1, roll=20.0, exposure_number=1)  # same group_id as exposure 0: counted once
    out = resample([*exposures, extra], pixfrac=0.8, fillval="0")
    a = out.attrs
    assert a["NDRIZ"] == 2 and a["n_inputs"] == 6
    assert a["EFFEXPTM"] == 201.0 and a["TMEASURE"] == 181.0 and a["DURATION"] == 240.0
    assert a["EXPSTART"] == 60000.0 and a["EXPEND"] == 60001.5
    assert a["PIXFRAC"] == 0.8 and a["RESWHT"] == "ivm" and a["PXSCLRT"] == 1.0 and a["KERNEL"] == "square"
    assert a["FILLVAL"] == "0" and a["BUNIT"] == "MJy/sr"
    assert a["PIXAR_A2"] == pytest.approx(0.063**2, rel=1e-6)
    assert a["PIXAR_SR"] == pytest.approx(a["PIXAR_A2"] / (180 / np.pi * 3600) ** 2, rel=1e-12)
    assert a["S_REGION"].startswith("POLYGON ICRS")
    header = a["wcs_header"]
    assert header["CTYPE1"] == "RA---TAN" and header["WCSAXES"] == 2
    assert a["exposure_cards"]["NDRIZ"] == 2 and a["sci_cards"]["S_REGION"] == a["S_REGION"]


def test_context_planes_grow_with_the_number_of_images():
    exposures = [_exposure(0, n=20, shape=(8, 8)), _exposure(1, n=15, shape=(8, 8), roll=25.0)]
    out = resample(exposures)
    assert out.sizes["plane"] == 2
    con = out["con"].values.astype(np.int64) & 0xFFFFFFFF
    assert np.any(con[1] & (1 << 2))  # image 34 = exposure 1, integration 14
    assert not np.any(con[1] & ~np.int64(0b111))


def test_parameters_are_validated_at_build_time(exposures):
    with pytest.raises(ValueError, match="pixfrac"):
        resample(exposures, pixfrac=0.0)
    with pytest.raises(ValueError, match="at least one"):
        resample([])
    no_times = _exposure(0)
    no_times.attrs["primary_header"] = {}
    with pytest.raises(ValueError, match="exptime weighting"):
        resample([no_times], weight_type="exptime")


def test_custom_grid_parameters_pass_through(exposures):
    out = resample(exposures, output_shape=(30, 40), crpix=(15.0, 20.0), crval=(150.1, -30.2), rotation=0.0)
    assert (out.sizes["y"], out.sizes["x"]) == (40, 30)
    h = out.attrs["wcs_header"]
    assert (h["CRPIX1"], h["CRPIX2"]) == pytest.approx((16.0, 21.0))
    assert (h["CRVAL1"], h["CRVAL2"]) == (150.1, -30.2)
    assert h["PC1_1"] == pytest.approx(-1.0) and h["PC2_2"] == pytest.approx(1.0)
