"""The drizzle geometry of one resample: the output grid and, per exposure, its WCS and pixel range.

Header math at graph-build time (no pixels): :func:`resample_grid` chooses every input's WCS
(its gWCS when usable, else the SCI header's FITS WCS), builds the output grid (spec section
8.3) and the output/input pixel-scale ratio; :func:`exposure_pixmap` is the body of the one
pixel-map task per exposure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coron3_dask.wcs.footprints import footprints, output_sregion
from coron3_dask.wcs.input_wcs import exposure_wcs, is_gwcs, pixmap, wcs_from_header
from coron3_dask.wcs.output_grid import mean_pixel_scale, output_grid, output_header

__all__ = ["ResampleGrid", "exposure_pixmap", "grid_sregion", "resample_grid"]


@dataclass(frozen=True)
class ResampleGrid:
    """Output grid and per-exposure input geometry of one resample.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Output (distortion-free TAN) WCS.
    header : dict
        Its header cards (what the pixel-map tasks rebuild it from).
    shape : tuple of int
        Output ``(ny, nx)``.
    pixel_scale_ratio : float
        Output / input pixel scale as drizzle uses it.
    sources : list
        Per exposure, what a task needs to rebuild its WCS: the gWCS, or the SCI header dict.
    wcss : list
        Per exposure, the WCS object itself (gWCS or FITS WCS).
    bounds : list
        Per exposure, the usable input pixel range ``(xmin, xmax, ymin, ymax)`` from a gWCS
        bounding box, or None.
    """

    wcs: Any
    header: dict[str, Any]
    shape: tuple[int, int]
    pixel_scale_ratio: float
    sources: list[Any]
    wcss: list[Any]
    bounds: list[tuple[int, int, int, int] | None]


def _bounds(wcs: Any, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Input pixel range from a gWCS bounding box (stcal ``resample_range``); None for FITS WCSs."""
    bbox = getattr(wcs, "bounding_box", None) if is_gwcs(wcs) else None
    if bbox is None:
        return None
    try:
        (x1, x2), (y1, y2) = bbox.bounding_box(order="F")
    except AttributeError:
        (x1, x2), (y1, y2) = tuple(bbox)
    xmin, ymin = max(0, int(x1 + 0.5)), max(0, int(y1 + 0.5))
    return (xmin, max(xmin, min(shape[1] - 1, int(x2 + 0.5))), ymin, max(ymin, min(shape[0] - 1, int(y2 + 0.5))))


def resample_grid(
    exposures: Sequence[Mapping[str, Any]],
    shapes: Sequence[tuple[int, int]],
    *,
    rotation: float | None = None,
    pixel_scale_ratio: float = 1.0,
    pixel_scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    crpix: tuple[float, float] | None = None,
    crval: tuple[float, float] | None = None,
) -> ResampleGrid:
    """Choose every input's WCS and build the output grid (jwst 3.0.0 ``ResampleStep``).

    Parameters
    ----------
    exposures : sequence of mapping
        Each exposure's attrs: ``sci_header`` and optionally ``asdf_wcs``.
    shapes : sequence of (ny, nx)
        Each exposure's frame shape.
    rotation, pixel_scale_ratio, pixel_scale, output_shape, crpix, crval
        The resample parameters of the same names (see :func:`~coron3_dask.wcs.output_grid`).

    Returns
    -------
    ResampleGrid

    Raises
    ------
    ValueError
        No exposures, or exposures and shapes of different lengths.
    """
    if not exposures or len(exposures) != len(shapes):
        raise ValueError(f"resample needs one shape per exposure and at least one exposure, got {len(shapes)}")
    headers = [dict(attrs["sci_header"]) for attrs in exposures]
    wcss = [exposure_wcs(attrs) for attrs in exposures]
    sources = [w if is_gwcs(w) else h for w, h in zip(wcss, headers, strict=True)]
    # every integration of an exposure shares its footprint: one entry per exposure suffices
    out_wcs, out_shape = output_grid(
        headers,
        shapes,
        wcs_list=wcss,
        rotation=rotation,
        pixel_scale_ratio=pixel_scale_ratio,
        pixel_scale=pixel_scale,
        output_shape=output_shape,
        crpix=crpix,
        crval=crval,
    )
    if pixel_scale is None:
        ratio = float(pixel_scale_ratio)
    else:
        ratio = pixel_scale / 3600.0 / mean_pixel_scale(wcss[0], shapes[0])
    return ResampleGrid(
        wcs=out_wcs,
        header=output_header(out_wcs),
        shape=out_shape,
        pixel_scale_ratio=ratio,
        sources=sources,
        wcss=wcss,
        bounds=[_bounds(w, s) for w, s in zip(wcss, shapes, strict=True)],
    )


def exposure_pixmap(source: Any, shape: tuple[int, int], out_header: Mapping[str, Any]) -> NDArray[np.float64]:
    """Task body: pixel map of one exposure onto the output grid.

    Parameters
    ----------
    source : gwcs.WCS or mapping
        The exposure's gWCS, or its SCI header cards.
    shape : (ny, nx)
        Input frame shape.
    out_header : mapping
        Output WCS cards (:attr:`ResampleGrid.header`).

    Returns
    -------
    ndarray, (ny, nx, 2) float64
        Output pixel coordinates of every input pixel centre.
    """
    in_wcs = wcs_from_header(source) if isinstance(source, Mapping) else source
    return pixmap(in_wcs, shape, wcs_from_header(out_header))


def grid_sregion(
    grid: ResampleGrid, exposures: Sequence[Mapping[str, Any]], shapes: Sequence[tuple[int, int]], n_ints: Sequence[int]
) -> str | None:
    """Return the i2d ``S_REGION``: the union of every input image's footprint, clipped to the grid.

    Parameters
    ----------
    grid : ResampleGrid
        From :func:`resample_grid`.
    exposures : sequence of mapping
        Each exposure's attrs (``sci_header``).
    shapes : sequence of (ny, nx)
        Each exposure's frame shape.
    n_ints : sequence of int
        Each exposure's integrations (each a drizzled image).

    Returns
    -------
    str or None
        ``POLYGON ICRS ...`` (stcal ``combine_sregions``), None if nothing overlaps.
    """
    # one footprint per input image, as jwst lists them (the union's vertex order depends on it)
    polygons = [
        p
        for attrs, s, w, n in zip(exposures, shapes, grid.wcss, n_ints, strict=True)
        for _ in range(n)
        for p in footprints(attrs["sci_header"], s, w)
    ]
    return output_sregion(polygons, grid.wcs, grid.shape)
