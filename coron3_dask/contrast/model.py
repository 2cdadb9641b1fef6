"""What the contrast step reads, takes and returns, and the combined image's geometry."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coron3_dask.analysis.detection import Candidate, CompanionMeasurement
from coron3_dask.wcs.input_wcs import radec_to_pixel, wcs_from_header
from coron3_dask.wcs.output_grid import mean_pixel_scale
from coron3_dask.wcs.tan import offset_sky

__all__ = ["CombinedImage", "ContrastOptions", "ContrastResult", "Sky", "mask_sources"]


@dataclass(frozen=True)
class CombinedImage:
    """A finished run's combined image: ``(mode, y, x)`` planes on the i2d grid."""

    planes: np.ndarray
    truncations: tuple[int, ...]
    sci_header: dict[str, Any]
    primary_header: dict[str, Any]
    #: ``"klmodes"`` or the i2d suffix: which product it is
    kind: str


@dataclass(frozen=True)
class ContrastOptions:
    """What the contrast step needs beyond the run's own products."""

    #: off-axis PSF model (unit total flux over the full PSF, centred on its central pixel)
    psf_model: np.ndarray
    #: matched-aperture diameter, pixels of the combined image
    fwhm: float
    #: host star total (unocculted) flux in the image units summed over pixels
    host_flux: float = 1.0
    sigma: float = 5.0
    #: injection branches (position angles) per separation
    branches: int = 3
    #: injected flux as a multiple of the aperture noise at each separation
    fake_snr: float = 20.0
    #: known companions (separation arcsec, position angle deg east of north)
    companions: tuple[tuple[float, float], ...] = ()
    throughput: bool = True
    #: detection threshold of the S/N map
    threshold: float = 5.0
    #: coronagraph intensity transmission on the detector grid (y, x); None = the run's PSFMASK
    transmission: np.ndarray | None = None


@dataclass
class ContrastResult:
    """Everything the step measured (written by ``files.contrast_products``)."""

    rows: list[dict[str, float]]
    snr: np.ndarray
    detections: list[tuple[int, Candidate]]
    companions: list[tuple[int, tuple[float, float], CompanionMeasurement, float]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sky:
    """The combined image's geometry: its WCS (built once), the star's pixel, the pixel scale, sky offsets to pixels."""

    image: CombinedImage

    @functools.cached_property
    def wcs(self) -> Any:
        """The image's FITS WCS."""
        return wcs_from_header(self.image.sci_header)

    @property
    def target(self) -> tuple[float, float]:
        """Target (RA, Dec), degrees."""
        return float(self.image.primary_header["TARG_RA"]), float(self.image.primary_header["TARG_DEC"])

    @property
    def star(self) -> tuple[float, float]:
        """Pixel (x, y) of the target star (TARG_RA/TARG_DEC through the image's WCS)."""
        x, y = radec_to_pixel(self.wcs, *self.target)
        return float(x), float(y)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Mean pixel scale of the image, arcsec (``wcs.output_grid.mean_pixel_scale``)."""
        return mean_pixel_scale(self.wcs, self.image.planes.shape[-2:]) * 3600.0

    def pixel(self, sep_arcsec: float, pa_deg: float) -> tuple[float, float]:
        """Pixel (x, y) of a sky offset from the target (separation, position angle east of north)."""
        x, y = radec_to_pixel(self.wcs, *offset_sky(*self.target, sep_arcsec, pa_deg))
        return float(x), float(y)


def mask_sources(planes: np.ndarray, positions: Sequence[tuple[float, float]], radius: float) -> np.ndarray:
    """Return copies of the planes with NaN disks at ``positions`` (x, y)."""
    if not positions:
        return planes
    yy, xx = np.indices(planes.shape[1:])
    hidden = np.zeros(planes.shape[1:], dtype=bool)
    for x, y in positions:
        hidden |= (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    return np.where(hidden, np.nan, planes)
