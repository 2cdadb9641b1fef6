"""Small binary tables appended to products: fitted shifts (psfalign) and KL truncations (klmodes)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["klmodes_table", "shifts_table"]


def shifts_table(shifts: np.ndarray, ref_source: np.ndarray, ref_int: np.ndarray) -> np.ndarray:
    """Rows ``(integration, ref, ref_source, ref_int, sx, sy, beta)`` for the SHIFTS extension.

    Parameters
    ----------
    shifts : ndarray, (integration, ref, 3)
        Fitted (sx, sy, beta); for ``align_to="first"`` the one integration is integration 0.
    ref_source, ref_int : ndarray, (ref,)
        Each reference plane's PSF file name and integration number.

    Returns
    -------
    ndarray
        Structured array, one row per fitted pair.
    """
    n_int, n_ref = shifts.shape[:2]
    table = np.zeros(
        n_int * n_ref,
        dtype=[
            ("integration", "i4"),
            ("ref", "i4"),
            ("ref_source", "S64"),
            ("ref_int", "i4"),
            ("sx", "f8"),
            ("sy", "f8"),
            ("beta", "f8"),
        ],
    )
    table["integration"] = np.repeat(np.arange(n_int), n_ref)
    table["ref"] = np.tile(np.arange(n_ref), n_int)
    table["ref_source"] = np.tile(np.asarray(ref_source, dtype="S64"), n_int)
    table["ref_int"] = np.tile(np.asarray(ref_int), n_int)
    table["sx"], table["sy"], table["beta"] = shifts.reshape(-1, 3).T
    return table


def klmodes_table(ds: xr.Dataset) -> np.ndarray:
    """Rows ``(mode, truncation, modes_used)`` of a KL-mode cube's KLMODES extension.

    Parameters
    ----------
    ds : xr.Dataset
        A KL-mode cube with ``truncation`` (and optionally ``modes_used``) coordinates on ``mode``.

    Returns
    -------
    ndarray
        Structured array: plane index along the cube's first axis, the requested number of KL modes
        and the number the library allowed (a truncation above the library size repeats the plane).
    """
    truncations = np.asarray(ds["truncation"].values, dtype=np.int32)
    used = np.asarray(ds["modes_used"].values if "modes_used" in ds.coords else truncations, dtype=np.int32)
    table = np.zeros(len(truncations), dtype=[("mode", "i4"), ("truncation", "i4"), ("modes_used", "i4")])
    table["mode"], table["truncation"], table["modes_used"] = np.arange(len(truncations)), truncations, used
    return table
