"""WCS helpers for resample: input WCSs from headers, the output grid, pixel maps, S_REGION.

Everything here is header math (cheap, no pixels) except :func:`pixmap`, which evaluates the
input and output WCSs at every input pixel centre and is meant to run inside a Dask task.

The output grid reproduces jwst 3.0.0 ``ResampleStep`` for imaging (spec section 8.3):
``jwst.resample.resample_utils.resampled_wcs_from_models`` and
``stcal.alignment.util.wcs_from_sregions`` / ``compute_scale`` /
``_compute_bounding_box_with_offsets`` and ``stcal.resample.utils.compute_mean_pixel_area``,
with the same astropy.modeling transform chain, so the grid numbers agree with jwst's to
round-off.  Input WCSs are astropy FITS WCSs built from the calints SCI header (SIP
distortion included when present) or, when the caller supplies one, a gWCS object.

This module gathers the public names of :mod:`coron3_dask.wcs.input_wcs` (input WCSs and
:func:`pixmap`), :mod:`coron3_dask.wcs.footprints` (footprints and ``S_REGION``) and
:mod:`coron3_dask.wcs.output_grid` (output WCS, shape, pixel scales and header cards).
"""

from __future__ import annotations

from coron3_dask.wcs.footprints import footprints, output_sregion, sregion_polygons
from coron3_dask.wcs.input_wcs import exposure_wcs, is_gwcs, pixmap, wcs_from_header
from coron3_dask.wcs.output_grid import mean_pixel_scale, output_grid, output_header, reference_pixel_scale

__all__ = [
    "exposure_wcs",
    "footprints",
    "is_gwcs",
    "mean_pixel_scale",
    "output_grid",
    "output_header",
    "output_sregion",
    "pixmap",
    "reference_pixel_scale",
    "sregion_polygons",
    "wcs_from_header",
]
