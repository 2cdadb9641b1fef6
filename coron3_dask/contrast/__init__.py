"""The ``contrast`` step: S/N map, detections, calibrated contrast curve and companion photometry.

Measured on the combined product of a finished run (the KL-mode cube when the run made one,
else the i2d): matched-aperture statistics with Mawet et al. (2014) small-sample corrections
(:mod:`coron3_dask.analysis.contrast`), normalised by the host star's flux in the same aperture
(given, or estimated from the far wings of the occulted star in the science data), and
calibrated by the throughput measured by injection-recovery: fake companions are added to the
science integrations and the whole graph (alignment, KLIP, resample) is built again per
injection set; every set is computed in one ``compute`` (mapped on the cluster).
"""

from __future__ import annotations

from coron3_dask.contrast.injection import PHOTOMETRY_FWHM
from coron3_dask.contrast.measure import measure_contrast
from coron3_dask.contrast.model import CombinedImage, ContrastOptions, ContrastResult
from coron3_dask.contrast.products import read_combined, write_products

__all__ = [
    "PHOTOMETRY_FWHM",
    "CombinedImage",
    "ContrastOptions",
    "ContrastResult",
    "measure_contrast",
    "read_combined",
    "write_products",
]
