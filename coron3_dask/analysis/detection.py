"""Point-source detection and measurement in a PSF-subtracted image (Mawet et al. 2014 matched-aperture S/N).

The S/N of a test aperture (diameter ``fwhm``) at separation ``r`` is measured against the other apertures of
the ring through it, placed as ``vip_hci.metrics.snr`` places them: ``N = floor(pi / arcsin(fwhm / 2r))``
tangent apertures stepped clockwise from the test one, so ``n = N - 1`` noise apertures and
``snr = (f_test - mean) / (std_ddof1 * sqrt(1 + 1/n))``, a Student-t variable with ``n - 1`` dof.
Also the matched-aperture primitives (exact-overlap sums via photutils, the FFT aperture-sum map) shared with
:mod:`coron3_dask.analysis.contrast`.  Pure NumPy/SciPy + photutils; positions are (x, y), 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from photutils.aperture import CircularAperture  # type: ignore[import-untyped]
from scipy import ndimage, optimize, signal, stats

__all__ = [
    "Candidate",
    "CompanionMeasurement",
    "aperture_fraction",
    "aperture_sum_map",
    "aperture_sums",
    "default_radii",
    "false_positive_fraction",
    "find_detections",
    "measure_companion",
    "snr_map",
]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Candidate:
    """A local maximum of the S/N map: sub-pixel position (x, y), separation (px), S/N and false-positive fraction."""

    x: float
    y: float
    separation: float
    snr: float
    fpf: float


@dataclass(frozen=True)
class CompanionMeasurement:
    """Position, matched-aperture photometry and significance of a point source."""

    x: float
    y: float
    separation: float
    flux: float
    background: float
    noise: float
    snr: float
    fpf: float
    n_noise_apertures: int
    total_flux: float | None


def aperture_sums(
    image: NDArray[np.floating], xs: ArrayLike, ys: ArrayLike, fwhm: float
) -> tuple[Array, NDArray[np.bool_]]:
    """Exact-overlap sums in circles of diameter ``fwhm`` centred on ``(xs, ys)``.

    Parameters
    ----------
    image : ndarray, (y, x)
        Image; NaN pixels are unusable.
    xs, ys : array_like
        Aperture centres (0-based x, y).
    fwhm : float
        Aperture diameter in pixels.

    Returns
    -------
    sums : ndarray
        Aperture sums (NaN where invalid).
    valid : ndarray of bool
        False for apertures that reach outside the frame or touch a NaN pixel.
    """
    x = np.atleast_1d(np.asarray(xs, dtype=float))
    y = np.atleast_1d(np.asarray(ys, dtype=float))
    sums = np.full(x.shape, np.nan)
    if x.size == 0:
        return sums, np.zeros(x.shape, bool)
    ny, nx = image.shape
    masks = CircularAperture(np.column_stack([x, y]), fwhm / 2.0).to_mask(method="exact")
    for i, m in enumerate(masks if isinstance(masks, list) else [masks]):
        b = m.bbox
        if b.ixmin < 0 or b.iymin < 0 or b.ixmax > nx or b.iymax > ny:
            continue
        w = m.data
        cut = image[b.iymin : b.iymax, b.ixmin : b.ixmax][w > 0]
        if np.all(np.isfinite(cut)):
            sums[i] = float(np.sum(cut * w[w > 0]))
    return sums, np.isfinite(sums)


def _disk_kernel(fwhm: float) -> Array:
    h = int(np.ceil(fwhm / 2.0)) + 1
    k: Array = CircularAperture((h, h), fwhm / 2.0).to_mask(method="exact").to_image((2 * h + 1, 2 * h + 1))
    return k


def aperture_sum_map(image: NDArray[np.floating], fwhm: float) -> Array:
    """Matched-aperture sum centred on every pixel (FFT convolution with an exact-overlap disk).

    Parameters
    ----------
    image : ndarray, (y, x)
        Image; NaN pixels are unusable.
    fwhm : float
        Aperture diameter in pixels.

    Returns
    -------
    ndarray, (y, x)
        Sum in the aperture centred on each pixel; NaN where the aperture touches a NaN pixel or the frame edge.
    """
    k = _disk_kernel(fwhm)
    h = k.shape[0] // 2
    padded = np.pad(np.asarray(image, dtype=float), h, constant_values=np.nan)
    good = np.isfinite(padded)
    total = signal.fftconvolve(np.where(good, padded, 0.0), k, mode="same")
    bad = signal.fftconvolve((~good).astype(float), (k > 0).astype(float), mode="same")
    out: Array = np.where(bad < 0.5, total, np.nan)[h:-h, h:-h]
    return out


def _max_radius(shape: tuple[int, ...], center: tuple[float, float], fwhm: float) -> float:
    cx, cy = center
    ny, nx = shape
    return float(min(cx + 0.5, nx - 0.5 - cx, cy + 0.5, ny - 0.5 - cy) - fwhm / 2.0)


def default_radii(shape: tuple[int, ...], center: tuple[float, float], fwhm: float) -> Array:
    """Separations from ``fwhm`` to the largest radius whose apertures fit in the frame, step ``fwhm / 2``."""
    return np.arange(fwhm, _max_radius(shape, center, fwhm) + 1e-9, fwhm / 2.0)


def false_positive_fraction(snr: ArrayLike, n: ArrayLike) -> Array:
    """False-positive fraction of a Mawet (2014) S/N measured against ``n`` noise apertures.

    Parameters
    ----------
    snr : array_like
        ``(f_test - mean) / (std * sqrt(1 + 1/n))`` with ``std`` the ``ddof=1`` std of the ``n`` noise apertures.
    n : array_like of int
        Number of noise apertures.

    Returns
    -------
    ndarray
        ``t.sf(snr, n - 1)`` (Student-t with ``n - 1`` dof); NaN for ``n < 2``.
    """
    n_arr = np.asarray(n, dtype=float)
    ok = n_arr >= 2
    return np.asarray(np.where(ok, stats.t.sf(snr, np.where(ok, n_arr, 2.0) - 1), np.nan), dtype=float)


def _model_centre(psf_model: NDArray[np.floating]) -> tuple[float, float]:
    return (psf_model.shape[1] - 1) / 2.0, (psf_model.shape[0] - 1) / 2.0


def aperture_fraction(psf_model: NDArray[np.floating], fwhm: float) -> float:
    """Fraction of a normalised PSF model's energy inside the matched aperture centred on its central pixel.

    Parameters
    ----------
    psf_model : ndarray, (y, x)
        PSF stamp normalised to unit total flux (not renormalised here, so a truncated stamp normalised to the
        PSF's infinite-aperture flux gives the right fraction), peak on the central pixel.
    fwhm : float
        Aperture diameter in pixels.

    Returns
    -------
    float
        Exact-overlap aperture sum of the model.
    """
    mx, my = _model_centre(psf_model)
    sums, valid = aperture_sums(psf_model, [mx], [my], fwhm)
    if not valid[0]:
        raise ValueError("psf_model is smaller than the aperture or contains NaN")
    return float(sums[0])


def _ring_count(r: NDArray[np.floating] | float, fwhm: float) -> NDArray[np.int64]:
    """Apertures on the ring of radius ``r`` (test one included), VIP ``indep_ap_centers`` rule."""
    half = np.arcsin(np.clip(fwhm / (2.0 * np.maximum(r, 1e-12)), -1.0, 1.0))
    return np.floor(np.pi / half + 1e-9).astype(np.int64)


def _mawet(test: Array, noise: Array) -> tuple[Array, Array, Array, NDArray[np.int64]]:
    """Row-wise Mawet statistic; NaN noise samples are dropped.  Returns snr, mean, noise, count."""
    good = np.isfinite(noise)
    cnt = good.sum(axis=1)
    c = np.maximum(cnt, 2)
    mean = np.where(good, noise, 0.0).sum(axis=1) / np.maximum(cnt, 1)
    var = (np.where(good, noise - mean[:, None], 0.0) ** 2).sum(axis=1) / (c - 1)
    sigma = np.sqrt(var) * np.sqrt(1 + 1 / c)
    ok = (cnt >= 3) & (sigma > 0) & np.isfinite(test)
    snr = np.where(ok, (test - mean) / np.where(ok, sigma, 1.0), np.nan)
    return snr, mean, np.where(ok, sigma, np.nan), cnt


def snr_map(image: NDArray[np.floating], center: tuple[float, float], fwhm: float) -> Array:
    """Matched-aperture S/N (Mawet et al. 2014) at every pixel.

    Parameters
    ----------
    image : ndarray, (y, x)
        PSF-subtracted image; NaN pixels are unusable.
    center : (float, float)
        Star position (x, y).
    fwhm : float
        Aperture diameter in pixels.

    Returns
    -------
    ndarray, (y, x)
        S/N; NaN within ``fwhm`` of the star, beyond the largest ring whose apertures all fit in the frame
        (as VIP's ``snrmap``, which stops ``1.5 fwhm`` inside the frame edge), where the test aperture is
        unusable, or with < 3 usable noise apertures.

    Notes
    -----
    Vectorised: the aperture sums of every pixel come from one FFT convolution (:func:`aperture_sum_map`,
    exact at integer pixels); the noise apertures at non-integer positions are sampled bilinearly from that
    map.  ``vip_hci.metrics.snrmap`` sums exact apertures at each position instead; bilinear sampling slightly
    smooths the noise samples, so our S/N is typically a few per cent higher where the noise is correlated on
    sub-aperture scales.  Noise apertures touching NaN pixels or the frame edge are dropped (VIP counts the
    outside as zero).
    """
    cx, cy = center
    amap = aperture_sum_map(image, fwhm)
    yy, xx = np.indices(amap.shape, dtype=float)
    dx, dy = xx - cx, yy - cy
    rr = np.hypot(dx, dy)
    out = np.full(amap.shape, np.nan)
    valid = (rr >= fwhm) & (rr <= _max_radius(amap.shape, center, fwhm)) & np.isfinite(amap)
    count = np.where(valid, _ring_count(rr, fwhm), 0)
    for n_ring in np.unique(count[valid]):
        sel = valid & (count == n_ring)
        r, theta0 = rr[sel], np.arctan2(dy[sel], dx[sel])
        step = 2 * np.arcsin(fwhm / (2 * r))
        theta = theta0[:, None] - step[:, None] * np.arange(1, n_ring)[None, :]
        coords = [(cy + r[:, None] * np.sin(theta)).ravel(), (cx + r[:, None] * np.cos(theta)).ravel()]
        noise = ndimage.map_coordinates(amap, coords, order=1, mode="constant", cval=np.nan, prefilter=False)
        out[sel] = _mawet(amap[sel], noise.reshape(theta.shape))[0]
    return out


def _centroid(image: NDArray[np.floating], xy: tuple[float, float], radius: float) -> tuple[float, float]:
    """Return the iterated centroid of the positive signal within ``radius`` (unbiased at its fixed point)."""
    x, y = xy
    yy, xx = np.indices(image.shape, dtype=float)
    img = np.where(np.isfinite(image), image, 0.0)
    for _ in range(20):
        w = np.where((xx - x) ** 2 + (yy - y) ** 2 <= radius**2, np.clip(img, 0.0, None), 0.0)
        total = w.sum()
        if total <= 0:
            break
        nxt = float((w * xx).sum() / total), float((w * yy).sum() / total)
        if np.hypot(nxt[0] - x, nxt[1] - y) < 1e-4:
            x, y = nxt
            break
        x, y = nxt
    return x, y


def find_detections(
    snr: NDArray[np.floating],
    image: NDArray[np.floating],
    center: tuple[float, float],
    fwhm: float,
    *,
    threshold: float = 5.0,
) -> list[Candidate]:
    """Local maxima of an S/N map above ``threshold``, at least ``fwhm`` apart and beyond ``fwhm`` from the star.

    Parameters
    ----------
    snr : ndarray, (y, x)
        S/N map (:func:`snr_map`).
    image : ndarray, (y, x)
        The PSF-subtracted image the map was made from (for the sub-pixel centroid).
    center : (float, float)
        Star position (x, y).
    fwhm : float
        Aperture diameter in pixels.
    threshold : float
        Minimum S/N.

    Returns
    -------
    list of Candidate
        Brightest first; position = centroid of the positive image signal within ``fwhm / 2`` of the peak pixel;
        ``fpf`` from :func:`false_positive_fraction` with the number of noise apertures at that separation.
    """
    cx, cy = center
    s = np.where(np.isfinite(snr), snr, -np.inf)
    h = int(np.ceil(fwhm))
    fy, fx = np.mgrid[-h : h + 1, -h : h + 1]
    peak = (s == ndimage.maximum_filter(s, footprint=fx**2 + fy**2 <= fwhm**2, mode="constant", cval=-np.inf)) & (
        s > threshold
    )
    yy, xx = np.nonzero(peak & (np.hypot(*np.indices(s.shape)[::-1] - np.array([cx, cy])[:, None, None]) > fwhm))
    order = np.argsort(-s[yy, xx])
    found: list[Candidate] = []
    for py, px in zip(yy[order], xx[order], strict=True):
        if any(np.hypot(c.x - px, c.y - py) < fwhm for c in found):
            continue
        x, y = _centroid(image, (float(px), float(py)), fwhm / 2.0)
        sep = float(np.hypot(x - cx, y - cy))
        n = int(_ring_count(float(np.hypot(px - cx, py - cy)), fwhm)) - 1
        value = float(snr[py, px])
        found.append(Candidate(x, y, sep, value, float(false_positive_fraction(value, n))))
    return found


def _psf_fit(
    image: NDArray[np.floating], xy: tuple[float, float], psf_model: NDArray[np.floating], radius: float
) -> tuple[float, float]:
    """Least-squares position of ``amplitude * psf_model`` (cubic-spline shifted) within ``radius`` of ``xy``."""
    yy, xx = np.indices(image.shape, dtype=float)
    sel = ((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2 <= radius**2) & np.isfinite(image)
    data, px, py = image[sel], xx[sel], yy[sel]
    coeffs = ndimage.spline_filter(np.asarray(psf_model, float), order=3)
    mx, my = (psf_model.shape[1] - 1) / 2.0, (psf_model.shape[0] - 1) / 2.0

    def resid(p: NDArray[np.float64]) -> NDArray[np.float64]:
        m = ndimage.map_coordinates(coeffs, [py - p[1] + my, px - p[0] + mx], order=3, prefilter=False, cval=0.0)
        amp = float(m @ data / max(float(m @ m), 1e-300))
        return np.asarray(data - amp * m, dtype=float)

    fit = optimize.least_squares(resid, np.array(xy, dtype=float), x_scale=0.1, diff_step=1e-3)
    return float(fit.x[0]), float(fit.x[1])


def measure_companion(
    image: NDArray[np.floating],
    xy: tuple[float, float],
    center: tuple[float, float],
    fwhm: float,
    *,
    psf_model: NDArray[np.floating] | None = None,
) -> CompanionMeasurement:
    """Position, matched-aperture flux and S/N of a point source near ``xy``.

    Parameters
    ----------
    image : ndarray, (y, x)
        PSF-subtracted image; NaN pixels are unusable.
    xy : (float, float)
        Approximate source position (x, y).
    center : (float, float)
        Star position (x, y).
    fwhm : float
        Aperture diameter in pixels.
    psf_model : ndarray, optional
        PSF stamp normalised to unit total flux, centred on its central pixel.  If given, the position is a PSF
        fit (within ``fwhm`` of the centroid) and ``total_flux = flux / aperture_fraction(psf_model, fwhm)``.

    Returns
    -------
    CompanionMeasurement
        ``flux`` is the aperture sum at the refined position (not background-subtracted); ``background`` and
        ``noise`` are the mean and the small-sample-corrected std (``std_ddof1 * sqrt(1 + 1/n)``) of the
        ``n`` other apertures on the ring (placement as :func:`snr_map`); ``snr = (flux - background) / noise``.
    """
    x, y = _centroid(image, xy, fwhm / 2.0)
    if psf_model is not None:
        x, y = _psf_fit(image, (x, y), psf_model, fwhm)
    cx, cy = center
    r = float(np.hypot(x - cx, y - cy))
    n_ring = int(_ring_count(r, fwhm))
    theta = np.arctan2(y - cy, x - cx) - 2 * np.arcsin(fwhm / (2 * r)) * np.arange(n_ring)
    sums, _ = aperture_sums(image, cx + r * np.cos(theta), cy + r * np.sin(theta), fwhm)
    snr, mean, noise, cnt = _mawet(sums[:1], sums[None, 1:])
    flux = float(sums[0])
    total = None if psf_model is None else flux / aperture_fraction(psf_model, fwhm)
    n = int(cnt[0])
    return CompanionMeasurement(
        x,
        y,
        r,
        flux,
        float(mean[0]),
        float(noise[0]),
        float(snr[0]),
        float(false_positive_fraction(snr[0], n)),
        n,
        total,
    )
