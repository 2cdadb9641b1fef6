"""Deterministic synthetic JWST coronagraphic programmes in the real stage-2 on-disk layout.

:func:`simulate_programme` writes, for one target observed at ``n_rolls`` telescope rolls
and one PSF reference star on a small-grid dither, one ``_calints.fits`` per exposure
(real names, keywords, SCI/ERR/DQ/VAR_*/AREA/INT_TIMES), a PSFMASK reference file, the
coron3 association JSON and ``truth.json`` with everything a test needs.

Model (optics in :mod:`coron3_dask.kernels.optics`):

* **Coronagraph**: monochromatic Fourier optics at the filter's pivot wavelength through a
  segmented JWST pupil, a round occulter (NIRCam) or a four-quadrant phase mask (MIRI), an
  undersized Lyot stop, onto the detector; pixel-integrated exactly (the Lyot stop makes
  the image Nyquist-sampled).
* **Quasi-static speckles**: one static pupil aberration (~30 nm rms: low order, segment
  piston/tip/tilt, mid-frequency ripple) shared by target and reference, evolving as a
  random walk in time order (``speckle_drift_nm`` per exposure and per integration).
* **Pointing**: per-exposure offsets of 0.05-0.5 px in a random direction, the reference's
  small-grid dither (20 mas steps: 5-point box = centre + 4 corners, 9-point = 3x3 grid; NIRCam's
  real 9-POINT-CIRCLE puts the outer points on a circle), and a linear drift over the integrations (zero mean
  per exposure).  *Simplification*: an offset is a pure detector-plane shift of the whole
  image (a Fourier phase ramp; the star-vs-mask decentring is neglected), so the star in
  integration ``i`` sits at ``mask_center + (dy_i, dx_i)`` exactly and the shift aligning
  reference ``m`` to science ``i`` is ``offset_i - offset_m``.
* **Companions**: fixed sky positions, rotating on the detector with the roll through the
  same TAN projection as the written WCS; their image is the unocculted PSF through the
  Lyot stop, times contrast and the mask's intensity transmission, placed sub-pixel
  exactly.  They are absent from the reference star, which is 1.5-3x brighter.
* **Detector**: photon noise, read noise, a smooth background, a fixed flat-field error
  (``VAR_FLAT``), unflagged cosmic rays, fixed bad pixels (DQ ``DO_NOT_USE`` + ``HOT`` or
  ``DEAD``, NaN data) and, for MIRI, a NaN ``NON_SCIENCE`` strip.  Variances are computed
  from the noiseless model, so they are exactly those of the noise added.  ``BJD_TDB``
  times are UTC + 69.184 s (no barycentric correction).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coron3_dask import dq, io, schema
from coron3_dask.kernels.optics import Coronagraph, OpticsSpec, fourier_shift

__all__ = [
    "DEFAULT_COMPANIONS",
    "PRESETS",
    "Companion",
    "Preset",
    "SimulatedProgramme",
    "coronagraph",
    "coronagraphic_psf",
    "offaxis_psf",
    "psfmask",
    "simulate_programme",
    "sky_to_pixel",
    "static_aberration",
]

_TARGET = ("SIM-TARGET", 201.1500, -41.0500)
_REFSTAR = ("SIM-PSFREF", 199.8800, -40.2100)
_PROGRAM, _ASN_ID, _T0_MJD, _ROLL0 = "01386", "c1000", 60300.25, 284.0
_STATIC_NM = {"low_nm": 20.0, "segment_nm": 10.0, "ripple_nm": 20.0}
_STREAMS = {"static": 1, "speckle": 2, "pointing": 3, "noise": 4, "cosmic": 5, "badpix": 6, "flux": 7}


@dataclass(frozen=True, kw_only=True)
class Preset:
    """One coronagraphic mode: instrument configuration, optics and detector constants.

    Header values (``instrument`` .. ``exp_type``, ``aperture``, ``substrt``, ``axes``, ``readout``)
    are written as the JWST keywords of the same meaning; ``mask_center`` is the 0-based
    ``(y, x)`` pixel of the mask centre; ``lyot_m`` gives the Lyot stop outer and inner
    diameters and strut width in metres.
    """

    name: str
    instrument: str
    detector: str
    filter: str
    pupil: str | None
    coronmsk: str
    subarray: str
    exp_type: str
    shape: tuple[int, int]
    wavelength_um: float
    pixel_scale_arcsec: float
    mask_center: tuple[float, float]
    mask: str
    mask_hwhm_arcsec: float
    lyot_m: tuple[float, float, float]  # outer, inner diameter, strut width
    n_pupil: int
    aperture: str
    substrt: tuple[int, int]
    axes: tuple[int, int]  # FASTAXIS, SLOWAXIS
    readout: tuple[str, int, int, int, float]  # READPATT, NFRAMES, GROUPGAP, NGROUPS, TFRAME
    gain: float  # e-/DN
    photmjsr: float  # MJy/sr per DN/s
    star_flux: float  # e-/s, whole star through the Lyot stop
    background: float  # e-/s/pixel
    v2v3_ref: tuple[float, float]
    v3i_yang: float
    non_science_columns: int = 0

    def optics(self) -> OpticsSpec:
        """Optical parameters of this mode."""
        outer, inner, strut = self.lyot_m
        return OpticsSpec(
            wavelength_um=self.wavelength_um,
            pixel_scale_arcsec=self.pixel_scale_arcsec,
            shape=self.shape,
            center=self.mask_center,
            mask=self.mask,
            mask_hwhm_arcsec=self.mask_hwhm_arcsec,
            lyot_outer_m=outer,
            lyot_inner_m=inner,
            lyot_strut_m=strut,
            n_pupil=self.n_pupil,
        )


_NIRCAM: dict[str, Any] = {
    "instrument": "NIRCAM",
    "pupil": "MASKRND",
    "exp_type": "NRC_CORON",
    "mask": "round",
    "lyot_m": (5.2, 2.4, 0.3),
}
#: Approximate real values (mask centres, V2/V3, gains, PHOTMJSR are representative, not calibrated).
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="SUB320A335R",
            detector="NRCALONG",
            filter="F335M",
            coronmsk="MASKA335R",
            subarray="SUB320A335R",
            shape=(320, 320),
            wavelength_um=3.35,
            pixel_scale_arcsec=0.063,
            mask_center=(173.1, 150.2),
            mask_hwhm_arcsec=0.63,
            n_pupil=256,
            aperture="NRCA5_MASK335R",
            substrt=(492, 1502),
            axes=(-1, 2),
            readout=("BRIGHT2", 2, 0, 6, 1.06572),
            gain=1.82,
            photmjsr=0.48,
            star_flux=1.0e7,
            background=0.3,
            v2v3_ref=(120.6, -421.4),
            v3i_yang=-0.55,
            **_NIRCAM,
        ),
        Preset(
            name="SUB640A210R",
            detector="NRCA2",
            filter="F210M",
            coronmsk="MASKA210R",
            subarray="SUB640A210R",
            shape=(640, 640),
            wavelength_um=2.1,
            pixel_scale_arcsec=0.031,
            mask_center=(322.4, 319.6),
            mask_hwhm_arcsec=0.40,
            n_pupil=320,
            aperture="NRCA2_MASK210R",
            substrt=(392, 1186),
            axes=(1, -2),
            readout=("BRIGHT2", 2, 0, 3, 4.17932),
            gain=2.05,
            photmjsr=1.95,
            star_flux=9.0e6,
            background=0.05,
            v2v3_ref=(92.5, -416.9),
            v3i_yang=-0.56,
            **_NIRCAM,
        ),
        Preset(
            name="MASK1550",
            instrument="MIRI",
            detector="MIRIMAGE",
            filter="F1550C",
            pupil=None,
            coronmsk="4QPM_1550",
            subarray="MASK1550",
            exp_type="MIR_4QPM",
            shape=(224, 288),
            wavelength_um=15.5,
            pixel_scale_arcsec=0.11,
            mask_center=(112.6, 119.8),
            mask="4qpm",
            mask_hwhm_arcsec=0.0,
            lyot_m=(5.4, 1.6, 0.25),
            n_pupil=192,
            aperture="MIRIM_MASK1550",
            substrt=(1, 467),
            axes=(1, 2),
            readout=("FASTR1", 1, 0, 50, 0.23904),
            gain=4.0,
            photmjsr=1.56,
            star_flux=9.4e6,
            background=150.0,
            v2v3_ref=(-390.8, -402.6),
            v3i_yang=4.83,
            non_science_columns=24,
        ),
    )
}


@dataclass(frozen=True)
class Companion:
    """A point source at a fixed sky offset from the target (position angle east of north)."""

    separation_arcsec: float
    position_angle_deg: float
    contrast: float  # of the star's total flux


DEFAULT_COMPANIONS: tuple[Companion, ...] = (Companion(1.2, 70.0, 1.0e-4), Companion(1.8, 235.0, 5.0e-5))


@dataclass(frozen=True)
class SimulatedProgramme:
    """Paths of a simulated programme."""

    directory: Path
    asn_path: Path
    psfmask_path: Path
    truth_path: Path
    science_files: tuple[Path, ...]
    psf_files: tuple[Path, ...]
    product_name: str
    asn_id: str


def _preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset]


def coronagraph(preset: str | Preset = "SUB320A335R") -> Coronagraph:
    """Build the optical model of a preset (pupil, masks, transforms)."""
    return Coronagraph(_preset(preset).optics())


def static_aberration(optics: Coronagraph, seed: int = 0) -> NDArray[np.float64]:
    """Quasi-static pupil aberration (nm) that :func:`simulate_programme` uses for ``seed``."""
    return optics.aberration(np.random.default_rng([seed, _STREAMS["static"]]), **_STATIC_NM)


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
        Selects the static aberration (as in :func:`simulate_programme`); ignored if ``phase_nm``.
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
    return fourier_shift(optics.star_point_image(phase), offset[0], offset[1], pixel_mtf=True)


def offaxis_psf(
    preset: str | Preset = "SUB320A335R", *, position: tuple[float, float] | None = None, seed: int = 0
) -> NDArray[np.float64]:
    """Unocculted PSF through the Lyot stop at pixel ``position = (y, x)`` (default: mask centre), sum ~1."""
    optics = coronagraph(preset)
    y, x = optics.spec.center if position is None else position
    return fourier_shift(optics.offaxis_point_image(static_aberration(optics, seed), y, x), 0, 0, pixel_mtf=True)


def psfmask(preset: str | Preset = "SUB320A335R") -> NDArray[np.float32]:
    """PSFMASK weight map: 0 under the occulter core, the frame edge and NON_SCIENCE; 1 elsewhere."""
    p = _preset(preset)
    ny, nx = p.shape
    yy, xx = np.indices(p.shape, dtype=float)
    core = p.mask_hwhm_arcsec if p.mask == "round" else 1.5 * p.optics().lam_d_arcsec
    r = np.hypot(yy - p.mask_center[0], xx - p.mask_center[1]) * p.pixel_scale_arcsec / core
    weight = 1 - np.exp(-(r**4))
    edge = np.minimum.reduce([yy, xx - p.non_science_columns, ny - 1 - yy, nx - 1 - xx]) / 6.0
    weight *= np.sin(np.pi / 2 * np.clip(edge, 0, 1)) ** 2
    return weight.astype(np.float32)


def _pc(roll_deg: float, v3i_yang: float, vparity: int = -1) -> NDArray[np.float64]:
    rel = math.radians(roll_deg - vparity * v3i_yang)
    return np.array([[vparity * math.cos(rel), math.sin(rel)], [-vparity * math.sin(rel), math.cos(rel)]])


def sky_to_pixel(
    ra: float,
    dec: float,
    *,
    crval: tuple[float, float],
    crpix: tuple[float, float],
    pc: NDArray[np.float64],
    cdelt: float,
) -> tuple[float, float]:
    """FITS ``RA---TAN``/``DEC--TAN`` world -> 1-based pixel ``(x, y)`` (degrees; CDELT1 = CDELT2)."""
    a, d, a0, d0 = (math.radians(v) for v in (ra, dec, *crval))
    cosc = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    xi = math.degrees(math.cos(d) * math.sin(a - a0) / cosc)
    eta = math.degrees((math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / cosc)
    px, py = np.linalg.solve(pc, np.array([xi, eta]) / cdelt)
    return float(px + crpix[0]), float(py + crpix[1])


def _pixel_to_sky(
    px: float, py: float, crval: tuple[float, float], crpix: tuple[float, float], pc: NDArray[np.float64], cdelt: float
) -> tuple[float, float]:
    xi, eta = np.radians(pc @ np.array([px - crpix[0], py - crpix[1]]) * cdelt)
    a0, d0 = math.radians(crval[0]), math.radians(crval[1])
    rho = math.hypot(xi, eta)
    c = math.atan(rho)
    dec = math.asin(math.cos(c) * math.sin(d0) + (eta * math.sin(c) * math.cos(d0) / rho if rho else 0.0))
    ra = a0 + math.atan2(xi * math.sin(c), rho * math.cos(d0) * math.cos(c) - eta * math.sin(d0) * math.sin(c))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def _offset_sky(ra: float, dec: float, sep_arcsec: float, pa_deg: float) -> tuple[float, float]:
    a0, d0, rho, pa = math.radians(ra), math.radians(dec), math.radians(sep_arcsec / 3600), math.radians(pa_deg)
    d = math.asin(math.sin(d0) * math.cos(rho) + math.cos(d0) * math.sin(rho) * math.cos(pa))
    a = a0 + math.atan2(math.sin(pa) * math.sin(rho) * math.cos(d0), math.cos(rho) - math.sin(d0) * math.sin(d))
    return math.degrees(a) % 360.0, math.degrees(d)


def _iso(mjd: float) -> tuple[str, str]:
    t = dt.datetime(1858, 11, 17) + dt.timedelta(days=mjd)
    return t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S.%f")[:12]


def _times(p: Preset) -> tuple[float, float, float]:
    """TGROUP, effective integration time and integration duration (incl. one reset frame), s."""
    _, nframes, groupgap, ngroups, tframe = p.readout
    tgroup = (nframes + groupgap) * tframe
    return tgroup, (ngroups - 1) * tgroup, ngroups * tgroup + tframe


@dataclass
class _Exposure:
    file: str
    observation: int
    number: int
    is_psf: bool
    nints: int
    roll: float
    target: tuple[str, float, float]
    flux: float
    offset: NDArray[np.float64]  # (nints, 2) (dy, dx)
    dither: tuple[int, tuple[float, float]]  # (PATT_NUM, (dy, dx) px)
    start: float


def _plan(
    p: Preset,
    *,
    n_science_ints: int,
    n_ref_ints: int,
    n_dither: int,
    n_rolls: int,
    roll_sep: float,
    ref_ratio: float,
    star_flux: float,
    rng: np.random.Generator,
    pointing: tuple[float, float],
    drift: float,
) -> list[_Exposure]:
    step = 0.020 / p.pixel_scale_arcsec
    grid = {
        1: [(0, 0)],
        5: [(0, 0), (-1, -1), (-1, 1), (1, 1), (1, -1)],
        9: [(0, 0)] + [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)],
    }[n_dither]
    t_int = _times(p)[2]
    plan, start = [], _T0_MJD
    visits = [(1, k, True) for k in range(n_dither)] + [(2 + k, k, False) for k in range(n_rolls)]
    for obs, k, is_psf in visits:
        nints = n_ref_ints if is_psf else n_science_ints
        mag, ang = rng.uniform(*pointing), rng.uniform(0, 2 * math.pi)
        dith = np.array(grid[k]) * step if is_psf else np.zeros(2)
        rate, rang = rng.uniform(0, drift), rng.uniform(0, 2 * math.pi)
        base = mag * np.array([math.sin(ang), math.cos(ang)]) + dith
        ramp = (np.arange(nints) - (nints - 1) / 2)[:, None] * rate * np.array([math.sin(rang), math.cos(rang)])
        number = k + 1 if is_psf else 1
        act = "0a" if is_psf else "08"
        name = f"jw{_PROGRAM}{obs:03d}001_031{act}_{number:05d}_{p.detector.lower()}_calints.fits"
        plan.append(
            _Exposure(
                name,
                obs,
                number,
                is_psf,
                nints,
                _ROLL0 + (3.0 if is_psf else k * roll_sep),
                _REFSTAR if is_psf else _TARGET,
                star_flux * (ref_ratio if is_psf else 1.0),
                base + ramp,
                (k + 1 if is_psf else 1, (float(dith[0]), float(dith[1]))),
                start,
            )
        )
        start += (nints * t_int + (120.0 if not is_psf or k + 1 < n_dither else 1200.0)) / 86400
    return plan


def _headers(
    p: Preset, e: _Exposure, n_dither: int, crpix: tuple[float, float], pc: NDArray[np.float64]
) -> tuple[dict[str, Any], dict[str, Any]]:
    readpatt, nframes, groupgap, ngroups, tframe = p.readout
    tgroup, eff, t_int = _times(p)
    duration = e.nints * t_int
    end = e.start + duration / 86400
    date, time = _iso(e.start)
    pattern = (
        ("5-POINT-BOX" if p.instrument == "NIRCAM" else "5-POINT-SMALL-GRID")
        if n_dither == 5
        else (("9-POINT-CIRCLE" if p.instrument == "NIRCAM" else "9-POINT-SMALL-GRID") if n_dither == 9 else "NONE")
    )
    prim: dict[str, Any] = {
        "DATE": f"{date}T00:00:00.000",
        "ORIGIN": "coron3_dask.simulate",
        "TIMESYS": "UTC",
        "FILENAME": e.file,
        "DATAMODL": "CubeModel",
        "TELESCOP": "JWST",
        "DATE-OBS": date,
        "TIME-OBS": time,
        "PROGRAM": _PROGRAM,
        "OBSERVTN": f"{e.observation:03d}",
        "VISIT": "001",
        "VISITGRP": "03",
        "SEQ_ID": "1",
        "ACT_ID": "0a" if e.is_psf else "08",
        "EXPOSURE": f"{e.number:05d}",
        "VISIT_ID": f"{_PROGRAM}{e.observation:03d}001",
        "TEMPLATE": f"{p.instrument.title()} Coronagraphic Imaging",
        "TARGPROP": e.target[0],
        "TARGNAME": e.target[0],
        "TARGTYPE": "FIXED",
        "TARG_RA": e.target[1],
        "TARG_DEC": e.target[2],
        "INSTRUME": p.instrument,
        "DETECTOR": p.detector,
        "FILTER": p.filter,
        "PUPIL": p.pupil,
        "CORONMSK": p.coronmsk,
        "EXP_TYPE": p.exp_type,
        "EXPSTART": e.start,
        "EXPMID": (e.start + end) / 2,
        "EXPEND": end,
        "READPATT": readpatt,
        "NOUTPUTS": 1,
        "NINTS": e.nints,
        "NGROUPS": ngroups,
        "NFRAMES": nframes,
        "GROUPGAP": groupgap,
        "TFRAME": tframe,
        "TGROUP": tgroup,
        "EFFINTTM": eff,
        "EFFEXPTM": eff * e.nints,
        "TMEASURE": eff,
        "DURATION": duration,
        "IS_PSF": e.is_psf,
        "SUBARRAY": p.subarray,
        "SUBSTRT1": p.substrt[0],
        "SUBSTRT2": p.substrt[1],
        "SUBSIZE1": p.shape[1],
        "SUBSIZE2": p.shape[0],
        "FASTAXIS": p.axes[0],
        "SLOWAXIS": p.axes[1],
        "APERNAME": p.aperture,
        "PATTTYPE": "NONE",
        "SMGRDPAT": pattern if e.is_psf else "NONE",
        "PATT_NUM": e.dither[0],
        "NUMDTHPT": n_dither if e.is_psf else 1,
        "SUBPXPTS": 1,
        "XOFFSET": e.dither[1][1] * p.pixel_scale_arcsec,
        "YOFFSET": e.dither[1][0] * p.pixel_scale_arcsec,
        **{
            f"S_{step}": "COMPLETE"
            for step in ("DQINIT", "SATURA", "REFPIX", "LINEAR", "DARK", "JUMP", "RAMP", "WCS", "FLAT", "PHOTOM")
        },
    }
    if p.instrument == "NIRCAM":
        prim.update(MODULE="A", CHANNEL="LONG" if p.detector.endswith("LONG") else "SHORT")
    scale = p.pixel_scale_arcsec / 3600
    crval = (e.target[1], e.target[2])
    corners = [(-0.5, -0.5), (p.shape[1] - 0.5, -0.5), (p.shape[1] - 0.5, p.shape[0] - 0.5), (-0.5, p.shape[0] - 0.5)]
    sky = [_pixel_to_sky(x + 1, y + 1, crval, crpix, pc, scale) for x, y in corners]
    sci = {
        "BUNIT": "MJy/sr",
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRPIX1": crpix[0],
        "CRPIX2": crpix[1],
        "CRVAL1": crval[0],
        "CRVAL2": crval[1],
        "CDELT1": scale,
        "CDELT2": scale,
        "PC1_1": pc[0, 0],
        "PC1_2": pc[0, 1],
        "PC2_1": pc[1, 0],
        "PC2_2": pc[1, 1],
        "RADESYS": "ICRS",
        "RA_REF": crval[0],
        "DEC_REF": crval[1],
        "ROLL_REF": e.roll,
        "V2_REF": p.v2v3_ref[0],
        "V3_REF": p.v2v3_ref[1],
        "V3I_YANG": p.v3i_yang,
        "VPARITY": -1,
        "PA_V3": e.roll,
        "S_REGION": "POLYGON ICRS " + " ".join(f"{a:.9f} {d:.9f}" for a, d in sky),
        "PIXAR_SR": math.radians(scale) ** 2,
        "PIXAR_A2": p.pixel_scale_arcsec**2,
        "PHOTMJSR": p.photmjsr,
        "PHOTUJA2": p.photmjsr * 1e12 * math.radians(scale) ** 2 / p.pixel_scale_arcsec**2,
    }
    return prim, sci


def _step(optics: Coronagraph, rng: np.random.Generator, rms_nm: float) -> NDArray[np.float64]:
    """One random-walk step of the wavefront, total rms ``rms_nm`` (2/3 of the power in low order)."""
    return optics.aberration(
        rng, low_nm=rms_nm * math.sqrt(2 / 3), segment_nm=rms_nm / math.sqrt(6), ripple_nm=rms_nm / math.sqrt(6)
    )


def _int_times(start: float, nints: int, t_int: float) -> NDArray[np.void]:
    """INT_TIMES rows; BJD_TDB is approximated as UTC + 69.184 s (TT - UTC), with no light-time term."""
    times = np.zeros(
        nints,
        dtype=[("integration_number", "i4")]
        + [(f"int_{w}_{s}", "f8") for s in ("MJD_UTC", "BJD_TDB") for w in ("start", "mid", "end")],
    )
    times["integration_number"] = np.arange(1, nints + 1)
    for k, w in enumerate(("start", "mid", "end")):
        mjd = start + (np.arange(nints) + k / 2) * t_int / 86400
        times[f"int_{w}_MJD_UTC"], times[f"int_{w}_BJD_TDB"] = mjd, mjd + 69.184 / 86400
    return times


def _detector_mask(
    p: Preset, fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.uint32], NDArray[np.bool_]]:
    """DQ frame (bad pixels, NON_SCIENCE) and the mask of pixels whose data are NaN."""
    frame = np.zeros(p.shape, dtype=schema.DQ_DTYPE)
    frame[:, : p.non_science_columns] = dq.NON_SCIENCE | dq.DO_NOT_USE
    frame[:, : min(4, p.non_science_columns)] |= dq.PIXEL["REFERENCE_PIXEL"]
    usable = np.flatnonzero(frame.ravel() == 0)
    bad = rng.choice(usable, size=round(fraction * usable.size), replace=False)
    kind = np.where(rng.random(bad.size) < 0.5, dq.PIXEL["HOT"], dq.PIXEL["DEAD"])
    frame.ravel()[bad] = dq.DO_NOT_USE | kind
    return frame, (frame & dq.DO_NOT_USE) > 0


def _cosmic_rays(
    rng: np.random.Generator, shape: tuple[int, int], rate: float, fraction: float
) -> list[tuple[int, int]]:
    """Pixels of the cosmic-ray events of one integration (single hits and short tracks)."""
    if rng.random() >= fraction:
        return []
    hits: set[tuple[int, int]] = set()
    for _ in range(rng.poisson(rate * shape[0] * shape[1] / 1e5)):
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        length, ang = (1 if rng.random() < 0.6 else int(rng.integers(2, 7))), rng.uniform(0, 2 * math.pi)
        for k in range(length):
            y, x = int(round(y0 + k * math.sin(ang))), int(round(x0 + k * math.cos(ang)))
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                hits.add((y, x))
    return sorted(hits)


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {what}")


def simulate_programme(
    out_dir: str | Path,
    *,
    preset: str | Preset = "SUB320A335R",
    n_science_ints: int = 4,
    n_ref_ints: int = 3,
    n_dither: int = 5,
    n_rolls: int = 2,
    roll_separation_deg: float = 10.0,
    companions: Sequence[Companion] | None = None,
    seed: int = 0,
    cosmic_ray_rate: float = 30.0,
    cosmic_ray_fraction: float = 0.5,
    bad_pixel_fraction: float = 0.002,
    ref_flux_ratio: float | None = None,
    star_flux: float | None = None,
    read_noise: float = 10.0,
    flat_error: float = 0.002,
    speckle_drift_nm: tuple[float, float] = (2.0, 0.3),
    pointing_offset_px: tuple[float, float] = (0.05, 0.5),
    drift_px_per_int: float = 0.02,
) -> SimulatedProgramme:
    """Simulate a coronagraphic programme and write it to ``out_dir`` exposure by exposure.

    Parameters
    ----------
    out_dir : str or Path
        Output directory (created).
    preset : str or Preset
        ``"SUB320A335R"`` (NIRCam F335M), ``"SUB640A210R"`` (NIRCam F210M) or ``"MASK1550"`` (MIRI).
    n_science_ints, n_ref_ints : int
        Integrations per science / reference exposure (>= 1).
    n_dither : {1, 5, 9}
        Reference small-grid dither points (one exposure each).
    n_rolls : int
        Science exposures, one per telescope roll (observations 002, 003, ...).
    roll_separation_deg : float
        Roll step between successive science exposures.
    companions : sequence of Companion, optional
        Default :data:`DEFAULT_COMPANIONS`; ``[]`` for none.
    seed : int
        Seeds every random stream; equal seeds give identical files.
    cosmic_ray_rate : float
        Mean events per 100 000 pixels in an integration that is hit.
    cosmic_ray_fraction : float
        Probability that an integration is hit.
    bad_pixel_fraction : float
        Fraction of fixed bad pixels (at most 0.05).
    ref_flux_ratio : float, optional
        Reference/target flux ratio (default: uniform in 1.5-3).
    star_flux : float, optional
        Target flux in e-/s through the Lyot stop (default: the preset's).
    read_noise : float
        Read noise per integration, e-.
    flat_error : float
        Relative rms of the fixed flat-field error (``VAR_FLAT``).
    speckle_drift_nm : tuple of float
        rms wavefront random-walk step per exposure and per integration, nm.
    pointing_offset_px : tuple of float
        Range of the per-exposure pointing offset magnitude, px.
    drift_px_per_int : float
        Largest linear pointing drift per integration, px.

    Returns
    -------
    SimulatedProgramme
        Paths and names of what was written.

    Raises
    ------
    ValueError
        On invalid arguments or companions outside the frame.
    """
    params = {k: v for k, v in locals().items() if k not in ("out_dir", "preset", "companions")}
    p = _preset(preset)
    params["preset"] = p.name
    for name in ("n_science_ints", "n_ref_ints", "n_rolls"):
        _check(name, isinstance(params[name], int) and 1 <= params[name] <= 999, "an integer in 1..999")
    _check("n_dither", n_dither in (1, 5, 9), "1, 5 or 9")
    _check("seed", isinstance(seed, int) and seed >= 0, "a non-negative integer")
    _check("roll_separation_deg", math.isfinite(roll_separation_deg), "finite")
    _check("cosmic_ray_rate", cosmic_ray_rate >= 0, ">= 0")
    _check("cosmic_ray_fraction", 0 <= cosmic_ray_fraction <= 1, "in [0, 1]")
    _check("bad_pixel_fraction", 0 <= bad_pixel_fraction <= 0.05, "in [0, 0.05]")
    _check("ref_flux_ratio", ref_flux_ratio is None or ref_flux_ratio > 0, "> 0")
    _check("star_flux", star_flux is None or star_flux > 0, "> 0")
    _check("read_noise, flat_error, drift_px_per_int", min(read_noise, flat_error, drift_px_per_int) >= 0, ">= 0")
    _check("speckle_drift_nm", len(speckle_drift_nm) == 2 and min(speckle_drift_nm) >= 0, "two values >= 0")
    _check("pointing_offset_px", 0 <= pointing_offset_px[0] <= pointing_offset_px[1], "(low, high), 0 <= low <= high")
    comps = DEFAULT_COMPANIONS if companions is None else tuple(companions)
    _check(
        "companions",
        all(isinstance(c, Companion) and c.separation_arcsec > 0 and c.contrast > 0 for c in comps),
        "Companion objects with separation > 0 and contrast > 0",
    )

    out = Path(out_dir)
    rngs = {k: np.random.default_rng([seed, v]) for k, v in _STREAMS.items() if k != "noise"}
    ratio = float(rngs["flux"].uniform(1.5, 3.0)) if ref_flux_ratio is None else float(ref_flux_ratio)
    flux = p.star_flux if star_flux is None else float(star_flux)
    plan = _plan(
        p,
        n_science_ints=n_science_ints,
        n_ref_ints=n_ref_ints,
        n_dither=n_dither,
        n_rolls=n_rolls,
        roll_sep=roll_separation_deg,
        ref_ratio=ratio,
        star_flux=flux,
        rng=rngs["pointing"],
        pointing=pointing_offset_px,
        drift=drift_px_per_int,
    )
    optics = coronagraph(p)
    static = static_aberration(optics, seed)
    dq_frame, nan_mask = _detector_mask(p, bad_pixel_fraction, rngs["badpix"])
    flat = 1 + flat_error * rngs["badpix"].standard_normal(p.shape)
    ny, nx = p.shape
    yy, xx = np.indices(p.shape, dtype=float)
    bkg = p.background * (1 + 0.05 * (xx - nx / 2) / nx + 0.03 * (yy - ny / 2) / ny)
    area = (1 + 2e-3 * (xx - nx / 2) / nx - 1e-3 * (yy - ny / 2) / ny).astype(schema.FLOAT_DTYPE)
    _, eff, t_int = _times(p)
    conv = p.photmjsr / (eff * p.gain)  # e- per integration -> MJy/sr
    sky = [_offset_sky(_TARGET[1], _TARGET[2], c.separation_arcsec, c.position_angle_deg) for c in comps]
    wcs, placed = {}, {}
    for e in plan:  # WCS of every exposure and companion pixels, checked before anything is written
        mean = e.offset.mean(axis=0)
        wcs[e.file] = ((p.mask_center[1] + mean[1] + 1, p.mask_center[0] + mean[0] + 1), _pc(e.roll, p.v3i_yang))
        placed[e.file] = (
            []
            if e.is_psf
            else [
                sky_to_pixel(
                    ra,
                    dec,
                    crval=(e.target[1], e.target[2]),
                    crpix=wcs[e.file][0],
                    pc=wcs[e.file][1],
                    cdelt=p.pixel_scale_arcsec / 3600,
                )
                for ra, dec in sky
            ]
        )
        for c, (x1, y1) in zip(comps, placed[e.file], strict=False):
            if not (p.non_science_columns + 8 <= x1 - 1 - mean[1] < nx - 8 and 8 <= y1 - 1 - mean[0] < ny - 8):
                raise ValueError(f"companion {c} falls outside the {p.name} frame at roll {e.roll} deg")
    out.mkdir(parents=True, exist_ok=True)
    phase, exposures, cosmic = static.copy(), [], []
    for k, e in enumerate(plan):
        mean = e.offset.mean(axis=0)
        crpix, pc = wcs[e.file]
        prim, sci_hdr = _headers(p, e, n_dither, crpix, pc)
        companion_point, comp_truth = np.zeros(p.shape), []
        for c, (x1, y1) in zip(comps, placed[e.file], strict=False):
            yn, xn = y1 - 1 - mean[0], x1 - 1 - mean[1]  # before the pointing offset
            trans = float(optics.transmission(yn, xn))
            companion_point += c.contrast * trans * optics.offaxis_point_image(static, yn, xn)
            comp_truth.append(
                {
                    "x": x1 - 1,
                    "y": y1 - 1,
                    "transmission": trans,
                    "flux_e_per_s": c.contrast * e.flux,
                    "xy_per_integration": [[xn + o[1], yn + o[0]] for o in e.offset],
                }
            )
        phase = phase + _step(optics, rngs["speckle"], speckle_drift_nm[0])
        cube = {k: np.empty((e.nints, ny, nx), dtype=schema.FLOAT_DTYPE) for k in ("sci", "vp", "vf")}
        for i in range(e.nints):
            phase = phase + _step(optics, rngs["speckle"], speckle_drift_nm[1])
            scene = fourier_shift(optics.star_point_image(phase) + companion_point, *e.offset[i], pixel_mtf=True)
            model = np.clip((scene * e.flux + bkg) * flat, 0, None) * eff
            noise = np.random.default_rng([seed, _STREAMS["noise"], k, i])  # a stream per integration
            counts = noise.poisson(model) + noise.normal(0.0, read_noise, p.shape)
            for y, x in _cosmic_rays(rngs["cosmic"], p.shape, cosmic_ray_rate, cosmic_ray_fraction):
                charge = rngs["cosmic"].uniform(1000, 8000) + 20 * math.sqrt(model[y, x] + read_noise**2)
                counts[y, x] += charge
                if not nan_mask[y, x]:
                    cosmic.append({"file": e.file, "integration": i, "y": y, "x": x, "electrons": charge})
            cube["sci"][i], cube["vp"][i] = counts * conv, model * conv**2
            cube["vf"][i] = (flat_error * model * conv) ** 2
        vr = np.full_like(cube["sci"], (read_noise * conv) ** 2)
        for arr in (*cube.values(), vr):
            arr[:, nan_mask] = np.nan
        err = np.sqrt(cube["vp"] + vr + cube["vf"])
        var = {"BUNIT": "(MJy/sr)^2"}
        io.write_fits(
            out / e.file,
            prim,
            [
                io.Extension("SCI", cube["sci"], sci_hdr),
                io.Extension("ERR", err, {"BUNIT": "MJy/sr"}),
                io.Extension("DQ", np.repeat(dq_frame[None], e.nints, axis=0)),
                io.Extension("AREA", area),
                io.Extension("VAR_POISSON", cube["vp"], var),
                io.Extension("VAR_RNOISE", vr, var),
                io.Extension("VAR_FLAT", cube["vf"], var),
                io.Extension("INT_TIMES", _int_times(e.start, e.nints, t_int), table=True),
            ],
        )
        exposures.append(
            {
                "file": e.file,
                "exptype": "psf" if e.is_psf else "science",
                "observation": e.observation,
                "exposure": e.number,
                "nints": e.nints,
                "roll_ref_deg": e.roll,
                "targname": e.target[0],
                "target_ra_dec": [e.target[1], e.target[2]],
                "flux_e_per_s": e.flux,
                "dither_index": e.dither[0],
                "dither_offset_dxdy_px": [e.dither[1][1], e.dither[1][0]],
                "offset_dxdy_px": [[o[1], o[0]] for o in e.offset],
                "mean_offset_dxdy_px": [mean[1], mean[0]],
                "star_xy_px": [[p.mask_center[1] + o[1], p.mask_center[0] + o[0]] for o in e.offset],
                "crpix": list(crpix),
                "companions": comp_truth,
            }
        )
    return _write_products(out, p, plan, params, comps, sky, exposures, cosmic, dq_frame, ratio, flux)


def _write_products(
    out: Path,
    p: Preset,
    plan: list[_Exposure],
    params: dict[str, Any],
    comps: tuple[Companion, ...],
    sky: list[tuple[float, float]],
    exposures: list[dict[str, Any]],
    cosmic: list[dict[str, Any]],
    dq_frame: NDArray[np.uint32],
    ratio: float,
    flux: float,
) -> SimulatedProgramme:
    """Write the PSFMASK, the association and truth.json."""
    inst = p.instrument.lower()
    bad = np.argwhere(((dq_frame & dq.DO_NOT_USE) > 0) & ((dq_frame & dq.NON_SCIENCE) == 0)).tolist()
    mask_path = out / f"jwst_{inst}_psfmask_sim.fits"
    io.write_fits(
        mask_path,
        {
            "DATE": "2023-12-01T00:00:00.000",
            "FILENAME": mask_path.name,
            "DATAMODL": "PsfMaskModel",
            "TELESCOP": "JWST",
            "REFTYPE": "PSFMASK",
            "PEDIGREE": "SIMULATION",
            "DESCRIP": "Simulated PSFMASK reference file",
            "AUTHOR": "coron3_dask.simulate",
            "USEAFTER": "2022-01-01T00:00:00",
            "INSTRUME": p.instrument,
            "DETECTOR": p.detector,
            "FILTER": p.filter,
            "PUPIL": p.pupil,
            "CORONMSK": p.coronmsk,
            "EXP_TYPE": p.exp_type,
            "SUBARRAY": p.subarray,
            "SUBSTRT1": p.substrt[0],
            "SUBSTRT2": p.substrt[1],
            "SUBSIZE1": p.shape[1],
            "SUBSIZE2": p.shape[0],
            "FASTAXIS": p.axes[0],
            "SLOWAXIS": p.axes[1],
        },
        [io.Extension("SCI", psfmask(p))],
    )
    opt_elem = "-".join(sorted((v.lower() for v in (p.filter, p.pupil) if v), key=str.lower))
    subarray = "" if p.subarray == "FULL" else f"-{p.subarray.lower()}"
    product = f"jw{_PROGRAM}-{_ASN_ID}_t001_{inst}_{opt_elem}{subarray}"
    members = sorted(exposures, key=lambda x: (x["exptype"] != "science", x["file"]))
    asn = {
        "asn_type": "coron3",
        "asn_rule": f"candidate_Asn_Lv3{'NRC' if inst == 'nircam' else 'MIR'}Coron",
        "version_id": "20231221t060000",
        "code_version": "coron3_dask.simulate",
        "degraded_status": "No known degraded exposures in association.",
        "program": _PROGRAM,
        "constraints": "simulated: program 01386, one target, coronagraphic science + PSF reference",
        "asn_id": _ASN_ID,
        "target": "t001",
        "asn_pool": f"jw{_PROGRAM}_20231221t060000_pool.csv",
        "products": [
            {
                "name": product,
                "members": [
                    {
                        "expname": m["file"],
                        "exptype": m["exptype"],
                        "exposerr": "null",
                        "asn_candidate": f"[('{_ASN_ID}', 'coron')]",
                    }
                    for m in members
                ],
            }
        ],
    }
    asn_path = out / f"jw{_PROGRAM}-{_ASN_ID}_{dt.date(2023, 12, 21):%Y%m%d}t060000_coron3_00001_asn.json"
    truth = {
        "seed": params["seed"],
        "parameters": params,
        "preset": dataclasses.asdict(p),
        "conventions": "pixels are 0-based numpy (y=row, x=column), FITS/WCS pixel = +1; offsets (dx, dy) move "
        "the star toward larger indices; star position = mask_center + offset",
        "mask_center_yx": list(p.mask_center),
        "star_flux_e_per_s": flux,
        "reference_flux_ratio": ratio,
        "units": {"sci": "MJy/sr", "e_per_s_to_mjysr": p.photmjsr / p.gain},
        "bad_pixel_count": len(bad),
        "bad_pixels_yx": bad,
        "non_science_columns": p.non_science_columns,
        "companions": [
            {**dataclasses.asdict(c), "ra": ra, "dec": dec} for c, (ra, dec) in zip(comps, sky, strict=True)
        ],
        "exposures": exposures,
        "cosmic_rays": cosmic,
    }
    truth_path = out / "truth.json"
    for path, obj in ((asn_path, asn), (truth_path, truth)):
        with io.atomic_path(path) as tmp:
            tmp.write_text(json.dumps(obj, indent=1, default=float))
    return SimulatedProgramme(
        directory=out,
        asn_path=asn_path,
        psfmask_path=mask_path,
        truth_path=truth_path,
        science_files=tuple(out / e.file for e in plan if not e.is_psf),
        psf_files=tuple(out / e.file for e in plan if e.is_psf),
        product_name=product,
        asn_id=_ASN_ID,
    )
