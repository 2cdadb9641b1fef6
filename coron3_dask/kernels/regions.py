"""KLIP optimisation regions and the ADI reference selection, with pyKLIP's semantics.

pyKLIP (Wang et al. 2015, ``pyklip.parallelized.klip_dataset``) divides the frame around the
star into ``annuli`` radial zones between an inner working angle (IWA) and an outer one (OWA),
each cut into ``subsections`` azimuthal sectors; every zone gets its own KL basis.  In angular
differential imaging a frame of another roll joins the library of a zone only when a source at
the zone's mean radius has moved by at least ``movement`` pixels between the two frames
(``pyklip.klip.estimate_movement``) and, optionally, the roll changed by at least ``minrot``.

The functions here are pure NumPy on one frame geometry; the klip stage maps them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["annuli_bounds", "moved_enough", "movement", "region_bounds", "region_masks"]


def annuli_bounds(annuli: int, iwa: float, owa: float, spacing: str = "constant") -> list[tuple[float, float]]:
    """Radial bounds of the annuli between ``iwa`` and ``owa`` (pyKLIP ``define_annuli_bounds``).

    Parameters
    ----------
    annuli : int
        Number of annuli (>= 1).
    iwa, owa : float
        Inner and outer radius, pixels.
    spacing : {"constant", "log", "linear"}
        ``constant``: equal widths; ``log``: widths growing as ``1 + ln(i + 1)``; ``linear``:
        pyKLIP's ``linear`` (equal widths of ``(owa - iwa) / sum(1..annuli)``, which does not
        reach ``owa``: kept as pyKLIP defines it).

    Returns
    -------
    list of (float, float)
        ``(start, end)`` per annulus, innermost first; a pixel belongs to ``start <= r < end``.

    Raises
    ------
    ValueError
        Fewer than one annulus, ``owa <= iwa`` or an unknown spacing.

    Examples
    --------
    >>> annuli_bounds(2, 4.0, 24.0)
    [(4.0, 14.0), (14.0, 24.0)]
    """
    if annuli < 1:
        raise ValueError(f"annuli must be >= 1, got {annuli}")
    if not owa > iwa:
        raise ValueError(f"the outer working angle ({owa:g} px) must exceed the inner one ({iwa:g} px)")
    if spacing == "constant":
        dr = float(owa - iwa) / annuli
        return [(dr * i + iwa, dr * (i + 1) + iwa) for i in range(annuli)]
    if spacing == "log":
        widths = (np.log(np.arange(annuli) + 1) + 1) * float(owa - iwa) / np.sum(np.log(np.arange(annuli) + 1) + 1)
        bounds: list[tuple[float, float]] = []
        for width in widths:
            start = iwa if not bounds else bounds[-1][1]
            bounds.append((float(start), float(start + width)))
        return bounds
    if spacing == "linear":
        step = float(owa - iwa) / np.sum(np.arange(annuli) + 1)
        return [(iwa + step * i, iwa + step * (i + 1)) for i in range(annuli)]
    raise ValueError(f"annuli spacing must be 'constant', 'log' or 'linear', got {spacing!r}")


def region_bounds(
    shape: tuple[int, int],
    center: tuple[float, float],
    *,
    annuli: int = 1,
    subsections: int = 1,
    iwa: float = 0.0,
    owa: float | None = None,
    spacing: str = "constant",
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Radial and azimuthal bounds of the optimisation regions of one frame.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (y, x).
    center : (float, float)
        Star position (x, y), 0-based pixels.
    annuli, subsections : int
        Radial zones and azimuthal sectors per zone.
    iwa : float
        Inner working angle, pixels: nothing inside is processed.
    owa : float, optional
        Outer working angle, pixels.  Default: the whole frame (pyKLIP's behaviour when no OWA
        is given: the annuli are spaced up to the farthest pixel and the last one extends
        to ``shape[0]`` pixels).
    spacing : {"constant", "log", "linear"}
        Radial spacing (:func:`annuli_bounds`).

    Returns
    -------
    radial : list of (float, float)
        ``(start, end)`` radii per annulus.
    azimuthal : list of (float, float)
        ``(start, end)`` angles per sector, radians in ``[-pi, pi]``, of pyKLIP's polar angle
        ``arctan2(y - yc, x - xc) mod 2 pi - pi`` (sectors are fixed on the detector).

    Notes
    -----
    As in pyKLIP, without an OWA the last annulus ends at ``shape[0]`` pixels (its mean radius,
    which the ADI selection uses, follows from that bound); every pixel is covered whenever
    ``shape[0]`` exceeds the distance from the star to the farthest corner, as on every JWST
    coronagraphic subarray with the star near the mask centre.
    """
    if subsections < 1:
        raise ValueError(f"subsections must be >= 1, got {subsections}")
    if iwa < 0:
        raise ValueError(f"the inner working angle must be >= 0 px, got {iwa:g}")
    whole = owa is None
    if owa is None:
        ny, nx = shape
        corners = np.array([[0, 0], [0, nx - 1], [ny - 1, 0], [ny - 1, nx - 1]], dtype=float)
        owa = float(np.sqrt(np.max((corners[:, 1] - center[0]) ** 2 + (corners[:, 0] - center[1]) ** 2)))
    radial = annuli_bounds(annuli, iwa, owa, spacing)
    if whole:
        radial[-1] = (radial[-1][0], float(shape[0]))
    dphi = 2 * np.pi / subsections
    azimuthal = [(dphi * i - np.pi, dphi * (i + 1) - np.pi) for i in range(subsections)]
    azimuthal[-1] = (azimuthal[-1][0], np.pi)
    return radial, azimuthal


