"""Coronagraphic modes and companions of the simulator.

:class:`Preset` holds one mode's instrument configuration, optics and detector constants;
:data:`PRESETS` has the NIRCam ``SUB320A335R`` (F335M) and ``SUB640A210R`` (F210M) and the
MIRI ``MASK1550`` (F1550C) modes.  :class:`Companion` is a point source at a fixed sky offset
from the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coron3_dask.simulate.optics import OpticsSpec

__all__ = ["DEFAULT_COMPANIONS", "PRESETS", "Companion", "Preset", "resolve_preset"]


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


def resolve_preset(preset: str | Preset) -> Preset:
    """Look up a preset by name (a :class:`Preset` is returned as is).

    Parameters
    ----------
    preset : str or Preset
        A key of :data:`PRESETS`, or a :class:`Preset`.

    Returns
    -------
    Preset

    Raises
    ------
    ValueError
        If ``preset`` is an unknown name.
    """
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset]
