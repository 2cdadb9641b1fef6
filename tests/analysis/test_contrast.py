"""Contrast kernels against analytic truth and injected signals (no reference packages)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from coron3_dask.analysis import (
    aperture_fraction,
    aperture_sum_map,
    aperture_sums,
    calibrated_contrast,
    false_positive_fraction,
    find_detections,
    host_aperture_flux,
    measure_companion,
    noise_per_annulus,
    raw_contrast_curve,
    recovered_flux,
    snr_map,
    student_threshold,
    throughput_curve,
)

FWHM = 4.0
SIG_PSF = FWHM / (2 * np.sqrt(2 * np.log(2)))


def gaussian_source(shape, xy, flux, sigma=SIG_PSF):
    """Pixel-integrated circular Gaussian of total ``flux`` centred on ``xy`` (x, y)."""
    ny, nx = shape

    def edges(n, c):
        e = (np.arange(n + 1) - 0.5 - c) / (np.sqrt(2) * sigma)
        return np.diff(0.5 * special.erf(e))

    return flux * np.outer(edges(ny, xy[1]), edges(nx, xy[0]))


def disk_weights_sq(radius, rng, n_pos=200, sub=40):
    """Mean sum of squared pixel-overlap weights of a disk at random sub-pixel positions (supersampled)."""
    h = int(np.ceil(radius)) + 1
    g = (np.arange(-h * sub, (h + 1) * sub) + 0.5) / sub - 0.5
    out = []
    for dx, dy in rng.uniform(-0.5, 0.5, size=(n_pos, 2)):
        inside = (g[None, :] - dx) ** 2 + (g[:, None] - dy) ** 2 <= radius**2
        w = inside.reshape(2 * h + 1, sub, 2 * h + 1, sub).mean(axis=(1, 3))
        out.append((w**2).sum())
    return float(np.mean(out))


def disk_weights(shape, xy, radius, sub=40):
    """Pixel-overlap weights of a disk centred on ``xy`` (x, y), by supersampling (independent of photutils)."""
    ny, nx = shape
    gx = (np.arange(nx * sub) + 0.5) / sub - 0.5
    gy = (np.arange(ny * sub) + 0.5) / sub - 0.5
    inside = (gx[None, :] - xy[0]) ** 2 + (gy[:, None] - xy[1]) ** 2 <= radius**2
    return inside.reshape(ny, sub, nx, sub).mean(axis=(1, 3))


def expected_aperture_flux(xy, flux, shape=(64, 64)):
    """Aperture sum of a pixel-integrated Gaussian: the pixelation moves ~3 % of the flux out of a FWHM disk."""
    return float((disk_weights(shape, xy, FWHM / 2) * gaussian_source(shape, xy, flux)).sum())


def test_noise_per_annulus_white_noise():
    rng = np.random.default_rng(0)
    sigma = 2.0
    image = rng.normal(0.0, sigma, size=(160, 160))
    center = (80.0, 79.0)
    res = noise_per_annulus(image, center, FWHM)
    assert res.radius[0] == FWHM
    np.testing.assert_array_equal(res.n_apertures, (2 * np.pi * res.radius / FWHM).astype(int))
    truth = sigma * np.sqrt(disk_weights_sq(FWHM / 2, rng))
    pooled = np.sqrt(np.sum((res.n_apertures - 1) * res.std**2) / np.sum(res.n_apertures - 1))
    assert pooled == pytest.approx(truth, rel=0.05)
    # each annulus mean within 4 standard errors of zero
    assert np.all(np.abs(res.mean) < 4 * truth / np.sqrt(res.n_apertures))
    # a NaN pixel removes exactly the aperture(s) covering it
    holed = image.copy()
    holed[79, 80 + 20] = np.nan  # on the first aperture (angle 0) of the r = 20 ring
    res2 = noise_per_annulus(holed, center, FWHM, [20.0])
    assert res2.n_apertures[0] == int(2 * np.pi * 20 / FWHM) - 1


def test_aperture_sums_and_map_match_analytic_source():
    image = gaussian_source((64, 64), (30.0, 33.0), 1000.0)
    sums, valid = aperture_sums(image, [30.0, 1.4, 1.6], [33.0, 33.0, 33.0], FWHM)
    assert valid.tolist() == [True, False, True]  # the second one crosses the frame edge (x = -0.5)
    assert sums[0] == pytest.approx(expected_aperture_flux((30.0, 33.0), 1000.0), rel=1e-3)
    amap = aperture_sum_map(image, FWHM)
    assert amap[33, 30] == pytest.approx(sums[0], rel=1e-9)
    assert np.isnan(amap[33, 1]) and np.isfinite(amap[33, 2])


def test_student_threshold_limits():
    assert student_threshold(5.0, 10**7) == pytest.approx(5.0, rel=1e-4)
    ns = np.array([6, 10, 30, 100])
    tau = student_threshold(5.0, ns)
    truth = stats.t.ppf(stats.norm.cdf(5.0), ns - 1) * np.sqrt(1 + 1 / ns)
    np.testing.assert_allclose(tau, truth, rtol=1e-12)
    assert np.all(tau > 5.0) and np.all(np.diff(tau) < 0)
    assert tau[0] == pytest.approx(34.4, abs=0.05)
    # FPF of the threshold S/N (tau / sqrt(1 + 1/n)) is the Gaussian tail
    np.testing.assert_allclose(false_positive_fraction(tau / np.sqrt(1 + 1 / ns), ns), stats.norm.sf(5.0), rtol=1e-6)


def test_student_threshold_false_positive_rate_monte_carlo():
    # n noise apertures + one independent test aperture: P(test > mean + tau * s) = Gaussian tail of sigma
    rng = np.random.default_rng(1)
    n, trials, sigma = 6, 400_000, 2.0
    noise = rng.normal(size=(trials, n))
    test = rng.normal(size=trials)
    tau = student_threshold(sigma, n)
    rate = np.mean(test > noise.mean(axis=1) + tau * noise.std(axis=1, ddof=1))
    expected = stats.norm.sf(sigma)
    assert rate == pytest.approx(expected, abs=4 * np.sqrt(expected / trials))


def _companion_image(seed=3, sources=((90.3, 60.6, 3000.0),)):
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 1.0, size=(128, 128))
    for x, y, f in sources:
        image += gaussian_source(image.shape, (x, y), f)
    return image


def test_measure_companion_flux_and_position():
    image = _companion_image()
    center = (64.0, 64.0)
    m = measure_companion(image, (90.0, 61.0), center, FWHM)
    assert m.flux == pytest.approx(expected_aperture_flux((90.3, 60.6), 3000.0, image.shape), rel=0.05)
    assert np.hypot(m.x - 90.3, m.y - 60.6) < 0.1
    # the PSF wings reach the tangent neighbour apertures and inflate their scatter (as in VIP): S/N ~ 40
    assert m.snr > 30 and m.fpf < 1e-10
    assert m.separation == pytest.approx(np.hypot(26.3, 3.4), abs=0.1)
    model = gaussian_source((41, 41), (20.0, 20.0), 1.0)
    fitted = measure_companion(image, (90.0, 61.0), center, FWHM, psf_model=model)
    assert np.hypot(fitted.x - 90.3, fitted.y - 60.6) < 0.1
    assert fitted.total_flux == pytest.approx(3000.0, rel=0.05)


def test_snr_map_peaks_at_source():
    image = _companion_image(sources=((40.0, 80.0, 300.0),))
    snr = snr_map(image, (64.0, 64.0), FWHM)
    py, px = np.unravel_index(np.nanargmax(snr), snr.shape)
    assert np.hypot(px - 40.0, py - 80.0) <= 1.0
    assert np.nanmax(snr) > 10
    assert np.isnan(snr[64, 64]) and np.isnan(snr[64, 66])  # inside fwhm of the star


def test_find_detections_exact_set():
    center = (64.0, 64.0)
    sources = ((40.2, 80.4, 250.0), (95.6, 70.1, 200.0), (64.3, 30.8, 300.0))
    image = _companion_image(seed=5, sources=sources)
    found = find_detections(snr_map(image, center, FWHM), image, center, FWHM, threshold=5.0)
    assert len(found) == 3
    for x, y, _ in sources:
        assert min(np.hypot(c.x - x, c.y - y) for c in found) < 0.5
    assert all(c.snr > 5 and c.fpf < 1e-4 for c in found)
    noise = _companion_image(seed=5, sources=())
    assert find_detections(snr_map(noise, center, FWHM), noise, center, FWHM, threshold=5.0) == []


def test_raw_contrast_curve_white_noise():
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 1.0, size=(128, 128))
    center = (64.0, 64.0)
    star = 1e5
    cc = raw_contrast_curve(image, center, FWHM, star)
    truth_noise = np.sqrt(disk_weights_sq(FWHM / 2, rng))
    # far out (many apertures) the curve approaches 5 sigma of the aperture noise over the star flux
    far = cc.separation > 40
    np.testing.assert_allclose(cc.contrast[far], 5 * truth_noise / star, rtol=0.35)
    np.testing.assert_allclose(cc.threshold, student_threshold(5.0, cc.n_samples))
    assert cc.threshold[0] > 30 and np.all(cc.contrast > 0)


def test_throughput_and_recovered_flux():
    seps = [10.0, 20.0, 20.0, 30.0]
    inj = [100.0, 100.0, 100.0, 100.0]
    rec = [50.0, 70.0, 90.0, 90.0]
    t = throughput_curve(seps, inj, rec, [5.0, 10.0, 15.0, 25.0, 40.0])
    np.testing.assert_allclose(t, [0.5, 0.5, 0.65, 0.85, 0.9])
    clipped = throughput_curve([10.0, 20.0], [100.0, 100.0], [-5.0, 300.0], [10.0, 20.0])
    assert np.isnan(clipped[0]) and clipped[1] == 1.5
    np.testing.assert_allclose(calibrated_contrast([1e-5, 2e-5], [0.5, 0.8]), [2e-5, 2.5e-5])
    rng = np.random.default_rng(2)
    without = rng.normal(size=(64, 64))
    with_fake = without + gaussian_source(without.shape, (20.4, 40.7), 800.0)
    assert recovered_flux(with_fake, without, (20.4, 40.7), FWHM) == pytest.approx(
        expected_aperture_flux((20.4, 40.7), 800.0), rel=1e-3
    )


@pytest.mark.parametrize("diameter", [4.0, 10.3, 16.0])
def test_aperture_fraction_gaussian(diameter):
    # sigma = 5 px: pixelation changes the enclosed fraction by < 1 % (it adds ~1/6 px^2 to sigma^2)
    sigma = 5.0
    model = gaussian_source((61, 61), (30.0, 30.0), 1.0, sigma=sigma)
    expected = 1 - np.exp(-((diameter / 2) ** 2) / (2 * sigma**2))
    assert aperture_fraction(model, diameter) == pytest.approx(expected, rel=0.01)
    assert host_aperture_flux(1e6, model, diameter) == pytest.approx(1e6 * expected, rel=0.01)


def _wings_psf(shape, xy):
    yy, xx = np.indices(shape, dtype=float)
    r = np.hypot(xx - xy[0], yy - xy[1])
    return np.exp(-(r**2) / (2 * 1.5**2)) + 2e-3 * (1 + (r / 3.0) ** 2) ** -1.5
