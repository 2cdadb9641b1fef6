"""Primary-header scans of many exposures, for grouping them into associations.

:func:`find_exposures` expands directories (searched recursively for ``*_calints.fits``) and
files into a sorted list of absolute paths; :func:`read_exposure_headers` reads the PRIMARY
header only (no pixels, no other HDU) of each file on a small thread pool and keeps the
keywords in :data:`KEYWORDS`.  A file that cannot be read is returned as an
:class:`UnreadableExposure` with a one-line reason instead of stopping the scan.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from coron3_dask.files.fits_read import InputError

__all__ = [
    "CALINTS_SUFFIX",
    "KEYWORDS",
    "ExposureHeader",
    "UnreadableExposure",
    "find_exposures",
    "read_exposure_headers",
]

#: file-name ending of stage-2 per-integration products
CALINTS_SUFFIX = "_calints.fits"

#: primary-header keywords the association rules use (those absent from a file are left out)
KEYWORDS: tuple[str, ...] = (
    "PROGRAM",
    "OBSERVTN",
    "VISIT",
    "EXPOSURE",
    "EXP_TYPE",
    "IS_PSF",
    "INSTRUME",
    "DETECTOR",
    "FILTER",
    "PUPIL",
    "CORONMSK",
    "SUBARRAY",
    "TARGETID",
    "TARGPROP",
    "TARGNAME",
    "EXPSTART",
    "ASNPOOL",
    "ASNTABLE",
    "DATAMODL",
)


@dataclass(frozen=True)
class ExposureHeader:
    """The :data:`KEYWORDS` found in one file's PRIMARY header.

    ``path`` is absolute; string values are stripped of padding, undefined values are ``None``.
    """

    path: Path
    cards: dict[str, Any]


@dataclass(frozen=True)
class UnreadableExposure:
    """A file whose PRIMARY header could not be read, with a one-line ``reason``."""

    path: Path
    reason: str


def find_exposures(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand inputs into absolute file paths: directories recursively, files as given.

    Parameters
    ----------
    inputs : iterable of path
        Directories (searched recursively for ``*_calints.fits``) and files (kept whatever
        their name, so that the caller can report a file that is not a calints product).

    Returns
    -------
    list of Path
        Absolute, sorted and without repeats.

    Raises
    ------
    InputError
        If an input does not exist.
    """
    found: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.update(p.resolve() for p in path.rglob(f"*{CALINTS_SUFFIX}") if p.is_file())
        elif path.is_file():
            found.add(path.resolve())
        else:
            raise InputError(f"{path}: no such file or directory")
    return sorted(found)


def _value(value: Any) -> Any:
    if isinstance(value, fits.card.Undefined):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    return value.strip() if isinstance(value, str) else value


def _read_one(path: Path) -> ExposureHeader | UnreadableExposure:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-standard cards: the values are still usable
            header = fits.getheader(path, 0)
            cards = {key: _value(header[key]) for key in KEYWORDS if key in header}
    except (OSError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return UnreadableExposure(path, f"not a readable FITS file ({reason})")
    return ExposureHeader(path, cards)


def read_exposure_headers(
    paths: Sequence[str | Path], *, max_workers: int = 8
) -> list[ExposureHeader | UnreadableExposure]:
    """Read the PRIMARY header of every file (header only: pixels and other HDUs are not read).

    Parameters
    ----------
    paths : sequence of path
        The files.
    max_workers : int
        Threads reading in parallel (header parsing holds the GIL; the threads overlap the
        file-system latency, which dominates on network file systems).

    Returns
    -------
    list of ExposureHeader or UnreadableExposure
        One per path, in the order given, with absolute paths.

    Notes
    -----
    Only the primary header is read, so a file truncated in its data is not detected here;
    the pipeline checks every extension when it opens the association.
    """
    absolute = [Path(p).resolve() for p in paths]
    if len(absolute) <= 1 or max_workers <= 1:
        return [_read_one(p) for p in absolute]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(absolute))) as pool:
        return list(pool.map(_read_one, absolute))
