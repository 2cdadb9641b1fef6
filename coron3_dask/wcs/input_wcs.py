"""Input WCSs of resample: built from a calints SCI header or taken from a gWCS, and evaluated.

An input WCS is an astropy FITS WCS built from the calints SCI header (SIP distortion
included when present) or, when the caller supplies one, a gWCS object.  The functions here
evaluate either kind with 0-based pixel coordinates.  Everything is header math (cheap, no
pixels) except :func:`pixmap`, which evaluates the input and output WCSs at every input
pixel centre and is meant to run inside a Dask task.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import NDArray

from coron3_dask.schema import card_value

__all__ = [
    "exposure_wcs",
    "is_gwcs",
    "pixel_to_radec",
    "pixmap",
    "radec_to_pixel",
    "wcs_from_header",
]

#: header cards that describe a 2-D celestial FITS WCS (with SIP), axes 1 and 2 only
_WCS_CARD = re.compile(
    r"^(CTYPE[12]|CUNIT[12]|CRPIX[12]|CRVAL[12]|CDELT[12]|PC[12]_[12]|CD[12]_[12]|PV[12]_\d+"
    r"|RADESYS|EQUINOX|LONPOLE|LATPOLE|[AB]P?_ORDER|[AB]P?_\d+_\d+|[AB]_DMAX)$"
)


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
    cards = {key.upper(): card_value(v) for key, v in header.items() if _WCS_CARD.match(key.upper())}
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
        ``asdf_wcs`` if present (a ``gwcs.WCS``), otherwise
        ``wcs_from_header(attrs["sci_header"])``.
    """
    gwcs_object = attrs.get("asdf_wcs")
    if gwcs_object is not None:
        import gwcs  # imported here: only exposures read with a gWCS need it

        if isinstance(gwcs_object, gwcs.WCS):
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


def pixel_to_radec(
    wcs: Any, x: Any, y: Any, *, bounded: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(RA, Dec) in degrees of 0-based pixel coordinates; gWCS bounding box only if ``bounded``.

    Parameters
    ----------
    wcs : WCS-like
        astropy FITS WCS or gWCS.
    x, y : array_like
        0-based pixel coordinates.
    bounded : bool, optional
        Respect a gWCS bounding box (NaN outside); ignored for a FITS WCS.

    Returns
    -------
    ra, dec : ndarray, float64
        Degrees, shaped like ``x``.
    """
    if is_gwcs(wcs):
        ra, dec = wcs(x, y, with_bounding_box=bounded)[:2]
    else:
        ra, dec = wcs.all_pix2world(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), 0)
    return np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)


def radec_to_pixel(wcs: Any, ra: Any, dec: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """0-based pixel coordinates of (RA, Dec) in degrees, bounding box ignored.

    Parameters
    ----------
    wcs : WCS-like
        astropy FITS WCS or gWCS.
    ra, dec : array_like
        Sky coordinates in degrees.

    Returns
    -------
    x, y : ndarray, float64
        0-based pixel coordinates, shaped like ``ra``.
    """
    if is_gwcs(wcs):
        x, y = wcs.invert(ra, dec, with_bounding_box=False)
    else:
        x, y = wcs.all_world2pix(np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64), 0)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


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
    ra, dec = pixel_to_radec(in_wcs, x, y, bounded=True)
    with np.errstate(invalid="ignore"):
        ox, oy = radec_to_pixel(out_wcs, ra, dec)
    return np.dstack([ox, oy])
