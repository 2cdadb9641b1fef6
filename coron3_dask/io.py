"""All file I/O: associations, calints and PSFMASK files in; FITS products out.

Headers are read eagerly (cheap) and pixels lazily: the Dask graph holds file paths and read
tasks, never pixel arrays, so it can be shipped to remote workers.  Every write goes to a
temporary name in the destination directory and is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = [
    "Extension",
    "InputError",
    "atomic_path",
    "write_fits",
]


class InputError(ValueError):
    """An input file (association, exposure, reference file) is missing or malformed."""


@dataclass
class Extension:
    """One FITS extension to write.

    Parameters
    ----------
    name : str
        EXTNAME.
    data : ndarray or None
        Image array (written big-endian as FITS requires) or a structured array for a
        binary table (``table=True``).
    header : mapping
        Extra header cards (``{"BUNIT": "MJy/sr"}`` or ``{"KEY": (value, comment)}``).
    table : bool
        Write ``data`` as a binary table.
    """

    name: str
    data: np.ndarray | None
    header: Mapping[str, Any] = field(default_factory=dict)
    table: bool = False


def _header(cards: Mapping[str, Any]) -> fits.Header:
    header = fits.Header()
    for key, value in cards.items():
        if isinstance(value, tuple):
            header[key] = value
        elif value is None:
            continue
        else:
            header[key] = value
    return header


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only on success.

    A crash or exception leaves no partial file under the final name (and removes the
    temporary one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_fits(path: str | Path, primary: Mapping[str, Any], extensions: Sequence[Extension]) -> Path:
    """Write a multi-extension FITS file atomically.

    Parameters
    ----------
    path : path
        Final file name.
    primary : mapping
        PRIMARY header cards.
    extensions : sequence of Extension
        Extensions in order.

    Returns
    -------
    Path
        ``path``.
    """
    hdus: list[fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU] = [fits.PrimaryHDU(header=_header(primary))]
    for ext in extensions:
        header = _header(ext.header)
        if ext.table:
            hdu: fits.ImageHDU | fits.BinTableHDU = fits.BinTableHDU(data=ext.data, header=header, name=ext.name)
        else:
            hdu = fits.ImageHDU(data=ext.data, header=header, name=ext.name)
        hdus.append(hdu)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, output_verify="silentfix")
    return Path(path)
