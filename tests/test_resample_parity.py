"""Parity of the resample stage with jwst 3.0.0 ``ResampleStep`` on synthetic psfsub integrations.

Two "rolls" (ROLL_REF 20 and 35 degrees, different CRPIX), two integrations each, 96 x 80 pixels,
a Gaussian source on unit noise, DO_NOT_USE / NON_SCIENCE / JUMP_DET flags and a NaN.  jwst gets
ImageModels split from CubeModels exactly as ``calwebb_coron3`` does (``to_container``, an in-memory
``ModelLibrary``, ``blendheaders=False``) with a gWCS built from the same FITS TAN header
(Shift | Affine(PC) | Scale | Pix2Sky_TAN | RotateNative2Celestial, bounding box -0.5 .. n-0.5).

Measured (jwst 3.0.0, drizzle 2.2.0, numpy 2.4; |ours - jwst| / |jwst| over pixels with WHT > 0,
median / 99th percentile):

======================  =============  =============  =============  =========================
case                    SCI            WHT            ERR            grid vs jwst
======================  =============  =============  =============  =========================
ivm, FITS WCS           1.9e-7/1.1e-5  6.0e-8/3.0e-7  0/2.1e-7       dCRPIX 6e-8 px, dCDELT 1e-9
ivm, gWCS (asdf_wcs)    9.9e-8/4.1e-6  0/2.0e-7       0/1.4e-7       identical
exptime                 2.0e-7/1.3e-5  0/2.9e-7       0/1.6e-7       dCRPIX 6e-8 px, dCDELT 1e-9
pixfrac 0.6             2.2e-7/1.2e-5  0/5.1e-7       0/2.1e-7       dCRPIX 6e-8 px, dCDELT 1e-9
point kernel            7.0e-8/1.5e-6  0/1.2e-7       0/1.2e-7       dCRPIX 6e-8 px, dCDELT 1e-9
ratio 0.7, rotation 10  1.9e-7/1.0e-5  0/4.3e-7       0/1.7e-7       dCRPIX 9e-8 px, dCDELT 1e-9
======================  =============  =============  =============  =========================

max |dSCI| is 4e-6 .. 8e-6 on values up to ~28 (float32 round-off; the larger relative figures are
at SCI ~ 0); the VAR_* planes agree like ERR (median <= 1e-7, 99th percentile <= 3.5e-7).  CON,
the NaN pattern, the shape, CRVAL, PC, S_REGION and the exposure-time cards are identical (and
asserted so); the tolerances below are ~10x the measured figures.  With the FITS WCS, CRPIX and
CDELT differ from jwst at float64 round-off of jwst's 1-pixel ``compute_scale`` (wcslib instead of
astropy.modeling evaluating the same TAN WCS); with the gWCS the grid is bit-identical.  The SCI/WHT
differences are the expected ones between jwst's running float32 weighted mean and our associative
partial sums with a single final division.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("jwst")
gwcs = pytest.importorskip("gwcs")

from helpers import gwcs_from_header  # noqa: E402

from coron3_dask.config import ResampleParams  # noqa: E402
from coron3_dask.pipeline import build_i2d  # noqa: E402


def resample(exposures, **params):
    """The i2d of ``exposures`` with the given resample parameters."""
    return build_i2d(exposures, ResampleParams(**params))

pytestmark = pytest.mark.parity

SHAPE = (96, 80)
N_INT = 2
SCALE = 0.063 / 3600.0
DIMS = ("integration", "y", "x")
#: |ours - jwst| / |jwst| bounds (99th percentile over pixels with WHT > 0), ~10x the measured maxima
#: of the table above: SCI 1.3e-5 (float32 running mean vs one division), other planes 5.1e-7
P99_TOL = {"sci": 1e-4, "wht": 5e-6, "err": 5e-6, "var_rnoise": 5e-6, "var_poisson": 5e-6, "var_flat": 5e-6}
MEDIAN_TOL = 2e-6  # every plane (measured <= 2.2e-7)
SCI_ATOL = 1e-4  # max |dSCI| on values up to ~28 (measured <= 7.6e-6)


def _header(roll, crpix):
    vparity, v3yang = -1, -0.5
    rel = np.deg2rad(roll - vparity * v3yang)
    pc = np.array([[vparity * np.cos(rel), np.sin(rel)], [-vparity * np.sin(rel), np.cos(rel)]])
    return {"WCSAXES": 2, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg",
            "CRPIX1": crpix[0], "CRPIX2": crpix[1], "CRVAL1": 150.1, "CRVAL2": -30.2, "CDELT1": SCALE,
            "CDELT2": SCALE, "PC1_1": pc[0, 0], "PC1_2": pc[0, 1], "PC2_1": pc[1, 0], "PC2_2": pc[1, 1],
            "RA_REF": 150.1, "DEC_REF": -30.2, "ROLL_REF": roll, "V3I_YANG": v3yang, "VPARITY": vparity,
            "BUNIT": "MJy/sr"}


def _synthetic():
    """Two rolls of psfsub-like cubes: (header, primary, gwcs, arrays) per exposure."""
    from stcal.alignment.util import compute_s_region_imaging

    rng = np.random.default_rng(2024)
    yy, xx = np.indices(SHAPE)
    rolls = []
    for k, (roll, crpix) in enumerate([(20.0, (40.8, 48.3)), (35.0, (40.1, 50.7))]):
        header = _header(roll, crpix)
        w = gwcs_from_header(header, SHAPE)
        header["S_REGION"] = compute_s_region_imaging(w, shape=SHAPE, center=False)
        source = 30 * np.exp(-((yy - 48 - 3 * k) ** 2 + (xx - 40 + 2 * k) ** 2) / 10)
        sci = (rng.normal(size=(N_INT, *SHAPE)) + source).astype(np.float32)
        flags = np.zeros(sci.shape, np.uint32)
        flags[0, 5, 5] = 1
        flags[1, 7, 9] = 512
        flags[1, 8, 8] = 4
        sci[1, 20, 20] = np.nan
        rn = rng.uniform(0.5, 1.5, sci.shape).astype(np.float32)
        arrays = {"sci": sci, "dq": flags, "var_rnoise": rn, "var_poisson": (rn * 0.3).astype(np.float32),
                  "var_flat": (rn * 0.1).astype(np.float32)}
        arrays["err"] = np.sqrt(arrays["var_rnoise"] + arrays["var_poisson"] + arrays["var_flat"])
        primary = {"EFFEXPTM": 100.0 + k, "TMEASURE": 90.0 + k, "DURATION": 120.0, "EXPSTART": 60000.0 + k,
                   "EXPEND": 60000.1 + k, "PROGRAM": "01386", "OBSERVTN": "002", "VISIT": "001",
                   "VISITGRP": "03", "SEQ_ID": "1", "ACT_ID": "08", "EXPOSURE": str(k + 1)}
        rolls.append((header, primary, w, arrays))
    return rolls


def _run_jwst(rolls, tmp_path, monkeypatch, **pars):
    """jwst ResampleStep on the integrations, fed as calwebb_coron3 feeds them (spec section 8.1, 12)."""
    crds = tmp_path / "crds"
    (crds / "config" / "jwst").mkdir(parents=True)
    (crds / "config" / "jwst" / "server_config").write_text(
        "{'observatory': 'jwst', 'operational_context': 'jwst_0000.pmap'}")
    for key, value in {"CRDS_PATH": str(crds), "CRDS_SERVER_URL": "https://jwst-serverless.invalid",
                       "CRDS_MODE": "local", "CRDS_CONTEXT": "jwst_0000.pmap",
                       "STPIPE_DISABLE_CRDS_STEPPARS": "true"}.items():
        monkeypatch.setenv(key, value)
    from jwst.datamodels import ModelContainer, ModelLibrary
    from jwst.pipeline.calwebb_coron3 import to_container
    from jwst.resample import ResampleStep
    from stdatamodels.jwst import datamodels

    container = ModelContainer()
    for k, (header, primary, w, arrays) in enumerate(rolls):
        cube = datamodels.CubeModel(data=arrays["sci"].copy(), dq=arrays["dq"].copy(), err=arrays["err"].copy(),
                                    var_rnoise=arrays["var_rnoise"].copy(),
                                    var_poisson=arrays["var_poisson"].copy(), var_flat=arrays["var_flat"].copy())
        meta = cube.meta
        meta.wcs = w
        meta.filename = f"roll{k}_calints.fits"
        meta.bunit_data = "MJy/sr"
        meta.instrument.name = "NIRCAM"
        meta.exposure.type = "NRC_CORON"
        info = meta.wcsinfo
        info.ra_ref, info.dec_ref, info.roll_ref = header["RA_REF"], header["DEC_REF"], header["ROLL_REF"]
        info.v3yangle, info.vparity, info.s_region = header["V3I_YANG"], header["VPARITY"], header["S_REGION"]
        exp = meta.exposure
        exp.exposure_time, exp.measurement_time = primary["EFFEXPTM"], primary["TMEASURE"]
        exp.duration, exp.start_time, exp.end_time = primary["DURATION"], primary["EXPSTART"], primary["EXPEND"]
        obs = meta.observation
        obs.program_number, obs.observation_number, obs.visit_number = "01386", "002", "001"
        obs.visit_group, obs.sequence_id, obs.activity_id = "03", "1", "08"
        obs.exposure_number = primary["EXPOSURE"]
        meta.photometry.pixelarea_steradians = 9.33e-14
        meta.photometry.pixelarea_arcsecsq = 0.00397
        for image in to_container(cube):
            container.append(image)
    step = ResampleStep(**pars)
    step.blendheaders = False
    return step.run(ModelLibrary(container, on_disk=False))


def _ours(rolls, use_gwcs, **pars):
    exposures = []
    for k, (header, primary, w, arrays) in enumerate(rolls):
        attrs = {"sci_header": header, "primary_header": primary, "filename": f"roll{k}_calints.fits"}
        if use_gwcs:
            attrs["asdf_wcs"] = w
        exposures.append(xr.Dataset({k: (DIMS, v) for k, v in arrays.items()}, attrs=attrs).chunk({"integration": 1}))
    return resample(exposures, **pars).compute(scheduler="synchronous")


def _relative(ref, ours, where):
    both = where & np.isfinite(ref) & np.isfinite(ours)
    rel = np.abs(ours[both] - ref[both]) / np.abs(ref[both])
    return float(np.median(rel)), float(np.percentile(rel, 99))


@pytest.mark.parametrize(("use_gwcs", "pars"), [
    (False, {}),
    (True, {}),
    (False, {"weight_type": "exptime"}),
    (False, {"pixfrac": 0.6}),
    (False, {"kernel": "point"}),
    (False, {"pixel_scale_ratio": 0.7, "rotation": 10.0}),
], ids=["ivm-fits", "ivm-gwcs", "exptime", "pixfrac0.6", "point", "ratio0.7-rot10"])
def test_resample_matches_jwst(tmp_path, monkeypatch, use_gwcs, pars):
    rolls = _synthetic()
    ref = _run_jwst(rolls, tmp_path, monkeypatch, **pars)
    ours = _ours(rolls, use_gwcs, **pars)

    assert ours["sci"].shape == ref.data.shape
    header = ours.attrs["wcs_header"]
    info = ref.meta.wcsinfo
    assert (header["CRVAL1"], header["CRVAL2"]) == (info.crval1, info.crval2)  # identical (measured)
    np.testing.assert_allclose([header["CRPIX1"], header["CRPIX2"]], [info.crpix1, info.crpix2], rtol=0, atol=1e-6)
    assert [header[f"PC{i}_{j}"] for i in (1, 2) for j in (1, 2)] == [info.pc1_1, info.pc1_2, info.pc2_1, info.pc2_2]
    np.testing.assert_allclose(header["CDELT1"], info.cdelt1, rtol=1e-8)
    if use_gwcs:  # same WCS evaluation as jwst: the grid is bit-identical
        assert (header["CRPIX1"], header["CRPIX2"], header["CDELT1"]) == (info.crpix1, info.crpix2, info.cdelt1)

    np.testing.assert_array_equal(ours["con"].values, ref.con)
    weighted = ref.wht > 0
    for name, reference in (("sci", ref.data), ("wht", ref.wht), ("err", ref.err), ("var_rnoise", ref.var_rnoise),
                            ("var_poisson", ref.var_poisson), ("var_flat", ref.var_flat)):
        values = ours[name].values
        np.testing.assert_array_equal(np.isnan(values), np.isnan(reference), err_msg=name)
        median, p99 = _relative(reference, values, weighted)
        assert median < MEDIAN_TOL and p99 < P99_TOL[name], f"{name}: median {median:.2g}, 99th percentile {p99:.2g}"
    np.testing.assert_allclose(ours["sci"].values, ref.data, rtol=0, atol=SCI_ATOL, equal_nan=True)

    a, exposure = ours.attrs, ref.meta.exposure
    assert a["NDRIZ"] == ref.meta.resample.pointings == 2
    assert a["EFFEXPTM"] == exposure.exposure_time and a["TMEASURE"] == exposure.measurement_time
    assert a["DURATION"] == exposure.duration
    assert a["EXPSTART"] == exposure.start_time and a["EXPEND"] == exposure.end_time
    assert a["PXSCLRT"] == ref.meta.resample.pixel_scale_ratio and a["PIXFRAC"] == ref.meta.resample.pixfrac
    assert a["PIXAR_SR"] == pytest.approx(ref.meta.photometry.pixelarea_steradians, rel=1e-8)
    assert a["S_REGION"] == info.s_region
