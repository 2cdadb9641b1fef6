"""Fourier-optics model of a JWST Lyot coronagraph (pure NumPy), used by ``simulate``.

The chain is pupil -> focal-plane mask -> Lyot stop -> detector, monochromatic, with
matrix Fourier transforms (MFTs; Soummer et al. 2007, Opt. Express 15, 15935) so that
every plane is sampled exactly where it is needed:

* **Pupil**: 18 hexagonal segments (1.32 m flat to flat, 7 mm gaps) with the central
  segment missing and three 0.1 m secondary-mirror struts, anti-aliased by 2x2
  super-sampling.  Lengths are in units of ``D = 6.5 m``.
* **Aberrations** (nm of optical path): low-order Zernike terms, segment piston and
  tip/tilt, and a mid-spatial-frequency ripple with a 1/f amplitude spectrum between 2
  and ``N_D/2.5`` cycles per D, each normalised to a given rms over the pupil.
* **Focal-plane mask**: round occulter with amplitude transmission
  ``1 - exp(-a r^2)`` (intensity transmission 0.5 at the HWHM), applied with Babinet's
  principle on a window of +-4 HWHM; or a four-quadrant phase mask (0/pi in alternate
  quadrants) on a +-64 lambda/D window (light beyond the window is lost, giving a small
  realistic leak).
* **Lyot stop**: undersized circle with an oversized central obscuration and struts.
  Its diameter band-limits the detector intensity to below Nyquist for the detector
  pixels, so the intensity is computed at pixel centres and integrated over the pixel
  exactly by multiplying its spectrum with the pixel transfer function
  ``sinc(f_y) sinc(f_x)``; a detector-plane shift is then an exact Fourier phase ramp.

Images are fractions of the star's total flux (the flux an unocculted star would put
through the Lyot stop) per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["Coronagraph", "OpticsSpec"]

TELESCOPE_D = 6.5  # m, the unit of pupil lengths
_SEGMENT_F2F = 1.32  # m
_SEGMENT_GAP = 0.007  # m
_STRUT_WIDTH = 0.1  # m
_STRUT_ANGLES = (90.0, 210.0, 330.0)  # deg
_GRID_EXTENT = 7.0  # m, pupil grid side
_ARCSEC = math.pi / 180.0 / 3600.0


@dataclass(frozen=True, kw_only=True)
class OpticsSpec:
    """Optical parameters of one coronagraphic mode.

    Parameters
    ----------
    wavelength_um : float
        Monochromatic wavelength.
    pixel_scale_arcsec : float
        Detector pixel scale.
    shape : tuple of int
        Detector ``(ny, nx)``.
    center : tuple of float
        Mask centre ``(y, x)`` in 0-based pixel coordinates.
    mask : {"round", "4qpm"}
        Focal-plane mask kind.
    mask_hwhm_arcsec : float
        HWHM of the round occulter's intensity transmission (ignored for ``"4qpm"``).
    lyot_outer_m, lyot_inner_m, lyot_strut_m : float
        Lyot stop outer and obscuration diameters and strut width (m).
    n_pupil : int
        Pupil samples across the 7 m grid.
    """

    wavelength_um: float
    pixel_scale_arcsec: float
    shape: tuple[int, int]
    center: tuple[float, float]
    mask: str = "round"
    mask_hwhm_arcsec: float = 0.6
    lyot_outer_m: float = 5.2
    lyot_inner_m: float = 2.4
    lyot_strut_m: float = 0.3
    n_pupil: int = 256

    @property
    def lam_d_arcsec(self) -> float:
        """lambda/D in arcsec."""
        return self.wavelength_um * 1e-6 / TELESCOPE_D / _ARCSEC

    @property
    def pixel_lam_d(self) -> float:
        """Pixel scale in lambda/D."""
        return self.pixel_scale_arcsec / self.lam_d_arcsec


def _grid(n: int) -> NDArray[np.float64]:
    return (np.arange(n, dtype=np.float64) - (n - 1) / 2) * (_GRID_EXTENT / TELESCOPE_D / n)


def _pupils(n: int, spec: OpticsSpec) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Anti-aliased telescope pupil and Lyot stop, and the segment index of each sample (-1 outside)."""
    ss = 2
    fine = _grid(n * ss) * TELESCOPE_D
    y, x = np.meshgrid(fine, fine, indexing="ij")
    pitch = _SEGMENT_F2F + _SEGMENT_GAP
    centres = [
        (pitch * (q + r / 2), pitch * r * math.sqrt(3) / 2)
        for q in range(-2, 3)
        for r in range(-2, 3)
        if max(abs(q), abs(r), abs(q + r)) <= 2 and (q, r) != (0, 0)
    ]
    segment = np.full(y.shape, -1, dtype=np.intp)
    for k, (cx, cy) in enumerate(centres):
        ax, ay = np.abs(x - cx), np.abs(y - cy)
        segment[(ax <= _SEGMENT_F2F / 2) & (ax / 2 + ay * math.sqrt(3) / 2 <= _SEGMENT_F2F / 2)] = k

    def struts(width: float) -> NDArray[np.bool_]:
        out = np.zeros(y.shape, dtype=bool)
        for ang in np.radians(_STRUT_ANGLES):
            along = x * np.cos(ang) + y * np.sin(ang)
            out |= (along > 0) & (np.abs(-x * np.sin(ang) + y * np.cos(ang)) < width / 2)
        return out

    r = np.hypot(x, y)
    pupil = (segment >= 0) & ~struts(_STRUT_WIDTH)
    lyot = (r <= spec.lyot_outer_m / 2) & (r >= spec.lyot_inner_m / 2) & ~struts(spec.lyot_strut_m)

    def bin2(a: NDArray[np.bool_]) -> NDArray[np.float64]:
        return a.reshape(n, ss, n, ss).mean(axis=(1, 3))

    return bin2(pupil), bin2(lyot), segment[ss // 2 :: ss, ss // 2 :: ss]


def _mft_matrix(u: NDArray[np.floating], x: NDArray[np.floating]) -> NDArray[np.complex128]:
    return np.exp(-2j * np.pi * np.outer(u, x))


@dataclass
class Coronagraph:
    """Precomputed planes and transforms of one :class:`OpticsSpec`.

    Parameters
    ----------
    spec : OpticsSpec
        Optical parameters.

    Raises
    ------
    ValueError
        If the Lyot-stopped intensity would be undersampled by the detector pixels.
    """

    spec: OpticsSpec
    pupil: NDArray[np.float64] = field(init=False)
    lyot: NDArray[np.float64] = field(init=False)
    segments: NDArray[np.intp] = field(init=False)

    def __post_init__(self) -> None:
        spec, n = self.spec, self.spec.n_pupil
        cutoff = spec.lyot_outer_m / TELESCOPE_D * spec.pixel_lam_d
        if cutoff >= 0.5:
            raise ValueError(f"intensity cut-off {cutoff:.3f} cycles/pixel is not Nyquist-sampled")
        self.pupil, self.lyot, self.segments = _pupils(n, spec)
        self.x = _grid(n)
        self.dx = self.x[1] - self.x[0]
        rows = np.flatnonzero(self.lyot.any(axis=1))
        self._crop = slice(rows[0], rows[-1] + 1)  # the Lyot stop is symmetric: same box in x
        self._norm = float(np.sum((self.pupil * self.lyot) ** 2)) * self.dx**2
        if spec.mask == "round":
            hw = spec.mask_hwhm_arcsec / spec.lam_d_arcsec
            self._a = -math.log(1 - 1 / math.sqrt(2)) / hw**2
            du, half = 0.25, 4 * hw
        elif spec.mask == "4qpm":
            du, half = 0.25, 64.0
        else:
            raise ValueError(f"unknown mask {spec.mask!r}; expected 'round' or '4qpm'")
        m = 2 * math.ceil(half / du)
        self.u = (np.arange(m) - (m - 1) / 2) * du
        self._w = _mft_matrix(self.u, self.x)
        self._du = du
        uy, ux = np.meshgrid(self.u, self.u, indexing="ij")
        if spec.mask == "round":
            self._focal = np.exp(-self._a * (uy**2 + ux**2))  # blocked amplitude (Babinet)
        else:
            self._focal = np.sign(uy) * np.sign(ux)
        self._star_mats = self._detector_matrices(*spec.center)
        self._zernike = self._zernike_basis()
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")) / self.dx  # cycles per D
        self._ripple_amp = np.where((f >= 2) & (f <= 0.4 / self.dx), 1 / np.maximum(f, 1.0), 0.0)

    def _detector_matrices(self, yc: float, xc: float) -> tuple[NDArray[np.complex64], NDArray[np.complex64]]:
        ny, nx = self.spec.shape
        s = self.spec.pixel_lam_d
        xs = self.x[self._crop]
        ay = _mft_matrix((np.arange(ny) - yc) * s, xs).astype(np.complex64)
        ax = _mft_matrix((np.arange(nx) - xc) * s, xs).astype(np.complex64)
        return ay, ax

    def pupil_field(self, phase_nm: NDArray[np.floating]) -> NDArray[np.complex128]:
        """Entrance-pupil field for an optical-path map (nm)."""
        return self.pupil * np.exp(2j * np.pi * phase_nm / (self.spec.wavelength_um * 1e3))

    def lyot_field(self, phase_nm: NDArray[np.floating]) -> NDArray[np.complex128]:
        """Field after the focal-plane mask and the Lyot stop (on-axis star)."""
        e = self.pupil_field(phase_nm)
        w = self._w
        focal = (w @ e @ w.T) * self.dx**2 * self._focal
        back = (w.conj().T @ focal @ w.conj()) * self._du**2
        e = e - back if self.spec.mask == "round" else back
        return e * self.lyot

    def _image(
        self, e_lyot: NDArray[np.complex128], mats: tuple[NDArray[np.complex64], NDArray[np.complex64]]
    ) -> NDArray[np.float64]:
        ay, ax = mats
        crop = e_lyot[self._crop, self._crop].astype(np.complex64)
        field_ = (ay @ crop @ ax.T).astype(np.complex128) * self.dx**2
        return np.abs(field_) ** 2 * (self.spec.pixel_lam_d**2 / self._norm)

    def star_point_image(self, phase_nm: NDArray[np.floating]) -> NDArray[np.float64]:
        """Coronagraphic image of a star on the mask centre, sampled at pixel centres.

        Parameters
        ----------
        phase_nm : ndarray, (n_pupil, n_pupil) float
            Pupil optical-path aberration (nm).

        Returns
        -------
        ndarray, (ny, nx) float64
            Intensity times pixel area, as a fraction of the star's total flux; pass it through
            ``fourier_shift(..., pixel_mtf=True)`` to integrate over the pixels.
        """
        return self._image(self.lyot_field(phase_nm), self._star_mats)

    def offaxis_point_image(self, phase_nm: NDArray[np.floating], y: float, x: float) -> NDArray[np.float64]:
        """Unocculted PSF through the Lyot stop centred at pixel ``(y, x)``, like :meth:`star_point_image`."""
        e = self.pupil_field(phase_nm) * self.lyot
        return self._image(e, self._detector_matrices(y, x))

    def transmission(self, y: NDArray[np.floating] | float, x: NDArray[np.floating] | float) -> NDArray[np.float64]:
        """Intensity transmission of the focal-plane mask at detector pixel ``(y, x)``."""
        s = self.spec.pixel_lam_d
        uy = (np.asarray(y, dtype=float) - self.spec.center[0]) * s
        ux = (np.asarray(x, dtype=float) - self.spec.center[1]) * s
        if self.spec.mask == "round":
            return np.asarray((1 - np.exp(-self._a * (uy**2 + ux**2))) ** 2)
        edge = np.minimum(np.abs(uy), np.abs(ux))
        return np.asarray((1 - np.exp(-(uy**2 + ux**2))) * (1 - 0.5 * np.exp(-((edge / 0.6) ** 2))))

    def _zernike_basis(self) -> NDArray[np.float64]:
        """Eight low-order modes (defocus .. spherical), unit rms over the pupil, (8, n, n)."""
        y, x = np.meshgrid(self.x, self.x, indexing="ij")
        rho = np.hypot(x, y) / (3.4 / TELESCOPE_D)
        th = np.arctan2(y, x)
        modes = np.stack(
            [
                2 * rho**2 - 1,
                rho**2 * np.cos(2 * th),
                rho**2 * np.sin(2 * th),
                (3 * rho**3 - 2 * rho) * np.cos(th),
                (3 * rho**3 - 2 * rho) * np.sin(th),
                rho**3 * np.cos(3 * th),
                rho**3 * np.sin(3 * th),
                6 * rho**4 - 6 * rho**2 + 1,
            ]
        )
        return modes / self._rms(modes)[:, None, None]

    def _rms(self, maps: NDArray[np.float64]) -> NDArray[np.float64]:
        w = self.pupil > 0
        sel = maps[..., w]
        return np.asarray(np.sqrt(np.mean((sel - sel.mean(axis=-1, keepdims=True)) ** 2, axis=-1)))

    def aberration(
        self, rng: np.random.Generator, *, low_nm: float, segment_nm: float, ripple_nm: float
    ) -> NDArray[np.float64]:
        """Random optical-path map (nm): low-order + segment piston/tip/tilt + mid-frequency ripple.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness.
        low_nm, segment_nm, ripple_nm : float
            rms over the pupil of each component.

        Returns
        -------
        ndarray, (n_pupil, n_pupil) float64
        """
        n = self.spec.n_pupil
        low = np.tensordot(rng.standard_normal(8), self._zernike, axes=1)
        y, x = np.meshgrid(self.x, self.x, indexing="ij")
        nseg = int(self.segments.max()) + 1
        coef = rng.standard_normal((3, nseg + 1))
        coef[:, -1] = 0.0  # index -1 (outside) -> 0
        seg = coef[0][self.segments] + (coef[1][self.segments] * x + coef[2][self.segments] * y) * 5.0
        noise = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
        ripple = np.fft.ifft2(noise * self._ripple_amp).real
        parts = np.stack([low, seg, ripple])
        scale = np.array([low_nm, segment_nm, ripple_nm]) / self._rms(parts)
        return np.asarray(np.tensordot(scale, parts, axes=1) * (self.pupil > 0))
