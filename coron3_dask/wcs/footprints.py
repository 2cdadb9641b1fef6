"""Sky footprints of resample inputs and the ``S_REGION`` of its output.

Input footprints follow jwst ``multi_sregion_to_list`` and stcal ``sregion_to_footprint``
(the ``S_REGION`` card, else the image corners through the WCS); the output ``S_REGION``
follows stcal ``combine_sregions``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from astropy.wcs import WCS
from numpy.typing import NDArray

from coron3_dask.schema import card_value
from coron3_dask.wcs.input_wcs import pixel_to_radec, wcs_from_header

__all__ = ["footprints", "output_sregion", "sregion_polygons"]


def sregion_polygons(s_region: str) -> list[NDArray[np.float64]]:
    """Vertices of every polygon of an ``S_REGION`` string.

    Parameters
    ----------
    s_region : str
        ``"POLYGON ICRS ra1 dec1 ra2 dec2 ..."``, possibly several polygons.

    Returns
    -------
    list of ndarray, each (vertex, 2) float64
        (RA, Dec) in degrees; empty when the string holds no polygon.

    Notes
    -----
    jwst ``multi_sregion_to_list`` + stcal ``sregion_to_footprint``: every alphabetic
    token is dropped and the numbers are read in pairs.
    """
    polygons = []
    for part in re.split(r"(?i)polygon", s_region):
        numbers = re.sub(r"[a-zA-Z]", " ", part).split()
        if numbers:
            polygons.append(np.array(numbers, dtype=np.float64).reshape(-1, 2))
    return polygons


def footprints(header: Mapping[str, Any], shape: tuple[int, int], wcs: Any = None) -> list[NDArray[np.float64]]:
    """Sky footprint polygons of one input image.

    Parameters
    ----------
    header : mapping
        SCI header; its ``S_REGION`` is used when present.
    shape : (ny, nx)
        Image shape, for the fallback.
    wcs : WCS-like, optional
        Used for the fallback; built from ``header`` when omitted.

    Returns
    -------
    list of ndarray, each (vertex, 2)
        The ``S_REGION`` polygons, or the four outer corners (-0.5 .. n-0.5) mapped
        through the WCS, in gWCS ``footprint`` order, when ``S_REGION`` is absent.
    """
    s_region = header.get("S_REGION")
    if s_region:
        polygons = sregion_polygons(str(card_value(s_region)))
        if polygons:
            return polygons
    if wcs is None:
        wcs = wcs_from_header(header)
    ny, nx = shape
    x = np.array([-0.5, -0.5, nx - 0.5, nx - 0.5])
    y = np.array([-0.5, ny - 0.5, ny - 0.5, -0.5])
    ra, dec = pixel_to_radec(wcs, x, y)
    return [np.column_stack([ra % 360.0, dec])]


def output_sregion(polygons: Sequence[NDArray[np.float64]], wcs: WCS, shape: tuple[int, int]) -> str | None:
    """``S_REGION`` of the output: union of input footprints clipped to the output frame.

    Parameters
    ----------
    polygons : sequence of ndarray, each (vertex, 2)
        Input footprints (RA, Dec) in degrees.
    wcs : astropy.wcs.WCS
        Output WCS.
    shape : (ny, nx)
        Output shape.

    Returns
    -------
    str or None
        ``"POLYGON ICRS  ra dec ..."`` (9 decimals, several polygons when disjoint);
        ``None`` when the union does not overlap the output.

    Notes
    -----
    stcal ``combine_sregions`` (shapely union in output pixel coordinates, intersection
    with the output bounding box, collinear-vertex simplification).
    """
    ny, nx = shape
    box = np.array([[-0.5, -0.5], [-0.5, ny - 0.5], [nx - 0.5, ny - 0.5], [nx - 0.5, -0.5]])
    pix = [np.column_stack(wcs.wcs_world2pix(p[:, 0], p[:, 1], 0)) for p in polygons]
    union = shapely.unary_union([shapely.geometry.Polygon(p) for p in pix])
    parts = list(getattr(union, "geoms", [union]))
    clip = shapely.geometry.Polygon(box)
    final = []
    for part in parts:
        inter = shapely.intersection(shapely.geometry.Polygon(_ring(part)), clip)
        if not inter.is_empty:
            final.append(_ring(inter))
    if not final:
        return None
    strings = []
    for poly in final:
        ra, dec = wcs.wcs_pix2world(poly[:, 0], poly[:, 1], 0)
        strings.append("POLYGON ICRS  " + " ".join(f"{a:.9f} {d:.9f}" for a, d in zip(ra, dec, strict=True)))
    return "  ".join(strings)


def _ring(polygon: Any) -> NDArray[np.float64]:
    """Simplified exterior vertices of a shapely polygon (stcal ``_convert_to_array``)."""
    coords = np.asarray(polygon.exterior.coords)[:-1]
    n = len(coords)
    p0, p1, p2 = coords[np.arange(-1, n - 1)], coords, coords[np.arange(1, n + 1) % n]
    v1, v2 = p1 - p0, p2 - p1
    close = (np.abs(v1[:, 0]) < 5e-2) & (np.abs(v1[:, 1]) < 5e-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = v1[:, 1] / (v1[:, 0] + 1e-12)
        m2 = v2[:, 1] / (v2[:, 0] + 1e-12)
        delta = np.arctan((m2 - m1) / (1 + m1 * m2))
    return coords[~(close | (np.abs(delta) < 1e-6))]
