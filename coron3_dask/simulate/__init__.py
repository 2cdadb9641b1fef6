"""Deterministic synthetic JWST coronagraphic programmes in the real stage-2 on-disk layout.

:func:`simulate_programme` (in :mod:`coron3_dask.simulate.programme`) writes the calints, the
association, a PSFMASK, the contrast-calibration files (``_psfmodel``, ``_transmission``) and
``truth.json``; :mod:`~coron3_dask.simulate.optics` is the Fourier
optics model, :mod:`~coron3_dask.simulate.instrument` the per-preset coronagraph and PSFs,
:mod:`~coron3_dask.simulate.plan` the exposure plan, :mod:`~coron3_dask.simulate.presets` the
instrument set-ups and :mod:`~coron3_dask.simulate.exposures` the headers and files.
"""

from __future__ import annotations

from coron3_dask.simulate.programme import (
    DEFAULT_COMPANIONS,
    PRESETS,
    Companion,
    Preset,
    SimulatedProgramme,
    coronagraph,
    coronagraphic_psf,
    offaxis_psf,
    psfmask,
    simulate_programme,
    sky_to_pixel,
    static_aberration,
)

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
