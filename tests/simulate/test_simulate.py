"""Tests of the simulator against independent truths (astropy WCS, scipy shifts, statistics)."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage, optimize

from coron3_dask import dq
from coron3_dask.kernels.shift import fourier_shift
from coron3_dask.simulate import (
    PRESETS,
    Companion,
    coronagraphic_psf,
    offaxis_psf,
    psfmask,
    simulate_programme,
)

# jwst's exposure-name grammar (jw<program><obs><visit>_<visitgroup><parallel><activity>_<exposure>_<detector>)
CALINTS = re.compile(r"jw(?P<program>\d{5})(?P<obs>\d{3})(?P<visit>\d{3})_(?P<vgroup>\d{2})(?P<seq>\d)"
                     r"(?P<act>[0-9a-z]{2})_(?P<exp>\d{5})_(?P<det>[a-z0-9]+)_calints\.fits")
# from jwst/associations/tests/test_asn_names.py and test_level3_product_names.py
ASN_NAME = re.compile(r"jw(?P<program>\d{5})-(?P<acid>[a-z]\d{3,4})_(?P<stamp>.+)_(?P<asn_type>.+)"
                      r"_(?P<seq>\d{5})_asn\.json")
PRODUCT = re.compile(r"jw(?P<program>\d{5})-(?P<acid>[a-z]\d{3,4})_(?P<target>t\d{3})_(?P<instrument>.+?)_(?P<opt>.+)")


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    sim = simulate_programme(tmp_path_factory.mktemp("sim"), n_science_ints=3, n_ref_ints=2, seed=3)
    return sim, json.loads(sim.truth_path.read_text())


@pytest.fixture(scope="module")
def miri(tmp_path_factory):
    # brighter companions than the defaults: at 2.5 lambda/D the 4QPM halo is ~30x the default companion
    sim = simulate_programme(tmp_path_factory.mktemp("miri"), preset="MASK1550", n_science_ints=3, n_ref_ints=3,
                             n_dither=1, seed=5, companions=[Companion(1.5, 120.0, 1e-3), Companion(2.4, 300.0, 2e-4)])
    return sim, json.loads(sim.truth_path.read_text())


def _exposure(truth, path):
    return next(e for e in truth["exposures"] if e["file"] == path.name)


def test_default_programme_association_and_names(prog):
    sim, _truth = prog
    asn = json.loads(sim.asn_path.read_text())
    members = asn["products"][0]["members"]
    assert [m["exptype"] for m in members] == ["science"] * 2 + ["psf"] * 5
    assert [m["expname"] for m in members] == [p.name for p in (*sim.science_files, *sim.psf_files)]
    assert asn["asn_type"] == "coron3" and asn["asn_rule"] == "candidate_Asn_Lv3NRCCoron"
    assert asn["asn_id"] == sim.asn_id == "c1000" and asn["target"] == "t001"
    assert asn["products"][0]["name"] == sim.product_name == "jw01386-c1000_t001_nircam_f335m-maskrnd-sub320a335r"
    assert PRODUCT.fullmatch(sim.product_name) and ASN_NAME.fullmatch(sim.asn_path.name)
    parsed = [CALINTS.fullmatch(m["expname"]) for m in members]
    assert all(parsed)
    assert {m["obs"] for m in parsed[:2]} == {"002", "003"} and {m["obs"] for m in parsed[2:]} == {"001"}
    assert [m["exp"] for m in parsed[2:]] == [f"{k:05d}" for k in range(1, 6)]
    assert all((sim.directory / m["expname"]).is_file() for m in members)


@pytest.mark.parity
def test_association_loads_with_jwst(prog):
    load_asn = pytest.importorskip("jwst.associations").load_asn
    with prog[0].asn_path.open() as handle:
        asn = load_asn(handle)
    assert len(asn["products"][0]["members"]) == 7


@pytest.mark.parity
def test_calints_open_as_cubemodels_with_keywords(prog):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    sim, truth = prog
    for path in (*sim.science_files, *sim.psf_files):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no schema-validation warnings
            model = datamodels.open(path)
        with model:
            assert type(model).__name__ == "CubeModel"
            meta = model.meta
            assert (meta.telescope, meta.instrument.name, meta.instrument.detector) == ("JWST", "NIRCAM", "NRCALONG")
            assert (meta.instrument.filter, meta.instrument.pupil, meta.instrument.coronagraph) == (
                "F335M", "MASKRND", "MASKA335R")
            assert (meta.subarray.name, meta.exposure.type) == ("SUB320A335R", "NRC_CORON")
            nints = 2 if meta.exposure.psf_reference else 3
            assert model.data.shape == (nints, 320, 320) == (meta.exposure.nints, 320, 320)
            assert meta.exposure.psf_reference == (_exposure(truth, path)["exptype"] == "psf")
            assert meta.exposure.exposure_time > 0 and meta.exposure.end_time > meta.exposure.start_time
            obs = meta.observation
            group = (f"jw{obs.program_number}{obs.observation_number}{obs.visit_number}_{obs.visit_group}"
                     f"{obs.sequence_id}{obs.activity_id}_{obs.exposure_number}")
            assert path.name.startswith(group + "_nrcalong")
            assert model.dq.dtype == np.uint32 and model.area.shape == (320, 320)
            assert model.var_poisson.shape == model.var_rnoise.shape == model.var_flat.shape == model.data.shape
            assert list(model.int_times["integration_number"]) == list(range(1, nints + 1))
            assert np.all(np.diff(model.int_times["int_mid_MJD_UTC"]) > 0)
            assert meta.wcsinfo.vparity == -1 and meta.photometry.conversion_megajanskys > 0
            assert meta.bunit_data == meta.bunit_err == "MJy/sr"
            assert meta.wcsinfo.s_region.startswith("POLYGON ICRS")


def test_determinism(tmp_path):
    kwargs = {"n_science_ints": 1, "n_ref_ints": 1, "n_dither": 1, "n_rolls": 1}
    a = simulate_programme(tmp_path / "a", seed=7, **kwargs)
    b = simulate_programme(tmp_path / "b", seed=7, **kwargs)
    c = simulate_programme(tmp_path / "c", seed=8, **kwargs)
    for name in (a.science_files[0].name, a.psf_files[0].name):
        sci = [fits.getdata(s.directory / name, "SCI").tobytes() for s in (a, b, c)]
        assert sci[0] == sci[1] and sci[0] != sci[2]
    assert a.truth_path.read_text() == b.truth_path.read_text()


def test_wcs_maps_companions_to_truth_and_rolls(prog):
    sim, truth = prog
    offsets = []
    for path in sim.science_files:
        header = fits.getheader(path, "SCI")
        wcs = WCS(header, naxis=2)
        star = SkyCoord(*wcs.pixel_to_world_values(header["CRPIX1"] - 1, header["CRPIX2"] - 1), unit="deg")
        assert star.separation(SkyCoord(header["CRVAL1"], header["CRVAL2"], unit="deg")).arcsec < 1e-6
        exp = _exposure(truth, path)
        for comp, at in zip(truth["companions"], exp["companions"], strict=True):
            x, y = wcs.world_to_pixel_values(comp["ra"], comp["dec"])
            assert abs(x - at["x"]) < 0.01 and abs(y - at["y"]) < 0.01
            sky = SkyCoord(comp["ra"], comp["dec"], unit="deg")
            assert star.separation(sky).arcsec == pytest.approx(comp["separation_arcsec"], abs=1e-6)
            assert star.position_angle(sky).deg == pytest.approx(comp["position_angle_deg"], abs=1e-6)
        offsets.append([(c["x"] - header["CRPIX1"] + 1, c["y"] - header["CRPIX2"] + 1) for c in exp["companions"]])
        # S_REGION corners are the frame corners
        corners = np.array(header["S_REGION"].split()[2:], dtype=float).reshape(4, 2)
        px = np.array(wcs.world_to_pixel_values(corners[:, 0], corners[:, 1])).T
        np.testing.assert_allclose(px, [[-0.5, -0.5], [319.5, -0.5], [319.5, 319.5], [-0.5, 319.5]], atol=1e-4)
    rolls = [fits.getheader(p, "SCI")["ROLL_REF"] for p in sim.science_files]
    assert rolls[1] - rolls[0] == pytest.approx(10.0)
    for (x0, y0), (x1, y1) in zip(*offsets, strict=True):  # companions rotate on the detector by the roll step
        turn = math.degrees(math.atan2(y1, x1) - math.atan2(y0, x0))
        assert abs((abs(turn) + 180) % 360 - 180) == pytest.approx(10.0, abs=1e-6)


def test_offset_is_an_exact_fourier_shift():
    base = coronagraphic_psf("SUB320A335R", seed=1)
    moved = coronagraphic_psf("SUB320A335R", seed=1, offset=(0.37, -0.21))
    expected = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(base), (0.37, -0.21))).real
    np.testing.assert_allclose(moved, expected, rtol=0, atol=1e-9 * base.max())
    iy, ix = np.unravel_index(np.argmax(moved), moved.shape)
    # the periodic pixel MTF rings slightly at the frame edges
    assert 0 < base.sum() < 0.05 and base.max() < 1e-3 and base.min() > -1e-5 * base.max()
    off = offaxis_psf("SUB320A335R", seed=1)
    assert off.sum() == pytest.approx(1.0, abs=0.02) and off.max() > 100 * base.max()
    assert abs(iy - PRESETS["SUB320A335R"].mask_center[0]) < 20 and abs(ix - PRESETS["SUB320A335R"].mask_center[1]) < 20


@pytest.mark.parametrize("shape", [(32, 32), (31, 32), (32, 33), (33, 31)])
def test_fourier_shift_matches_scipy_convention_on_white_noise(shape):
    image = np.random.default_rng(0).standard_normal(shape)
    for shift in [(0.3, -0.7), (1.5, 0.5), (-2.25, 3.1)]:
        expected = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift)).real
        np.testing.assert_allclose(fourier_shift(image, shift[1], shift[0]), expected, rtol=0, atol=1e-12)
        mtf = np.sinc(np.fft.fftfreq(shape[0]))[:, None] * np.sinc(np.fft.fftfreq(shape[1]))[None, :]
        blurred = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift) * mtf).real
        shifted = fourier_shift(image, shift[1], shift[0], pixel_mtf=True)
        np.testing.assert_allclose(shifted, blurred, rtol=0, atol=1e-12)


def _measure_offset(data, err, model, mask):
    """Least-squares (dy, dx, gain, sky) of a Fourier-shifted noiseless model to noisy data."""
    fmodel = np.fft.fft2(model)

    def resid(q):
        shifted = np.fft.ifft2(ndimage.fourier_shift(fmodel, (q[0], q[1]))).real
        return ((data - q[2] * shifted - q[3]) / err)[mask]

    start = [0.0, 0.0, np.nansum(data[mask]) / model[mask].sum(), 0.0]
    return optimize.least_squares(resid, start, x_scale=[0.1, 0.1, start[2], 1.0]).x


def test_star_offsets_recovered_from_the_data(prog):
    sim, truth = prog
    model = coronagraphic_psf("SUB320A335R", seed=3)
    yc, xc = truth["mask_center_yx"]
    yy, xx = np.indices(model.shape)
    near = np.hypot(yy - yc, xx - xc) < 40
    for path in (*sim.science_files, *sim.psf_files):
        exp = _exposure(truth, path)
        data, err = fits.getdata(path, "SCI"), fits.getdata(path, "ERR")
        for i in (0, exp["nints"] - 1):
            mask = near & np.isfinite(data[i])
            for c in exp["companions"]:
                mask &= np.hypot(yy - c["y"], xx - c["x"]) > 6
            for cr in truth["cosmic_rays"]:
                if cr["file"] == path.name and cr["integration"] == i:
                    mask[cr["y"], cr["x"]] = False
            dy, dx, gain, _ = _measure_offset(data[i].astype(float), err[i].astype(float), model, mask)
            assert (dx, dy) == pytest.approx(exp["offset_dxdy_px"][i], abs=0.02)
            assert gain == pytest.approx(exp["flux_e_per_s"] * truth["units"]["e_per_s_to_mjysr"], rel=0.05)
    ratio = [_exposure(truth, p)["flux_e_per_s"] for p in (sim.psf_files[0], sim.science_files[0])]
    assert ratio[0] / ratio[1] == pytest.approx(truth["reference_flux_ratio"]) and 1.5 <= ratio[0] / ratio[1] <= 3


def test_pointing_dither_and_drift(prog):
    sim, truth = prog
    step = 0.020 / 0.063
    dithers = sorted(tuple(np.round(np.array(_exposure(truth, p)["dither_offset_dxdy_px"]) / step, 9))
                     for p in sim.psf_files)
    assert dithers == sorted([(0, 0), (-1, -1), (1, -1), (1, 1), (-1, 1)])
    for exp in truth["exposures"]:
        off = np.array(exp["offset_dxdy_px"])
        pointing = np.hypot(*(off.mean(axis=0) - exp["dither_offset_dxdy_px"]))
        assert 0.05 <= pointing <= 0.5
        assert np.all(np.hypot(*np.diff(off, axis=0).T) <= 0.02 + 1e-12)
        header = fits.getheader(sim.directory / exp["file"])
        assert header["IS_PSF"] == (exp["exptype"] == "psf")
        if exp["exptype"] == "psf":
            assert (header["PATT_NUM"], header["NUMDTHPT"], header["SMGRDPAT"]) == (
                exp["dither_index"], 5, "5-POINT-BOX")


@pytest.mark.parametrize("which", ["prog", "miri"])
def test_companion_flux_and_absence_from_references(which, request):
    sim, truth = request.getfixturevalue(which)
    name, seed = truth["preset"]["name"], truth["seed"]
    conv = truth["units"]["e_per_s_to_mjysr"]
    exp = _exposure(truth, sim.science_files[0])
    data = fits.getdata(sim.science_files[0], "SCI")[0].astype(float)
    star = ndimage.fourier_shift(np.fft.fft2(coronagraphic_psf(name, seed=seed)), exp["offset_dxdy_px"][0][::-1])
    resid = data - np.fft.ifft2(star).real * exp["flux_e_per_s"] * conv
    for comp, at in zip(truth["companions"], exp["companions"], strict=True):
        x, y = at["xy_per_integration"][0]
        psf = offaxis_psf(name, position=(y, x), seed=seed)
        box = (slice(round(y) - 6, round(y) + 7), slice(round(x) - 6, round(x) + 7))
        ok = np.isfinite(resid[box])
        design = np.stack([psf[box][ok], np.ones(ok.sum())], axis=1)  # companion + local background
        amp = np.linalg.lstsq(design, resid[box][ok], rcond=None)[0][0]
        expected = comp["contrast"] * at["transmission"] * exp["flux_e_per_s"] * conv
        assert amp == pytest.approx(expected, rel=0.1)
    assert all(not _exposure(truth, p)["companions"] for p in sim.psf_files)


def test_bad_pixels_are_nan_and_do_not_use(prog):
    sim, truth = prog
    bad = tuple(np.array(truth["bad_pixels_yx"]).T)
    assert truth["bad_pixel_count"] == len(bad[0]) and 0.001 <= len(bad[0]) / 320**2 <= 0.005
    for path in (*sim.science_files, *sim.psf_files):
        with fits.open(path) as hdul:
            flags = hdul["DQ"].data
            assert np.all(flags[:, bad[0], bad[1]] & dq.DO_NOT_USE)
            assert np.all(flags[:, bad[0], bad[1]] & (dq.PIXEL["HOT"] | dq.PIXEL["DEAD"]))
            assert np.count_nonzero(flags[0] & dq.DO_NOT_USE) == len(bad[0])
            assert np.all(flags == flags[0])
            for ext in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
                data = hdul[ext].data
                assert np.all(np.isnan(data[:, bad[0], bad[1]]))
                assert np.count_nonzero(np.isnan(data)) == len(bad[0]) * data.shape[0]


def test_cosmic_rays_stand_out_and_are_not_flagged(prog):
    sim, truth = prog
    hits = truth["cosmic_rays"]
    assert len(hits) > 20
    per_int = {(h["file"], h["integration"]) for h in hits}
    assert len(per_int) < sum(e["nints"] for e in truth["exposures"])  # only some integrations are hit
    hit_set = {(h["file"], h["integration"], h["y"], h["x"]) for h in hits}
    for name in {h["file"] for h in hits}:
        with fits.open(sim.directory / name) as hdul:
            sci, err, flags = hdul["SCI"].data, hdul["ERR"].data, hdul["DQ"].data
            for h in (h for h in hits if h["file"] == name):
                i, y, x = h["integration"], h["y"], h["x"]
                assert flags[i, y, x] == 0
                for j in range(sci.shape[0]):
                    if j != i and (name, j, y, x) not in hit_set:
                        assert sci[i, y, x] - sci[j, y, x] > 10 * math.hypot(err[i, y, x], err[j, y, x])


@pytest.mark.parametrize("which", ["prog", "miri"])
def test_noise_matches_variance_planes(which, request):
    sim, truth = request.getfixturevalue(which)
    path = sim.science_files[0]
    with fits.open(path) as hdul:
        sci, err = hdul["SCI"].data.astype(float), hdul["ERR"].data.astype(float)
        vp, vr, vf = (hdul[k].data.astype(float) for k in ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"))
    np.testing.assert_allclose(err**2, vp + vr + vf, rtol=1e-5)
    yc, xc = truth["mask_center_yx"]
    yy, xx = np.indices(sci.shape[1:])
    sky = (np.hypot(yy - yc, xx - xc) > 0.35 * min(sci.shape[1:])) & np.isfinite(sci[0])
    hit = {(h["y"], h["x"]) for h in truth["cosmic_rays"] if h["file"] == path.name and h["integration"] < 2}
    for y, x in hit:
        sky[y, x] = False
    diff = (sci[0] - sci[1])[sky]
    expected = (vp[0] + vr[0] + vp[1] + vr[1])[sky]  # the flat-field error cancels in a difference
    ratio = np.var(diff) / np.mean(expected)
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert np.mean(diff / np.sqrt(expected)) == pytest.approx(0.0, abs=0.05)


def test_miri_preset(miri):
    sim, _truth = miri
    assert sim.product_name == "jw01386-c1000_t001_miri_f1550c-mask1550"
    asn = json.loads(sim.asn_path.read_text())
    assert asn["asn_rule"] == "candidate_Asn_Lv3MIRCoron" and len(asn["products"][0]["members"]) == 3
    with fits.open(sim.science_files[0]) as hdul:
        head = hdul[0].header
        assert (head["INSTRUME"], head["DETECTOR"], head["EXP_TYPE"], head["CORONMSK"], head["SUBARRAY"]) == (
            "MIRI", "MIRIMAGE", "MIR_4QPM", "4QPM_1550", "MASK1550")
        assert "PUPIL" not in head
        sci, flags = hdul["SCI"].data, hdul["DQ"].data
    assert sci.shape == (3, 224, 288)
    non_science = (flags[0] & dq.NON_SCIENCE) > 0
    assert non_science[:, :10].all() and not non_science[:, 100:].any() and non_science.mean() > 0.05
    assert np.all(flags[0][non_science] & dq.DO_NOT_USE) and np.all(np.isnan(sci[:, non_science]))
    weight = fits.getdata(sim.psfmask_path, "SCI")
    assert weight.shape == (224, 288) and np.all(weight[non_science] == 0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_psfmask_is_a_plausible_weight_map(name):
    weight = psfmask(name)
    preset = PRESETS[name]
    assert weight.dtype == np.float32 and weight.shape == preset.shape
    assert weight.min() >= 0 and weight.max() <= 1
    yc, xc = (round(v) for v in preset.mask_center)
    assert weight[yc, xc] < 0.01 and weight[0, -1] == 0 and weight[-1, :].max() == 0
    assert weight[yc, xc + 60] > 0.99 and np.mean(weight > 0.99) > 0.8


@pytest.mark.parity
def test_psfmask_file_header(prog):
    sim, _ = prog
    header = fits.getheader(sim.psfmask_path)
    assert (header["REFTYPE"], header["DATAMODL"], header["CORONMSK"], header["SUBARRAY"]) == (
        "PSFMASK", "PsfMaskModel", "MASKA335R", "SUB320A335R")
    assert "USEAFTER" in header and fits.getdata(sim.psfmask_path, "SCI").dtype.byteorder == ">"
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = datamodels.open(sim.psfmask_path)
    with model:
        assert type(model).__name__ == "PsfMaskModel" and model.data.shape == (320, 320)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_dither": 4}, "n_dither"), ({"n_science_ints": 0}, "n_science_ints"), ({"n_ref_ints": 1.5}, "n_ref_ints"),
    ({"preset": "FULL"}, "unknown preset"), ({"bad_pixel_fraction": 0.2}, "bad_pixel_fraction"),
    ({"companions": [Companion(0.0, 10.0, 1e-4)]}, "companions"), ({"seed": -1}, "seed"),
    ({"companions": [Companion(30.0, 10.0, 1e-4)]}, "outside"), ({"pointing_offset_px": (0.5, 0.1)}, "pointing"),
])
def test_invalid_arguments(tmp_path, kwargs, match):
    args = {"n_science_ints": 1, "n_ref_ints": 1, "n_dither": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate_programme(tmp_path, **args)
    assert not list(tmp_path.glob("*.fits"))  # validated before anything is written
