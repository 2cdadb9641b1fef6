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
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.modeling import models as astmodels
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import NDArray

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

#: header cards that describe a 2-D celestial FITS WCS (with SIP), axes 1 and 2 only
_WCS_CARD = re.compile(
    r"^(CTYPE[12]|CUNIT[12]|CRPIX[12]|CRVAL[12]|CDELT[12]|PC[12]_[12]|CD[12]_[12]|PV[12]_\d+"
    r"|RADESYS|EQUINOX|LONPOLE|LATPOLE|[AB]P?_ORDER|[AB]P?_\d+_\d+|[AB]_DMAX)$"
)
_OUTPUT_CTYPE = ("RA---TAN", "DEC--TAN")


def _value(value: Any) -> Any:
    """Card value from a plain value or a ``(value, comment)`` pair."""
    return value[0] if isinstance(value, tuple) else value


def wcs_from_header(header: Mapping[str, Any]) -> WCS:
    """Two-dimensional celestial FITS WCS of a calints SCI header.

    Parameters
    ----------
    header : mapping
        SCI-extension cards (``CTYPE1``, ``CRPIX1``, ``PC1_1``, ... and optional SIP
        ``A_ORDER``/``A_i_j``/``B_...``).  Values may be plain or ``(value, comment)``.
        Cards of other axes and non-WCS cards are ignored.

    Returns
    -------
    astropy.wcs.WCS
        Pixel coordinates are 0-based in the APE 14 methods used by this module.

    Raises
    ------
    ValueError
        If the header has no celestial axes.
    """
    cards = {key.upper(): _value(v) for key, v in header.items() if _WCS_CARD.match(key.upper())}
    cards["WCSAXES"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(cards, naxis=2)
    if not wcs.has_celestial:
        raise ValueError(f"header has no celestial WCS (CTYPE = {cards.get('CTYPE1')!r}, {cards.get('CTYPE2')!r})")
    return wcs


def exposure_wcs(attrs: Mapping[str, Any]) -> Any:
    """Choose the WCS of one exposure: its gWCS when available, else the FITS WCS.

    Parameters
    ----------
    attrs : mapping
        Exposure attributes with ``sci_header`` and optionally ``asdf_wcs`` (a
        deserialised ``gwcs.WCS``).

    Returns
    -------
    gwcs.WCS or astropy.wcs.WCS
        ``asdf_wcs`` if present and gwcs is importable, otherwise
        ``wcs_from_header(attrs["sci_header"])``.
    """
    gwcs_object = attrs.get("asdf_wcs")
    if gwcs_object is not None:
        try:
            import gwcs  # optional dependency: only needed to evaluate a gWCS
        except ImportError:
            gwcs = None
        if gwcs is not None and isinstance(gwcs_object, gwcs.WCS):
            return gwcs_object
    return wcs_from_header(attrs["sci_header"])


def is_gwcs(wcs: Any) -> bool:
    """Tell a gWCS-like object (callable, with ``invert``) from an astropy FITS WCS.

    Parameters
    ----------
    wcs : object
        A WCS.

    Returns
    -------
    bool
    """
    return not isinstance(wcs, WCS) and hasattr(wcs, "invert") and hasattr(wcs, "forward_transform")


def _to_world(wcs: Any, x: Any, y: Any, *, bounded: bool = False) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(RA, Dec) in degrees of 0-based pixel coordinates; gWCS bounding box only if ``bounded``."""
    if is_gwcs(wcs):
        ra, dec = wcs(x, y, with_bounding_box=bounded)[:2]
    else:
        ra, dec = wcs.all_pix2world(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), 0)
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def _to_pixel(wcs: Any, ra: Any, dec: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """0-based pixel coordinates of (RA, Dec) in degrees, bounding box ignored."""
    if is_gwcs(wcs):
        x, y = wcs.invert(ra, dec, with_bounding_box=False)
    else:
        x, y = wcs.all_world2pix(np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64), 0)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


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
        polygons = sregion_polygons(str(_value(s_region)))
        if polygons:
            return polygons
    if wcs is None:
        wcs = wcs_from_header(header)
    ny, nx = shape
    x = np.array([-0.5, -0.5, nx - 0.5, nx - 0.5])
    y = np.array([-0.5, ny - 0.5, ny - 0.5, -0.5])
    ra, dec = _to_world(wcs, x, y)
    return [np.column_stack([ra % 360.0, dec])]


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
        x0, y0 = (float(v) for v in _to_pixel(wcs, ra, dec))
    ras, decs = _to_world(wcs, np.array([x0, x0 + 1.0, x0]), np.array([y0, y0, y0 + 1.0]))
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
    centre = _unit_vectors(*_to_world(wcs, np.array([0.5 * (xmin + xmax)]), np.array([0.5 * (ymin + ymax)])))[0]
    v = _unit_vectors(*_to_world(wcs, x, y))
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
        vparity = int(_value(header["VPARITY"]))
        if vparity not in (1, -1):
            raise ValueError(f"VPARITY must be 1 or -1, got {vparity}")
        v3yangle = np.deg2rad(float(_value(header["V3I_YANG"])))
        if rotation is None:
            roll_ref = np.deg2rad(float(_value(header["ROLL_REF"])))
        else:
            roll_ref = np.deg2rad(rotation) + vparity * v3yangle
        rel = roll_ref - vparity * v3yangle
    else:
        matrix = _local_matrix(header, wcs)
        vparity = 1 if np.linalg.det(matrix) > 0 else -1
        rel = np.arctan2(matrix[0, 1], matrix[1, 1]) if rotation is None else np.deg2rad(rotation)
    return np.array([[vparity * np.cos(rel), np.sin(rel)], [-vparity * np.sin(rel), np.cos(rel)]])


def _local_matrix(header: Mapping[str, Any], wcs: Any) -> NDArray[np.float64]:
    """Unit-determinant-magnitude linear part of the input WCS at its reference pixel (tangent-plane axes)."""
    ra0 = float(_value(header.get("RA_REF", header.get("CRVAL1"))))
    dec0 = float(_value(header.get("DEC_REF", header.get("CRVAL2"))))
    x0, y0 = (float(v) for v in _to_pixel(wcs, ra0, dec0))
    ras, decs = _to_world(wcs, np.array([x0, x0 + 1.0, x0]), np.array([y0, y0, y0 + 1.0]))
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
        ra_ref = float(_value(ref_header.get("RA_REF", ref_header.get("CRVAL1"))))
        dec_ref = float(_value(ref_header.get("DEC_REF", ref_header.get("CRVAL2"))))
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


def pixmap(in_wcs: Any, in_shape: tuple[int, int], out_wcs: Any) -> NDArray[np.float64]:
    """Output pixel coordinates of every input pixel centre (stcal ``calc_pixmap``).

    Parameters
    ----------
    in_wcs : WCS-like
        Input WCS; a gWCS bounding box is respected (pixels outside map to NaN).
    in_shape : (ny, nx)
        Input image shape.
    out_wcs : WCS-like
        Output WCS; its bounding box is ignored.

    Returns
    -------
    ndarray, (ny, nx, 2) float64
        ``[..., 0]`` = output x, ``[..., 1]`` = output y (0-based); NaN where undefined.
    """
    y, x = np.indices(in_shape, dtype=np.float64)
    ra, dec = _to_world(in_wcs, x, y, bounded=True)
    with np.errstate(invalid="ignore"):
        ox, oy = _to_pixel(out_wcs, ra, dec)
    return np.dstack([ox, oy])


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
    with the output bounding box, collinear-vertex simplification).  shapely is optional:
    without it the output frame's own four corners are reported.
    """
    ny, nx = shape
    box = np.array([[-0.5, -0.5], [-0.5, ny - 0.5], [nx - 0.5, ny - 0.5], [nx - 0.5, -0.5]])
    try:
        import shapely  # optional: a dependency of stcal, not of coron3_dask
    except ImportError:
        final = [box]
    else:
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
