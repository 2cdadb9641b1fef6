"""Noiseless optical model of the simulator: coronagraphic and off-axis PSFs, PSFMASK.

The optics are those of :mod:`coron3_dask.simulate.optics` for a :class:`~coron3_dask.simulate.presets.Preset`;
the static pupil aberration and its random walk are drawn from the random streams
:data:`STREAMS` of :func:`~coron3_dask.simulate.simulate_programme`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.typing import NDArray

from coron3_dask.kernels.shift import fourier_shift
from coron3_dask.simulate.optics import Coronagraph
from coron3_dask.simulate.presets import Preset, resolve_preset

__all__ = [
    "STREAMS",
    "coronagraph",
    "coronagraphic_psf",
    "offaxis_psf",
    "psf_model",
    "psfmask",
    "speckle_step",
    "static_aberration",
    "transmission_map",
]

#: rms (nm) of the static aberration: low order, segment piston/tip/tilt, mid-frequency ripple
_STATIC_NM = {"low_nm": 20.0, "segment_nm": 10.0, "ripple_nm": 20.0}
#: random streams: effect -> second seed word, ``np.random.default_rng([seed, STREAMS[effect]])``
#: ("jitter" draws only when ``jitter_px > 0``: the other streams never depend on it)
STREAMS = {"static": 1, "speckle": 2, "pointing": 3, "noise": 4, "cosmic": 5, "badpix": 6, "flux": 7, "jitter": 8}


def coronagraph(preset: str | Preset = "SUB320A335R") -> Coronagraph:
    """Build the optical model of a preset (pupil, masks, transforms)."""
    return Coronagraph(resolve_preset(preset).optics())


def static_aberration(optics: Coronagraph, seed: int = 0) -> NDArray[np.float64]:
    """Quasi-static pupil aberration (nm) that :func:`~coron3_dask.simulate.simulate_programme` uses for ``seed``."""
    return optics.aberration(np.random.default_rng([seed, STREAMS["static"]]), **_STATIC_NM)


def speckle_step(optics: Coronagraph, rng: np.random.Generator, rms_nm: float) -> NDArray[np.float64]:
    """One random-walk step of the wavefront, total rms ``rms_nm`` (2/3 of the power in low order)."""
    return optics.aberration(
        rng, low_nm=rms_nm * math.sqrt(2 / 3), segment_nm=rms_nm / math.sqrt(6), ripple_nm=rms_nm / math.sqrt(6)
    )


def coronagraphic_psf(
    preset: str | Preset = "SUB320A335R",
    *,
    seed: int = 0,
    offset: tuple[float, float] = (0.0, 0.0),
    phase_nm: NDArray[np.floating] | None = None,
) -> NDArray[np.float64]:
    """Noiseless pixel-integrated coronagraphic star image, fraction of the star's flux per pixel.

    Parameters
    ----------
    preset : str or Preset
        Mode.
    seed : int
        Selects the static aberration (as in :func:`~coron3_dask.simulate.simulate_programme`); ignored if ``phase_nm``.
    offset : tuple of float
        Pointing offset ``(dy, dx)`` in pixels (a pure detector-plane shift).
    phase_nm : ndarray, optional
        Pupil aberration to use instead.

    Returns
    -------
    ndarray, (ny, nx) float64

    Examples
    --------
    >>> psf = coronagraphic_psf("SUB320A335R", seed=0)
    >>> psf.shape, bool(0 < psf.sum() < 0.02)
    ((320, 320), True)
    """
    optics = coronagraph(preset)
    phase = static_aberration(optics, seed) if phase_nm is None else phase_nm
    image = fourier_shift(optics.star_point_image(phase), offset[1], offset[0], pixel_mtf=True)
    return np.asarray(image, dtype=np.float64)  # the float64 path: no copy


def offaxis_psf(
    preset: str | Preset = "SUB320A335R", *, position: tuple[float, float] | None = None, seed: int = 0
) -> NDArray[np.float64]:
    """Unocculted PSF through the Lyot stop at pixel ``position = (y, x)`` (default: mask centre), sum ~1."""
    optics = coronagraph(preset)
    y, x = optics.spec.center if position is None else position
    image = fourier_shift(optics.offaxis_point_image(static_aberration(optics, seed), y, x), 0, 0, pixel_mtf=True)
    return np.asarray(image, dtype=np.float64)  # the float64 path: no copy


def psfmask(preset: str | Preset = "SUB320A335R") -> NDArray[np.float32]:
    """PSFMASK weight map: 0 under the occulter core, the frame edge and NON_SCIENCE; 1 elsewhere."""
    p = resolve_preset(preset)
    ny, nx = p.shape
    yy, xx = np.indices(p.shape, dtype=float)
    core = p.mask_hwhm_arcsec if p.mask == "round" else 1.5 * p.optics().lam_d_arcsec
    r = np.hypot(yy - p.mask_center[0], xx - p.mask_center[1]) * p.pixel_scale_arcsec / core
    weight = 1 - np.exp(-(r**4))
    edge = np.minimum.reduce([yy, xx - p.non_science_columns, ny - 1 - yy, nx - 1 - xx]) / 6.0
    weight *= np.sin(np.pi / 2 * np.clip(edge, 0, 1)) ** 2
    return weight.astype(np.float32)


def psf_model(
    optics: Coronagraph, phase_nm: NDArray[np.floating], *, min_fraction: float = 0.95
) -> tuple[NDArray[np.float64], float]:
    """Pixel-integrated unocculted PSF through the Lyot stop, cut out around its central pixel.

    The PSF is computed on one full period of the model's focal plane (the pupil sampling makes
    the focal field periodic, ``1 / (dx * pixel_lam_d)`` pixels), star on a pixel centre, and
    normalised so that this full PSF sums to 1: the normalisation of the companions in the data.

    Parameters
    ----------
    optics : Coronagraph
        The mode's optics.
    phase_nm : ndarray
        Pupil aberration (nm), e.g. :func:`static_aberration`.
    min_fraction : float
        Smallest energy fraction the cut-out must hold; its size is ``65, 97, 129, ...``.

    Returns
    -------
    cutout : ndarray, (size, size) float64
        Odd size, PSF centred exactly on the central pixel; ``cutout.sum()`` is its energy fraction.
    fwhm : float
        Effective FWHM (px) of the pixel-integrated PSF, ``2 sqrt(A / pi)`` with ``A`` the area above half maximum.
    """
    spec = optics.spec
    n = int(1 / (optics.dx * spec.pixel_lam_d)) // 2 * 2 + 1  # odd, at most one period
    c = n // 2
    grid = Coronagraph(dataclasses.replace(spec, shape=(n, n), center=(float(c), float(c))))
    image = np.asarray(fourier_shift(grid.offaxis_point_image(phase_nm, c, c), 0, 0, pixel_mtf=True), np.float64)
    image /= image.sum()
    half = 32
    while image[c - half : c + half + 1, c - half : c + half + 1].sum() < min_fraction and half + 16 <= c:
        half += 16
    # band-limited: evaluate exactly on a fine grid by a matrix Fourier series, then the half-maximum area
    lam = 1 / spec.pixel_lam_d
    fine = np.linspace(-2 * lam, 2 * lam, 161)
    step = fine[1] - fine[0]
    basis = np.exp(2j * np.pi * np.outer(c + fine, np.fft.fftfreq(n)))
    values = (basis @ np.fft.fft2(image) @ basis.T).real / n**2
    fwhm = 2 * math.sqrt(np.count_nonzero(values >= values.max() / 2) * step**2 / math.pi)
    return image[c - half : c + half + 1, c - half : c + half + 1].copy(), fwhm


def transmission_map(optics: Coronagraph) -> NDArray[np.float64]:
    """Intensity transmission of the focal-plane mask at every detector pixel centre (what companions get)."""
    yy, xx = np.indices(optics.spec.shape, dtype=float)
    return np.asarray(optics.transmission(yy, xx), dtype=np.float64)
