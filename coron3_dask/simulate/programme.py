"""Deterministic synthetic JWST coronagraphic programmes in the real stage-2 on-disk layout.

:func:`simulate_programme` writes, for one target observed at ``n_rolls`` telescope rolls
and one PSF reference star on a small-grid dither, one ``_calints.fits`` per exposure
(real names, keywords, SCI/ERR/DQ/VAR_*/AREA/INT_TIMES), a PSFMASK reference file, the
contrast-calibration files (normalised off-axis PSF model, mask transmission map), the
coron3 association JSON and ``truth.json`` with everything a test needs.

Model (optics in :mod:`coron3_dask.simulate.optics`):

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
  per exposure), plus optional Gaussian jitter per integration (``jitter_px``, its own random stream).
  *Simplification*: an offset is a pure detector-plane shift of the whole
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

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from coron3_dask import dq, files, schema
from coron3_dask.files import records
from coron3_dask.kernels.shift import fourier_shift
from coron3_dask.simulate.exposures import SimulatedProgramme, exposure_headers, int_times, write_products
from coron3_dask.simulate.instrument import (
    STREAMS,
    coronagraph,
    coronagraphic_psf,
    offaxis_psf,
    psfmask,
    speckle_step,
    static_aberration,
)
from coron3_dask.simulate.plan import TARGET, exposure_times, plan_exposures
from coron3_dask.simulate.presets import DEFAULT_COMPANIONS, PRESETS, Companion, Preset, resolve_preset
from coron3_dask.wcs.tan import offset_sky, pc_matrix, sky_to_pixel

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
    jitter_px: float = 0.0,
    background: float | None = None,
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
    jitter_px : float
        rms per axis (px) of a random pointing jitter added to every integration's offset (science and
        reference), drawn from its own stream; 0 (default) leaves every other draw and file unchanged.
    background : float, optional
        Sky background, e-/s/pixel (default: the preset's); 0 models data whose background was
        subtracted before stage 3 (as MIRI coronagraphy does with background observations).

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
    p = resolve_preset(preset)
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
    _check("background", background is None or (math.isfinite(background) and background >= 0), "finite and >= 0")
    _check("read_noise, flat_error, drift_px_per_int", min(read_noise, flat_error, drift_px_per_int) >= 0, ">= 0")
    _check("jitter_px", isinstance(jitter_px, int | float) and 0 <= jitter_px < math.inf, "finite and >= 0")
    _check("speckle_drift_nm", len(speckle_drift_nm) == 2 and min(speckle_drift_nm) >= 0, "two values >= 0")
    _check("pointing_offset_px", 0 <= pointing_offset_px[0] <= pointing_offset_px[1], "(low, high), 0 <= low <= high")
    comps = DEFAULT_COMPANIONS if companions is None else tuple(companions)
    _check(
        "companions",
        all(isinstance(c, Companion) and c.separation_arcsec > 0 and c.contrast > 0 for c in comps),
        "Companion objects with separation > 0 and contrast > 0",
    )

    out = Path(out_dir)
    rngs = {k: np.random.default_rng([seed, v]) for k, v in STREAMS.items() if k != "noise"}
    ratio = float(rngs["flux"].uniform(1.5, 3.0)) if ref_flux_ratio is None else float(ref_flux_ratio)
    flux = p.star_flux if star_flux is None else float(star_flux)
    plan = plan_exposures(
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
        jitter=float(jitter_px),
        jitter_rng=rngs["jitter"],
    )
    optics = coronagraph(p)
    static = static_aberration(optics, seed)
    dq_frame, nan_mask = _detector_mask(p, bad_pixel_fraction, rngs["badpix"])
    flat = 1 + flat_error * rngs["badpix"].standard_normal(p.shape)
    ny, nx = p.shape
    yy, xx = np.indices(p.shape, dtype=float)
    sky_level = p.background if background is None else background
    bkg = sky_level * (1 + 0.05 * (xx - nx / 2) / nx + 0.03 * (yy - ny / 2) / ny)
    area = (1 + 2e-3 * (xx - nx / 2) / nx - 1e-3 * (yy - ny / 2) / ny).astype(schema.FLOAT_DTYPE)
    _, eff, t_int = exposure_times(p)
    conv = p.photmjsr / (eff * p.gain)  # e- per integration -> MJy/sr
    sky = [offset_sky(TARGET[1], TARGET[2], c.separation_arcsec, c.position_angle_deg) for c in comps]
    wcs, placed = {}, {}
    for e in plan:  # WCS of every exposure and companion pixels, checked before anything is written
        mean = e.offset.mean(axis=0)
        wcs[e.file] = ((p.mask_center[1] + mean[1] + 1, p.mask_center[0] + mean[0] + 1), pc_matrix(e.roll, p.v3i_yang))
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
    out = records.ensure_dir(out, "simulation directory")
    phase, exposures, cosmic = static.copy(), [], []
    for k, e in enumerate(plan):
        mean = e.offset.mean(axis=0)
        crpix, pc = wcs[e.file]
        prim, sci_hdr = exposure_headers(p, e, n_dither, crpix, pc)
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
        phase = phase + speckle_step(optics, rngs["speckle"], speckle_drift_nm[0])
        cube = {k: np.empty((e.nints, ny, nx), dtype=schema.FLOAT_DTYPE) for k in ("sci", "vp", "vf")}
        for i in range(e.nints):
            phase = phase + speckle_step(optics, rngs["speckle"], speckle_drift_nm[1])
            dy, dx = e.offset[i]
            scene = fourier_shift(optics.star_point_image(phase) + companion_point, dx, dy, pixel_mtf=True)
            model = np.clip((scene * e.flux + bkg) * flat, 0, None) * eff
            noise = np.random.default_rng([seed, STREAMS["noise"], k, i])  # a stream per integration
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
        files.write_fits(
            out / e.file,
            prim,
            [
                files.Extension("SCI", cube["sci"], sci_hdr),
                files.Extension("ERR", err, {"BUNIT": "MJy/sr"}),
                files.Extension("DQ", np.repeat(dq_frame[None], e.nints, axis=0)),
                files.Extension("AREA", area),
                files.Extension("VAR_POISSON", cube["vp"], var),
                files.Extension("VAR_RNOISE", vr, var),
                files.Extension("VAR_FLAT", cube["vf"], var),
                files.Extension("INT_TIMES", int_times(e.start, e.nints, t_int), table=True),
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
    return write_products(out, p, plan, params, comps, sky, exposures, cosmic, dq_frame, ratio, flux, optics, static)


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {what}")


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
            y, x = round(y0 + k * math.sin(ang)), round(x0 + k * math.cos(ang))
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                hits.add((y, x))
    return sorted(hits)
