"""FITS ``RA---TAN``/``DEC--TAN`` projection math in plain ``math``/NumPy (no astropy), and the PC matrix.

The simulated exposures' WCS is a gnomonic projection with a JWST roll matrix; these
functions place companions on the detector and write ``S_REGION`` through the same
projection.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["offset_sky", "pc_from_angle", "pc_matrix", "pixel_to_sky", "sky_to_pixel"]


def pc_from_angle(angle: float, vparity: int) -> NDArray[np.float64]:
    """FITS ``PC`` matrix, 2x2, of a rotation ``angle`` (radians) and an x parity (+1 or -1).

    The one PC formula of the package (stcal ``calc_rotation_matrix``): the simulator's
    exposures and the resampled output grid both use it.
    """
    return np.array([[vparity * np.cos(angle), np.sin(angle)], [-vparity * np.sin(angle), np.cos(angle)]])


def pc_matrix(roll_deg: float, v3i_yang: float, vparity: int = -1) -> NDArray[np.float64]:
    """FITS ``PC`` matrix of a telescope roll (``ROLL_REF``, ``V3I_YANG``, ``VPARITY``), 2x2."""
    return pc_from_angle(math.radians(roll_deg - vparity * v3i_yang), vparity)


def sky_to_pixel(
    ra: float,
    dec: float,
    *,
    crval: tuple[float, float],
    crpix: tuple[float, float],
    pc: NDArray[np.float64],
    cdelt: float,
) -> tuple[float, float]:
    """FITS ``RA---TAN``/``DEC--TAN`` world -> 1-based pixel ``(x, y)`` (degrees; CDELT1 = CDELT2)."""
    a, d, a0, d0 = (math.radians(v) for v in (ra, dec, *crval))
    cosc = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    xi = math.degrees(math.cos(d) * math.sin(a - a0) / cosc)
    eta = math.degrees((math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / cosc)
    px, py = np.linalg.solve(pc, np.array([xi, eta]) / cdelt)
    return float(px + crpix[0]), float(py + crpix[1])


def pixel_to_sky(
    px: float, py: float, crval: tuple[float, float], crpix: tuple[float, float], pc: NDArray[np.float64], cdelt: float
) -> tuple[float, float]:
    """1-based pixel ``(x, y)`` -> FITS ``RA---TAN``/``DEC--TAN`` world (degrees), inverse of :func:`sky_to_pixel`."""
    xi, eta = np.radians(pc @ np.array([px - crpix[0], py - crpix[1]]) * cdelt)
    a0, d0 = math.radians(crval[0]), math.radians(crval[1])
    rho = math.hypot(xi, eta)
    c = math.atan(rho)
    dec = math.asin(math.cos(c) * math.sin(d0) + (eta * math.sin(c) * math.cos(d0) / rho if rho else 0.0))
    ra = a0 + math.atan2(xi * math.sin(c), rho * math.cos(d0) * math.cos(c) - eta * math.sin(d0) * math.sin(c))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def offset_sky(ra: float, dec: float, sep_arcsec: float, pa_deg: float) -> tuple[float, float]:
    """(RA, Dec) in degrees at ``sep_arcsec`` from ``(ra, dec)`` at position angle ``pa_deg`` (east of north)."""
    a0, d0, rho, pa = math.radians(ra), math.radians(dec), math.radians(sep_arcsec / 3600), math.radians(pa_deg)
    d = math.asin(math.sin(d0) * math.cos(rho) + math.cos(d0) * math.sin(rho) * math.cos(pa))
    a = a0 + math.atan2(math.sin(pa) * math.sin(rho) * math.cos(d0), math.cos(rho) - math.sin(d0) * math.sin(d))
    return math.degrees(a) % 360.0, math.degrees(d)
