"""inject: fake companions added to every integration of a science cube (injection-recovery)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from coron3_dask import schema
from coron3_dask.kernels.inject import add_point_sources

__all__ = ["inject_companions"]


def inject_companions(
    cube: xr.DataArray,
    psf_model: np.ndarray,
    positions: Sequence[tuple[float, float]],
    fluxes: Sequence[float],
) -> xr.DataArray:
    """Add point sources at fixed detector positions to each integration of a cube.

    Parameters
    ----------
    cube : xr.DataArray, (integration, y, x) float32
        Median-replaced science cube.
    psf_model : ndarray, (h, w)
        Unit-total PSF stamp centred on its central pixel.
    positions : sequence of (float, float)
        Source positions (x, y) on this exposure's detector frame.
    fluxes : sequence of float
        Flux of each source per integration, in the cube's units summed over pixels (already
        including the coronagraph's transmission at the position).

    Returns
    -------
    xr.DataArray
        Same dims, chunks and coordinates; one task per integration.
    """
    frame = list(schema.FRAME_DIMS)
    return xr.apply_ufunc(
        add_point_sources,
        cube,
        input_core_dims=[frame],
        output_core_dims=[frame],
        kwargs={"psf_model": np.asarray(psf_model), "positions": list(positions), "fluxes": list(fluxes)},
        vectorize=True,
        dask="parallelized",
        output_dtypes=[np.float32],
    )
