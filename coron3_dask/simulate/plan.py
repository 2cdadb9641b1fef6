"""Observing plan of a simulated programme: exposures, rolls, dithers, pointing and timing.

One PSF reference star on a small-grid dither (observation 001, one exposure per dither
point), then the target at ``n_rolls`` telescope rolls (observations 002, 003, ...), in time
order with the real JWST exposure names of program :data:`PROGRAM`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from coron3_dask.simulate.presets import Preset

__all__ = ["ASN_ID", "PROGRAM", "TARGET", "Exposure", "exposure_times", "plan_exposures"]

#: (TARGNAME, RA, Dec) of the science target and of the PSF reference star
TARGET = ("SIM-TARGET", 201.1500, -41.0500)
_REFSTAR = ("SIM-PSFREF", 199.8800, -40.2100)
#: program number and association candidate id
PROGRAM, ASN_ID = "01386", "c1000"
#: start (MJD UTC) of the first exposure and ROLL_REF (degrees) of the first science exposure
_T0_MJD, _ROLL0 = 60300.25, 284.0


def exposure_times(p: Preset) -> tuple[float, float, float]:
    """TGROUP, effective integration time and integration duration (incl. one reset frame), s."""
    _, nframes, groupgap, ngroups, tframe = p.readout
    tgroup = (nframes + groupgap) * tframe
    return tgroup, (ngroups - 1) * tgroup, ngroups * tgroup + tframe


@dataclass
class Exposure:
    """One planned exposure.

    ``file`` is the calints name; ``observation``/``number`` the observation and exposure
    numbers; ``target`` is ``(TARGNAME, RA, Dec)``; ``flux`` the star's flux (e-/s);
    ``offset`` the pointing offset of every integration; ``dither`` the reference dither
    (``PATT_NUM``, offset); ``start`` the start time (MJD UTC).
    """

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


def plan_exposures(
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
    jitter: float = 0.0,
    jitter_rng: np.random.Generator | None = None,
) -> list[Exposure]:
    """Exposures in time order: the reference's dither points, then one science exposure per roll.

    Parameters
    ----------
    p : Preset
        Mode.
    n_science_ints, n_ref_ints, n_dither, n_rolls : int
        As in :func:`~coron3_dask.simulate.simulate_programme`.
    roll_sep : float
        Roll step between science exposures, degrees.
    ref_ratio : float
        Reference/target flux ratio.
    star_flux : float
        Target flux, e-/s.
    rng : numpy.random.Generator
        Pointing stream (offsets, drifts).
    pointing : tuple of float
        Range of the per-exposure pointing offset magnitude, px.
    drift : float
        Largest linear pointing drift per integration, px.
    jitter : float
        rms per axis (px) of a Gaussian pointing jitter added to every integration's offset.
    jitter_rng : numpy.random.Generator, optional
        Jitter stream, drawn from (in time order) only if ``jitter > 0``.

    Returns
    -------
    list of Exposure
    """
    step = 0.020 / p.pixel_scale_arcsec
    grid = {
        1: [(0, 0)],
        5: [(0, 0), (-1, -1), (-1, 1), (1, 1), (1, -1)],
        9: [(0, 0)] + [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)],
    }[n_dither]
    t_int = exposure_times(p)[2]
    plan, start = [], _T0_MJD
    visits = [(1, k, True) for k in range(n_dither)] + [(2 + k, k, False) for k in range(n_rolls)]
    for obs, k, is_psf in visits:
        nints = n_ref_ints if is_psf else n_science_ints
        mag, ang = rng.uniform(*pointing), rng.uniform(0, 2 * math.pi)
        dith = np.array(grid[k]) * step if is_psf else np.zeros(2)
        rate, rang = rng.uniform(0, drift), rng.uniform(0, 2 * math.pi)
        base = mag * np.array([math.sin(ang), math.cos(ang)]) + dith
        ramp = (np.arange(nints) - (nints - 1) / 2)[:, None] * rate * np.array([math.sin(rang), math.cos(rang)])
        offset = base + ramp
        if jitter > 0:
            if jitter_rng is None:
                raise ValueError("jitter > 0 needs jitter_rng")
            offset = offset + jitter_rng.normal(0.0, jitter, (nints, 2))
        number = k + 1 if is_psf else 1
        act = "0a" if is_psf else "08"
        name = f"jw{PROGRAM}{obs:03d}001_031{act}_{number:05d}_{p.detector.lower()}_calints.fits"
        plan.append(
            Exposure(
                name,
                obs,
                number,
                is_psf,
                nints,
                _ROLL0 + (3.0 if is_psf else k * roll_sep),
                _REFSTAR if is_psf else TARGET,
                star_flux * (ref_ratio if is_psf else 1.0),
                offset,
                (k + 1 if is_psf else 1, (float(dith[0]), float(dith[1]))),
                start,
            )
        )
        start += (nints * t_int + (120.0 if not is_psf or k + 1 < n_dither else 1200.0)) / 86400
    return plan
