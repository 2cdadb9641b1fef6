"""Build the lazy i2d (resample) graph of PSF-subtracted exposures, and the combined KL-mode cube."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr

from coron3_dask import schema
from coron3_dask.config import Coron3Config, ResampleParams
from coron3_dask.files import metadata
from coron3_dask.stages.resample import resample
from coron3_dask.wcs.resample_grid import exposure_pixmap, grid_sregion, resample_grid

__all__ = ["build_i2d", "combined_modes"]


def build_i2d(exposures: Sequence[xr.Dataset], params: ResampleParams | None = None) -> xr.Dataset:
    """Build the lazy i2d of PSF-subtracted exposures: output grid, drizzle graph and metadata.

    Parameters
    ----------
    exposures : sequence of xr.Dataset
        psfsub exposures in ASN order (``sci``, ``dq``, variances; attrs ``sci_header``,
        ``primary_header``, ``filename``, optionally ``asdf_wcs``).
    params : ResampleParams, optional
        Resolved ``resample`` parameters (default: jwst's defaults).

    Returns
    -------
    xr.Dataset
        Lazy ``sci``, ``err``, ``wht``, ``var_*``, ``con`` with the i2d attributes of
        :func:`coron3_dask.files.metadata.i2d_attributes`; building it reads headers only.

    Raises
    ------
    ValueError
        No exposures, or ``exptime`` weighting without exposure times (naming the file).
    """
    params = params or ResampleParams()
    if not exposures:
        raise ValueError("resample needs at least one science exposure")
    shapes = [(int(ds.sizes[schema.Y]), int(ds.sizes[schema.X])) for ds in exposures]
    n_ints = [int(ds.sizes[schema.INTEGRATION]) for ds in exposures]
    attrs = [ds.attrs for ds in exposures]
    grid = resample_grid(
        attrs,
        shapes,
        rotation=params.rotation,
        pixel_scale_ratio=params.pixel_scale_ratio,
        pixel_scale=params.pixel_scale,
        output_shape=params.output_shape,
        crpix=params.crpix,
        crval=params.crval,
    )
    weighting = [metadata.drizzle_weighting(a, params.weight_type) for a in attrs]
    pixmap = dask.delayed(exposure_pixmap, pure=True)
    drizzle: dict[str, Any] = {"pixfrac": params.pixfrac, "kernel": params.kernel, "fillval": params.fillval}
    i2d = resample(
        exposures,
        [pixmap(source, shape, grid.header) for source, shape in zip(grid.sources, shapes, strict=True)],
        out_shape=grid.shape,
        pixel_scale_ratio=grid.pixel_scale_ratio,
        bounds=grid.bounds,
        exptimes=[w[0] for w in weighting],
        sky_levels=[w[1] for w in weighting],
        weight_type=params.weight_type,
        **drizzle,
    )
    i2d.attrs = metadata.i2d_attributes(
        attrs,
        n_ints,
        grid.header,
        pixel_scale_ratio=grid.pixel_scale_ratio,
        s_region=grid_sregion(grid, attrs, shapes, n_ints),
        weight_type=params.weight_type,
        **drizzle,
    )
    return i2d


def combined_modes(
    psfsub: list[xr.Dataset], cubes: list[xr.Dataset], config: Coron3Config, i2d: xr.Dataset
) -> xr.Dataset:
    """Return the combined KL-mode cube: every truncation's psfsub resampled as the i2d is, stacked on ``mode``.

    The i2d (made from the psfsub, i.e. the first truncation) is plane 0 itself: only the other
    truncations are resampled here.
    """
    planes = [i2d] + [
        build_i2d(
            [p.assign(sci=c["sci"][m], err=c["err"][m]) for p, c in zip(psfsub, cubes, strict=True)], config.resample
        )
        for m in range(1, cubes[0].sizes["mode"])
    ]
    combined = xr.concat([p[["sci", "err", "wht"]].reset_coords(drop=True) for p in planes], "mode").assign_coords(
        truncation=cubes[0]["truncation"],
        modes_used=("mode", np.max([c["modes_used"].values for c in cubes], axis=0)),
    )
    return combined.assign_attrs(i2d.attrs, klip_cards=cubes[0].attrs["klip_cards"])
