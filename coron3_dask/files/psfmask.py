"""PSFMASK reference files: lookup in a local CRDS-style cache, validation and reading.

No network: a cache laid out as ``$CRDS_PATH/references/jwst/<instrument>/`` is searched by the
selectors jwst uses (INSTRUME, FILTER, CORONMSK, SUBARRAY; USEAFTER against DATE-OBS).  Part
of the file layer; :mod:`coron3_dask.files` re-exports the public functions.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from astropy.io import fits

from coron3_dask import schema
from coron3_dask.files.fits_read import (
    InputError,
    image_shape,
    lazy_extension,
    read_extension,
    scan_fits,
)

__all__ = ["find_psfmask", "lazy_psfmask", "read_psfmask"]

_SELECTORS = ("INSTRUME", "FILTER", "CORONMSK", "SUBARRAY")
_WILDCARDS = {"ANY", "N/A"}
_MASK_ALIASES = {"LYOT": "LYOT_2300"}  # MIRI has a single Lyot mask


def _norm(key: str, value: Any) -> str:
    """Upper-case a selector; CORONMSK: MASKA335R ≡ MASK335R, 4QPM_1550 ≡ MASK1550."""
    text = str(value).strip().upper()
    if key == "CORONMSK":
        text = _MASK_ALIASES.get(text, text)
        text = re.sub(r"^MASKA(?=\d{3}R$|LWB$|SWB$)", "MASK", text)
        text = re.sub(r"^4QPM_(?=\d{4}$)", "MASK", text)
    return text


def _matches(key: str, wanted: str, ref_value: Any) -> bool:
    if ref_value is None:
        return False
    choices = {_norm(key, choice) for choice in str(ref_value).split("|") if choice.strip()}
    return wanted in choices or bool(choices & _WILDCARDS)


def _when(date: Any, time: Any = None) -> datetime | None:
    if not date:
        return None
    text = str(date).strip()
    if time and "T" not in text and " " not in text:
        text = f"{text}T{str(time).strip()}"
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text).replace(tzinfo=None)
    with contextlib.suppress(ValueError):
        return datetime.strptime(text, "%b %d %Y %H:%M:%S")  # old CRDS USEAFTER style
    return None


def find_psfmask(primary_header: Mapping[str, Any], crds_path: str | Path | None = None) -> Path:
    """Find the PSFMASK reference for an exposure in a local CRDS cache (no network).

    Parameters
    ----------
    primary_header : mapping
        The exposure's primary header (INSTRUME, FILTER, CORONMSK, SUBARRAY, DATE-OBS, TIME-OBS).
    crds_path : path, optional
        Cache root; default ``$CRDS_PATH``.  Searched: ``<root>/references/jwst/<instrume>/*psfmask*.fits``.

    Returns
    -------
    Path
        The matching file with the latest USEAFTER not after DATE-OBS/TIME-OBS (latest
        overall if the header has no DATE-OBS).

    Raises
    ------
    InputError
        Listing the folder searched and the selectors, when nothing matches.
    """
    root = crds_path if crds_path is not None else os.environ.get("CRDS_PATH")
    selectors = ", ".join(f"{k}={primary_header.get(k)!r}" for k in (*_SELECTORS, "DATE-OBS", "TIME-OBS"))
    if missing := [k for k in _SELECTORS if primary_header.get(k) in (None, "")]:
        raise InputError(f"PSFMASK lookup: header lacks {', '.join(missing)} ({selectors})")
    if root is None:
        raise InputError(f"PSFMASK lookup: neither crds_path nor $CRDS_PATH is set ({selectors})")
    wanted = {k: _norm(k, primary_header[k]) for k in _SELECTORS}
    observed = _when(primary_header.get("DATE-OBS"), primary_header.get("TIME-OBS"))
    if observed is None and primary_header.get("DATE-OBS"):
        raise InputError(f"PSFMASK lookup: cannot parse DATE-OBS/TIME-OBS ({selectors})")
    folder = Path(root) / "references" / "jwst" / wanted["INSTRUME"].lower()
    files = sorted(folder.glob("*psfmask*.fits"))
    notes, found = [], []
    for file in files:
        try:
            header = fits.getheader(file, 0)
        except (OSError, ValueError) as exc:
            notes.append(f"{file.name} unreadable ({exc})")
            continue
        if not all(_matches(k, wanted[k], header.get(k)) for k in _SELECTORS):
            continue
        useafter = _when(header.get("USEAFTER"))
        if useafter is None:
            notes.append(f"{file.name} has unusable USEAFTER {header.get('USEAFTER')!r}")
        elif observed is not None and useafter > observed:
            notes.append(f"{file.name} USEAFTER {useafter.isoformat()} is after the observation")
        else:
            found.append((useafter, file.name, file))
    if not found:
        raise InputError(
            f"no PSFMASK matches {selectors} (CORONMSK compared as {wanted['CORONMSK']!r}) among {len(files)} "
            f"file(s) {folder / '*psfmask*.fits'}" + (f"; {'; '.join(notes)}" if notes else "")
        )
    return max(found)[2]


def _psfmask_shape(path: Path, shape: tuple[int, ...] | None) -> tuple[tuple[int, int], int]:
    headers, mtime_ns = scan_fits(path)
    primary, problems = headers["PRIMARY"], []
    if str(primary.get("REFTYPE", "")).upper() != "PSFMASK" and primary.get("DATAMODL") != "PsfMaskModel":
        problems.append(f"not a PSFMASK (REFTYPE={primary.get('REFTYPE')!r}, DATAMODL={primary.get('DATAMODL')!r})")
    sci = image_shape(headers["SCI"]) if "SCI" in headers else None
    if sci is None or len(sci) != 2:
        problems.append("no SCI extension" if sci is None else f"SCI has shape {sci}, expected 2-D (y, x)")
    elif shape is not None and tuple(shape) != sci:
        problems.append(f"PSFMASK shape {sci} does not match the science frame shape {tuple(shape)}")
    if problems or sci is None:
        raise InputError(f"{path}: " + "; ".join(problems))
    return (sci[0], sci[1]), mtime_ns


def read_psfmask(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a PSFMASK reference file's SCI image eagerly as native float32 (y, x).

    Raises InputError if the file is not a PSFMASK, has no 2-D SCI, or (``shape`` given)
    its shape differs from the science frame (jwst would fail with a broadcasting error).
    """
    path = Path(path).resolve()
    sci, _ = _psfmask_shape(path, shape)
    return read_extension(str(path), "SCI", schema.FLOAT_DTYPE.str, sci)


def lazy_psfmask(path: str | Path, shape: tuple[int, ...]) -> da.Array:
    """Like :func:`read_psfmask` (header checks now) but return a one-task Dask array (y, x) float32."""
    path = Path(path).resolve()
    sci, mtime_ns = _psfmask_shape(path, shape)
    return lazy_extension(path, mtime_ns, "SCI", sci, schema.FLOAT_DTYPE)
