"""Pointing jitter and the contrast-calibration outputs of the simulator (PSF model, transmission, fluxes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage, optimize

from coron3_dask.kernels.shift import fourier_shift
from coron3_dask.simulate import Companion, coronagraphic_psf, offaxis_psf, psfmask, simulate_programme
from coron3_dask.simulate.instrument import STREAMS, coronagraph
from coron3_dask.simulate.plan import plan_exposures
from coron3_dask.simulate.presets import PRESETS

SMALL = {"n_science_ints": 2, "n_ref_ints": 1, "n_dither": 1, "n_rolls": 1}


def _sim(path, **kwargs):
    sim = simulate_programme(path, **{**SMALL, **kwargs})
    return sim, json.loads(sim.truth_path.read_text())


def _offsets(truth):
    return np.concatenate([np.array(e["offset_dxdy_px"]) for e in truth["exposures"]])


def test_zero_jitter_is_the_default_and_leaves_files_unchanged(tmp_path):
    a, ta = _sim(tmp_path / "a", seed=4)
    b, tb = _sim(tmp_path / "b", seed=4, jitter_px=0.0)
    assert ta == tb
    for fa, fb in zip((*a.science_files, *a.psf_files), (*b.science_files, *b.psf_files), strict=True):
        with fits.open(fa) as ha, fits.open(fb) as hb:
            for name in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT"):
                assert np.array_equal(ha[name].data, hb[name].data, equal_nan=name != "DQ"), name


def test_jitter_adds_its_own_stream_to_the_planned_offsets(tmp_path):
    seed, jitter = 4, 0.3
    _, base = _sim(tmp_path / "a", seed=seed, companions=[])
    _, jit = _sim(tmp_path / "b", seed=seed, companions=[], jitter_px=jitter)
    assert jit["parameters"]["jitter_px"] == jitter
    rng = np.random.default_rng([seed, STREAMS["jitter"]])  # drawn per exposure in time order, (dy, dx)
    draws = np.concatenate([rng.normal(0.0, jitter, (e["nints"], 2))[:, ::-1] for e in base["exposures"]])
    np.testing.assert_allclose(_offsets(jit) - _offsets(base), draws, atol=1e-12)
    for e in jit["exposures"]:
        yc, xc = jit["mask_center_yx"]
        star = np.array(e["star_xy_px"]) - [xc, yc]
        np.testing.assert_allclose(star, e["offset_dxdy_px"], atol=1e-12)


def test_jitter_rms_over_many_integrations():
    p, jitter = PRESETS["SUB320A335R"], 0.05
    kwargs = {"n_science_ints": 400, "n_ref_ints": 400, "n_dither": 9, "n_rolls": 2, "roll_sep": 10.0}
    kwargs |= {"ref_ratio": 2.0, "star_flux": 1e7, "pointing": (0.05, 0.5), "drift": 0.02}
    plain = plan_exposures(p, rng=np.random.default_rng(1), **kwargs)
    jit = plan_exposures(p, rng=np.random.default_rng(1), jitter=jitter, jitter_rng=np.random.default_rng(2), **kwargs)
    diff = np.concatenate([b.offset - a.offset for a, b in zip(plain, jit, strict=True)])
    assert diff.shape == (4400, 2)
    assert np.std(diff, axis=0) == pytest.approx([jitter, jitter], rel=0.05)
    assert np.abs(diff.mean(axis=0)).max() < 4 * jitter / math.sqrt(diff.shape[0])


def test_star_moves_with_the_jitter_in_the_data(tmp_path):
    sim, truth = _sim(tmp_path, seed=6, jitter_px=0.3, companions=[], cosmic_ray_fraction=0.0, n_science_ints=3)
    _, plain = _sim(tmp_path / "plain", seed=6, companions=[], cosmic_ray_fraction=0.0, n_science_ints=3)
    assert np.abs(_offsets(truth) - _offsets(plain)).max() > 0.1
    model = coronagraphic_psf("SUB320A335R", seed=6)
    yc, xc = truth["mask_center_yx"]
    yy, xx = np.indices(model.shape)
    fmodel = np.fft.fft2(model)
    exp = truth["exposures"][-1]
    data = fits.getdata(sim.science_files[0], "SCI").astype(float)
    err = fits.getdata(sim.science_files[0], "ERR").astype(float)
    for i in range(exp["nints"]):
        mask = (np.hypot(yy - yc, xx - xc) < 40) & np.isfinite(data[i])

        def resid(q, i=i, mask=mask):
            shifted = np.fft.ifft2(fmodel * _phase(model.shape, q[0], q[1])).real
            return ((data[i] - q[2] * shifted - q[3]) / err[i])[mask]

        start = [0.0, 0.0, np.nansum(data[i][mask]) / model[mask].sum(), 0.0]
        dx, dy, *_ = optimize.least_squares(resid, start, x_scale=[0.1, 0.1, start[2], 1.0]).x
        assert (dx, dy) == pytest.approx(exp["offset_dxdy_px"][i], abs=0.02)


def _phase(shape, dx, dy):
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-2j * np.pi * (fy * dy + fx * dx))


@pytest.mark.parametrize("jitter", [-0.1, float("nan"), float("inf")])
def test_invalid_jitter(tmp_path, jitter):
    with pytest.raises(ValueError, match="jitter_px"):
        simulate_programme(tmp_path, jitter_px=jitter)


@pytest.fixture(scope="module", params=["SUB320A335R", "MASK1550"])
def calib(request, tmp_path_factory):
    comps = [Companion(1.5, 120.0, 1e-3)] if request.param == "MASK1550" else []
    return _sim(tmp_path_factory.mktemp(request.param), preset=request.param, seed=2, companions=comps)


def test_psf_model_file(calib):
    sim, truth = calib
    p = PRESETS[truth["preset"]["name"]]
    assert sim.psf_model_path == sim.directory / f"{sim.product_name}_psfmodel.fits"
    assert truth["psf_model_file"] == sim.psf_model_path.name
    with fits.open(sim.psf_model_path) as hdul:
        hdr, psf = hdul[0].header, hdul["SCI"].data.astype(float)
    assert (hdr["TELESCOP"], hdr["INSTRUME"], hdr["FILTER"], hdr["CORONMSK"]) == (
        "JWST", p.instrument, p.filter, p.coronmsk)
    assert (hdr["PIXSCALE"], hdr["WAVELEN"]) == (p.pixel_scale_arcsec, p.wavelength_um)
    assert "normalised so that the total" in str(hdr["COMMENT"])
    n = psf.shape[0]
    assert psf.shape == (n, n) and n % 2 == 1
    assert np.unravel_index(np.argmax(psf), psf.shape) == (n // 2, n // 2)
    assert psf.sum() == pytest.approx(hdr["PSFFRAC"], abs=1e-6)
    assert 0.95 < hdr["PSFFRAC"] < 1 and truth["psf_model_fraction"] == pytest.approx(hdr["PSFFRAC"])
    # FWHM card against a Gaussian fit of the core
    yy, xx = np.indices(psf.shape) - n // 2
    core = np.hypot(yy, xx) < 1.2 * hdr["FWHM"]

    def resid(q):
        return (q[0] * np.exp(-((yy - q[1]) ** 2 + (xx - q[2]) ** 2) / (2 * q[3] ** 2)) - psf)[core]

    sigma = optimize.least_squares(resid, [psf.max(), 0, 0, hdr["FWHM"] / 2.355]).x[3]
    assert hdr["FWHM"] == pytest.approx(2 * math.sqrt(2 * math.log(2)) * abs(sigma), rel=0.15)
    assert truth["fwhm_px"] == hdr["FWHM"]
    # the same PSF as the one the simulator injects for companions (offaxis_psf, star on a pixel centre)
    y0, x0 = round(p.mask_center[0]), round(p.mask_center[1])
    injected = offaxis_psf(p.name, position=(y0, x0), seed=2)
    h = min(n // 2, y0, x0, p.shape[0] - 1 - y0, p.shape[1] - 1 - x0) - 2
    box = (slice(y0 - h, y0 + h + 1), slice(x0 - h, x0 + h + 1))
    np.testing.assert_allclose(injected[box], psf[n // 2 - h : n // 2 + h + 1, n // 2 - h : n // 2 + h + 1],
                               atol=1e-3 * psf.max())


def test_transmission_file(calib):
    sim, truth = calib
    p = PRESETS[truth["preset"]["name"]]
    assert truth["transmission_file"] == sim.transmission_path.name
    trans = fits.getdata(sim.transmission_path, "SCI")
    assert trans.shape == p.shape and 0 <= trans.min() and trans.max() <= 1
    optics = coronagraph(p.name)
    for y, x in [(0, p.shape[1] - 1), (round(p.mask_center[0]), round(p.mask_center[1])), (17, 40)]:
        assert trans[y, x] == optics.transmission(y, x)
    assert trans[round(p.mask_center[0]), round(p.mask_center[1])] < 0.05
    far = psfmask(p.name) > 0.999
    if p.mask == "round":
        assert trans[far].min() > 0.9  # the PSFMASK is 1 where the occulter transmits nearly everything
    exp = truth["exposures"][-1]
    for comp in exp["companions"]:  # at the companion's position before the pointing offset
        y, x = comp["y"] - exp["mean_offset_dxdy_px"][1], comp["x"] - exp["mean_offset_dxdy_px"][0]
        assert comp["transmission"] == optics.transmission(y, x)
        assert comp["transmission"] == pytest.approx(ndimage.map_coordinates(trans, [[y], [x]], order=1)[0], abs=0.02)


def test_companion_flux_matches_host_flux_image_units(tmp_path):
    comps = [Companion(1.0, 70.0, 1e-2), Companion(2.5, 250.0, 1e-2)]
    sim, truth = _sim(tmp_path, seed=1, companions=comps, cosmic_ray_fraction=0.0, bad_pixel_fraction=0.0,
                      flat_error=0.0, read_noise=1.0)
    p = PRESETS["SUB320A335R"]
    host = truth["host_flux_image_units"]
    assert host == pytest.approx(truth["star_flux_e_per_s"] * p.photmjsr / p.gain, rel=1e-12)
    assert truth["reference_flux_image_units"] == pytest.approx(host * truth["reference_flux_ratio"])
    psf = fits.getdata(sim.psf_model_path, "SCI").astype(float)
    fwhm = truth["fwhm_px"]
    c = psf.shape[0] // 2
    data = fits.getdata(sim.science_files[0], "SCI")[0].astype(float)
    yy, xx = np.indices(data.shape)
    exp = truth["exposures"][-1]
    for comp, at in zip(truth["companions"], exp["companions"], strict=True):
        assert comp["flux_image_units"] == pytest.approx(comp["contrast"] * host, rel=1e-12)
        x, y = at["xy_per_integration"][0]
        iy, ix = round(y), round(x)
        r = np.hypot(yy - iy, xx - ix)
        aper, ann = r <= 2 * fwhm, (r > 4 * fwhm) & (r <= 6 * fwhm)
        measured = np.sum(data[aper] - np.median(data[ann]))
        # the model's fraction in the same pixel aperture and annulus, moved to the companion's sub-pixel position
        shifted = fourier_shift(psf, x - ix, y - iy)
        rp = np.hypot(*(np.indices(psf.shape) - c))
        frac = np.sum(shifted[rp <= 2 * fwhm] - np.median(shifted[(rp > 4 * fwhm) & (rp <= 6 * fwhm)]))
        assert measured / frac == pytest.approx(comp["flux_image_units"] * at["transmission"], rel=0.01)
