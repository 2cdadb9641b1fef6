"""Output grid of resample: the TAN WCS and shape that enclose every input footprint.

Reproduces jwst 3.0.0 ``ResampleStep`` for imaging (spec section 8.3):
``jwst.resample.resample_utils.resampled_wcs_from_models`` and
``stcal.alignment.util.wcs_from_sregions`` / ``compute_scale`` /
``_compute_bounding_box_with_offsets`` and ``stcal.resample.utils.compute_mean_pixel_area``,
with the same astropy.modeling transform chain, so the grid numbers agree with jwst's to
round-off.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.modeling import models as astmodels
from astropy.wcs import WCS
from numpy.typing import NDArray

from coron3_dask.schema import card_value
from coron3_dask.wcs.footprints import footprints
from coron3_dask.wcs.input_wcs import pixel_to_radec, radec_to_pixel, wcs_from_header
from coron3_dask.wcs.tan import pc_from_angle

__all__ = ["mean_pixel_scale", "output_grid", "output_header", "reference_pixel_scale"]

_OUTPUT_CTYPE = ("RA---TAN", "DEC--TAN")


def reference_pixel_scale(wcs: Any, ra: float, dec: float) -> float:
    """Pixel scale (degrees) at a sky position: stcal ``compute_scale``.

    Parameters
    ----------
    wcs : WCS-like
        Input WCS (astropy or gWCS).
    ra, dec : float
        Position in degrees (jwst uses ``RA_REF``, ``DEC_REF`` of the first input).

    Returns
    -------
    float
        Geometric mean of the angular lengths of one-pixel steps in x and in y taken
        from the pixel that maps to (``ra``, ``dec``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value encountered in sqrt", RuntimeWarning)
        x0, y0 = (float(v) for v in radec_to_pixel(wcs, ra, dec))
    ras, decs = pixel_to_radec(wcs, np.array([x0, x0 + 1.0, x0]), np.array([y0, y0, y0 + 1.0]))
    coords = SkyCoord(ra=ras, dec=decs, unit="deg")
    xscale = abs(coords[0].separation(coords[1]).value)
    yscale = abs(coords[0].separation(coords[2]).value)
    return float(np.sqrt(xscale * yscale))


def _boundary_points(
    xmin: int, xmax: int, ymin: int, ymax: int, dx: int, dy: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points along a rectangle's edges (jwst/stcal ``_get_boundary_points``)."""
    nx = xmax - xmin + 1
    ny = ymax - ymin + 1
    sx = max(1, int(np.ceil(nx / dx)))
    sy = max(1, int(np.ceil(ny / dy)))
    x = np.concatenate(
        [
            np.linspace(xmin, xmax, sx, False),
            np.full(sy, float(xmax)),
            np.linspace(xmax, xmin, sx, False),
            np.full(sy, float(xmin)),
        ]
    )
    y = np.concatenate(
        [
            np.full(sx, float(ymin)),
            np.linspace(ymin, ymax, sy, False),
            np.full(sx, float(ymax)),
            np.linspace(ymax, ymin, sy, False),
        ]
    )
    return x, y


def _unit_vectors(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    lon, lat = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def mean_pixel_scale(wcs: Any, shape: tuple[int, int]) -> float:
    """Mean pixel scale (degrees) over an image: sqrt of stcal ``compute_mean_pixel_area``.

    Parameters
    ----------
    wcs : WCS-like
        Input WCS.
    shape : (ny, nx)
        Image shape.

    Returns
    -------
    float
        ``sqrt(sky area / pixel area)`` of the polygon through the outer pixel centres,
        sampled every <= 15 pixels, in degrees.

    Notes
    -----
    The sky area of the polygon (great-circle edges) is the sum of the solid angles of
    the triangles it forms with its centre (Van Oosterom & Strackee 1983), which is what
    ``spherical_geometry`` computes for such a convex outline.
    """
    ny, nx = shape
    xmin, xmax, ymin, ymax = 0, nx - 1, 0, ny - 1
    if xmax <= xmin or ymax <= ymin:
        raise ValueError(f"image {shape} too small to measure a mean pixel area")
    x, y = _boundary_points(
        xmin, xmax, ymin, ymax, max(min((xmax - xmin) // 4, 15), 1), max(min((ymax - ymin) // 4, 15), 1)
    )
    centre = _unit_vectors(*pixel_to_radec(wcs, np.array([0.5 * (xmin + xmax)]), np.array([0.5 * (ymin + ymax)])))[0]
    v = _unit_vectors(*pixel_to_radec(wcs, x, y))
    a, b = v, np.roll(v, -1, axis=0)
    triple = np.einsum("ij,ij->i", np.cross(a, b), np.broadcast_to(centre, a.shape))
    denom = 1.0 + a @ centre + b @ centre + np.einsum("ij,ij->i", a, b)
    area = float(abs(np.sum(2.0 * np.arctan2(triple, denom))))
    return math.degrees(math.sqrt(area / ((xmax - xmin) * (ymax - ymin))))


def _fiducial(polygons: Sequence[NDArray[np.float64]]) -> tuple[float, float]:
    """Mid-range of the unit vectors of all vertices (stcal ``_calculate_fiducial_from_spatial_footprint``)."""
    lon, lat = np.deg2rad(np.vstack(polygons)).T
    x = np.cos(lat) * np.cos(lon)
    y = np.cos(lat) * np.sin(lon)
    z = np.sin(lat)
    x_mid = (np.max(x) + np.min(x)) / 2.0
    y_mid = (np.max(y) + np.min(y)) / 2.0
    z_mid = (np.max(z) + np.min(z)) / 2.0
    lon_fid = np.rad2deg(np.arctan2(y_mid, x_mid)) % 360.0
    lat_fid = np.rad2deg(np.arctan2(z_mid, np.sqrt(x_mid**2 + y_mid**2)))
    return float(lon_fid), float(lat_fid)


def _orientation(header: Mapping[str, Any], wcs: Any, rotation: float | None) -> NDArray[np.float64]:
    """Output PC matrix (stcal ``calc_rotation_matrix``).

    From ``ROLL_REF``, ``V3I_YANG``, ``VPARITY`` of the first input; when those cards are
    missing (non-JWST headers) the parity and angle are read off the first input's local
    linear WCS instead, which is what the JWST cards encode.
    """
    keys = ("ROLL_REF", "V3I_YANG", "VPARITY")
    if all(header.get(k) is not None for k in keys):
        vparity = int(card_value(header["VPARITY"]))
        if vparity not in (1, -1):
            raise ValueError(f"VPARITY must be 1 or -1, got {vparity}")
        v3yangle = np.deg2rad(float(card_value(header["V3I_YANG"])))
        if rotation is None:
            roll_ref = np.deg2rad(float(card_value(header["ROLL_REF"])))
        else:
            roll_ref = np.deg2rad(rotation) + vparity * v3yangle
        rel = roll_ref - vparity * v3yangle
    else:
        matrix = _local_matrix(header, wcs)
        vparity = 1 if np.linalg.det(matrix) > 0 else -1
        rel = np.arctan2(matrix[0, 1], matrix[1, 1]) if rotation is None else np.deg2rad(rotation)
    return pc_from_angle(rel, vparity)


def _local_matrix(header: Mapping[str, Any], wcs: Any) -> NDArray[np.float64]:
    """Unit-determinant-magnitude linear part of the input WCS at its reference pixel (tangent-plane axes)."""
    ra0 = float(card_value(header.get("RA_REF", header.get("CRVAL1"))))
    dec0 = float(card_value(header.get("DEC_REF", header.get("CRVAL2"))))
    x0, y0 = (float(v) for v in radec_to_pixel(wcs, ra0, dec0))
    ras, decs = pixel_to_radec(wcs, np.array([x0, x0 + 1.0, x0]), np.array([y0, y0, y0 + 1.0]))
    plane = astmodels.RotateCelestial2Native(ra0, dec0, 180.0) | astmodels.Sky2Pix_TAN()
    u, v = plane(ras, decs)
    matrix = np.array([[u[1] - u[0], u[2] - u[0]], [v[1] - v[0], v[2] - v[0]]])
    return matrix / math.sqrt(abs(np.linalg.det(matrix)))


def output_grid(
    headers: Sequence[Mapping[str, Any]],
    shapes: Sequence[tuple[int, int]],
    *,
    wcs_list: Sequence[Any] | None = None,
    rotation: float | None = None,
    pixel_scale_ratio: float = 1.0,
    pixel_scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    crpix: tuple[float, float] | None = None,
    crval: tuple[float, float] | None = None,
) -> tuple[WCS, tuple[int, int]]:
    """Output TAN WCS and shape enclosing all input footprints (jwst ``ResampleStep``).

    Parameters
    ----------
    headers : sequence of mapping
        SCI headers of the inputs, first one is the reference (orientation, scale).
    shapes : sequence of (ny, nx)
        Input image shapes.
    wcs_list : sequence of WCS-like, optional
        Input WCSs (e.g. gWCSs); built from ``headers`` when omitted.
    rotation : float, optional
        Position angle (degrees) of the output y axis; ``None`` keeps the first input's
        orientation, ``0`` is North up.
    pixel_scale_ratio : float
        Output / input pixel scale (ignored when ``pixel_scale`` is given).
    pixel_scale : float, optional
        Absolute output pixel scale in arcsec.
    output_shape : (nx, ny), optional
        Output size (ResampleStep order, x first).
    crpix : (x, y), optional
        0-based output pixel of ``crval``.
    crval : (ra, dec), optional
        Reference sky position (degrees); default: centre of the footprints.

    Returns
    -------
    wcs : astropy.wcs.WCS
        Output TAN WCS (``pixel_shape`` set); no distortion.
    shape : (ny, nx)
        Output array shape.

    Raises
    ------
    ValueError
        No inputs, or the computed output is smaller than 2 pixels on a side.

    Notes
    -----
    stcal ``wcs_from_sregions``: fiducial = mid-range of the footprint unit vectors;
    scale = ``compute_scale`` at (``RA_REF``, ``DEC_REF``) of the first input times the
    ratio; PC from ``ROLL_REF - VPARITY * V3I_YANG``; transform
    ``Affine(PC) | Scale | Pix2Sky_TAN | RotateNative2Celestial(crval, 180)``; the
    footprint vertices are projected through its inverse, CRPIX (0-based) = -min and
    shape = ``int(max + 0.5)``.
    """
    if not headers:
        raise ValueError("resample needs at least one input image")
    if len(shapes) != len(headers):
        raise ValueError(f"{len(headers)} headers but {len(shapes)} shapes")
    wcss = list(wcs_list) if wcs_list is not None else [wcs_from_header(h) for h in headers]
    polygons = [p for h, s, w in zip(headers, shapes, wcss, strict=True) for p in footprints(h, s, w)]
    ref_header, ref_wcs = headers[0], wcss[0]
    fiducial = (float(crval[0]), float(crval[1])) if crval is not None else _fiducial(polygons)
    pc = _orientation(ref_header, ref_wcs, rotation)
    if pixel_scale is None:
        ra_ref = float(card_value(ref_header.get("RA_REF", ref_header.get("CRVAL1"))))
        dec_ref = float(card_value(ref_header.get("DEC_REF", ref_header.get("CRVAL2"))))
        scale = reference_pixel_scale(ref_wcs, ra_ref, dec_ref) * pixel_scale_ratio
    else:
        scale = pixel_scale / 3600.0
    transform = (
        astmodels.AffineTransformation2D(matrix=pc)
        | astmodels.Scale(scale) & astmodels.Scale(scale)
        | astmodels.Pix2Sky_TAN()
        | astmodels.RotateNative2Celestial(fiducial[0], fiducial[1], 180)
    )
    bounds = np.hstack([np.asarray(transform.inverse(*p.T)) for p in polygons])
    domain_min, domain_max = bounds.min(axis=1), bounds.max(axis=1)
    native_crpix = np.asarray(transform.inverse(*fiducial), dtype=np.float64)
    if crpix is None:
        offsets = native_crpix - domain_min
    else:
        offsets = np.asarray(crpix, dtype=np.float64) - native_crpix
    domain_max = domain_max + offsets
    if output_shape is None:
        shape = (int(domain_max[1] + 0.5), int(domain_max[0] + 0.5))
    else:
        shape = (int(output_shape[1]), int(output_shape[0]))
    if min(shape) < 2:
        raise ValueError(f"computed output shape {shape} is too small (check crpix/output_shape)")
    out = WCS(naxis=2)
    out.wcs.ctype = list(_OUTPUT_CTYPE)
    out.wcs.cunit = ["deg", "deg"]
    out.wcs.crpix = [offsets[0] + 1.0, offsets[1] + 1.0]
    out.wcs.crval = [fiducial[0], fiducial[1]]
    out.wcs.cdelt = [scale, scale]
    out.wcs.pc = pc
    out.wcs.radesys = "ICRS"
    out.wcs.set()
    out.pixel_shape = (shape[1], shape[0])
    return out, shape


def output_header(wcs: WCS) -> dict[str, Any]:
    """FITS cards of an output WCS from :func:`output_grid`.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Output TAN WCS.

    Returns
    -------
    dict
        ``WCSAXES, CTYPE1/2, CUNIT1/2, CRPIX1/2`` (1-based), ``CRVAL1/2, CDELT1/2,
        PC1_1 .. PC2_2, RADESYS`` as plain Python values, as jwst writes for an i2d.
    """
    w = wcs.wcs
    cards: dict[str, Any] = {"WCSAXES": 2}
    for i in (0, 1):
        n = i + 1
        cards[f"CTYPE{n}"] = str(w.ctype[i])
        cards[f"CUNIT{n}"] = str(w.cunit[i])
        cards[f"CRPIX{n}"] = float(w.crpix[i])
        cards[f"CRVAL{n}"] = float(w.crval[i])
        cards[f"CDELT{n}"] = float(w.cdelt[i])
    pc = w.get_pc()
    for i in (0, 1):
        for j in (0, 1):
            cards[f"PC{i + 1}_{j + 1}"] = float(pc[i, j])
    cards["RADESYS"] = str(w.radesys or "ICRS")
    return cards