def region_masks(
    shape: tuple[int, int],
    center: tuple[float, float],
    radial: list[tuple[float, float]],
    azimuthal: list[tuple[float, float]],
) -> NDArray[np.bool_]:
    """Pixel masks of every region, annulus-major (region ``a * len(azimuthal) + s``).

    Parameters
    ----------
    shape : (int, int)
        Frame shape (y, x).
    center : (float, float)
        Star position (x, y).
    radial, azimuthal : list of (float, float)
        From :func:`region_bounds`.

    Returns
    -------
    ndarray of bool, (region, y, x)
        Disjoint masks; a pixel is in a region when ``start <= r < end`` and
        ``start <= phi < end`` with pyKLIP's polar angle (``make_polar_coordinates``), as
        pyKLIP selects it.
    """
    yy, xx = np.indices(shape, dtype=float)
    r = np.sqrt((xx - center[0]) ** 2 + (yy - center[1]) ** 2)
    phi = np.arctan2(yy - center[1], xx - center[0]) % (2 * np.pi) - np.pi  # pyklip.klip.make_polar_coordinates
    masks = [(r >= r0) & (r < r1) & (phi >= p0) & (phi < p1) for r0, r1 in radial for p0, p1 in azimuthal]
    return np.asarray(masks, dtype=bool).reshape(len(masks), *shape)


def movement(radius: float, delta_roll_deg: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Distance (pixels) a source at ``radius`` moves when the field rotates by ``delta_roll_deg``.

    The chord ``2 r |sin(dθ / 2)|``, as ``pyklip.klip.estimate_movement`` computes it for ADI.

    Parameters
    ----------
    radius : float
        Separation from the star, pixels.
    delta_roll_deg : float or ndarray
        Roll differences, degrees.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> round(float(movement(10.0, 60.0)), 12)
    10.0
    """
    dtheta = np.radians(np.asarray(delta_roll_deg, dtype=float))
    return np.asarray(np.sqrt((radius * np.cos(dtheta) - radius) ** 2 + (radius * np.sin(dtheta)) ** 2))


def moved_enough(
    radius: float, delta_roll_deg: NDArray[np.floating], *, min_movement: float, minrot: float = 0.0
) -> NDArray[np.bool_]:
    """Which self-references a region of mean ``radius`` may use (pyKLIP ``movement``/``minrot``).

    Parameters
    ----------
    radius : float
        Mean radius of the region, ``(start + end) / 2`` of its annulus (pyKLIP's ``avg_rad``).
    delta_roll_deg : ndarray
        Roll of each candidate frame minus the target's, degrees.
    min_movement : float
        Minimum movement of a source at ``radius``, pixels (pyKLIP ``movement``).
    minrot : float
        Minimum absolute roll difference, degrees (pyKLIP ``minrot``; 0 = no condition).

    Returns
    -------
    ndarray of bool
        ``movement >= min_movement`` and, when ``minrot > 0``, ``|delta_roll| >= minrot``.
    """
    delta = np.asarray(delta_roll_deg, dtype=float)
    good = movement(radius, delta) >= min_movement
    if minrot > 0:
        good &= np.abs(delta) >= minrot
    return np.asarray(good, dtype=bool)
