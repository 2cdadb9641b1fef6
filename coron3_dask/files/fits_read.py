"""FITS reading: header scans, one-task lazy reads of whole extensions, small eager reads.

:func:`scan_fits` reads every header of a file (no pixels) and checks it is not truncated;
:func:`lazy_extension` makes a one-task Dask array for a whole extension, named from
``tokenize(path, mtime, extension)``, whose graph holds the path and not the pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from astropy.io import fits
from dask.base import tokenize
from dask.task_spec import Task

__all__ = [
    "InputError",
    "data_nbytes",
    "header_dict",
    "image_shape",
    "lazy_extension",
    "read_extension",
    "read_image",
    "scan_fits",
]


class InputError(ValueError):
    """An input file (association, exposure, reference file) is missing or malformed."""


def image_shape(header: fits.Header) -> tuple[int, ...]:
    """Array shape (NumPy order) from NAXISn; ``()`` when NAXIS = 0."""
    return tuple(int(header[f"NAXIS{i}"]) for i in range(int(header.get("NAXIS", 0)), 0, -1))


def data_nbytes(header: fits.Header) -> int:
    """Size of an HDU's data in bytes, without padding (FITS standard §4.4.1)."""
    if int(header.get("NAXIS", 0)) == 0:
        return 0
    count = int(np.prod(image_shape(header), dtype=np.int64))
    return abs(int(header["BITPIX"])) // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + count)


def scan_fits(path: Path) -> tuple[dict[str, fits.Header], int]:
    """Read every header of a FITS file (no pixels) and check each data area lies inside it.

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    headers : dict of str to fits.Header
        Keyed by upper-case EXTNAME (first occurrence wins; the primary is ``PRIMARY``).
    mtime_ns : int
        The file's modification time, for task names.

    Raises
    ------
    InputError
        Naming the file if it is missing, not FITS, corrupt or truncated.
    """
    try:
        stat = path.stat()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                found = [(hdu.header.copy(), hdul.fileinfo(i)["datLoc"]) for i, hdu in enumerate(hdul)]
        ends = [start + data_nbytes(header) for header, start in found]
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from exc
    if broken := [str(w.message).splitlines()[0] for w in caught if "Error validating header" in str(w.message)]:
        raise InputError(f"{path}: corrupt or truncated FITS file: {broken[0]}")
    headers: dict[str, fits.Header] = {}
    for i, ((header, _), end) in enumerate(zip(found, ends, strict=True)):
        name = "PRIMARY" if i == 0 else str(header.get("EXTNAME", f"HDU{i}")).strip().upper()
        if end > stat.st_size:
            raise InputError(f"{path}: truncated: {name} data needs {end} bytes, file has {stat.st_size}")
        headers.setdefault(name, header)
    return headers, stat.st_mtime_ns


def read_extension(path: str, ext: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read one whole extension (the body of a read task) as a native-endian ``dtype`` array."""
    data = fits.getdata(path, extname=ext, memmap=False)
    if data.shape != tuple(shape):
        raise InputError(f"{path}: {ext} has shape {data.shape} at read time, expected {tuple(shape)} (changed?)")
    return np.ascontiguousarray(data, dtype=np.dtype(dtype))


def lazy_extension(path: Path, mtime_ns: int, ext: str, shape: tuple[int, ...], dtype: np.dtype) -> da.Array:
    """Return a one-chunk Dask array read by one task named ``read-<ext>-tokenize(path, mtime_ns, ext)``.

    The graph holds the path, never pixels, so it is small and can be shipped to workers.
    """
    name = f"read-{ext.lower()}-{tokenize(str(path), mtime_ns, ext)}"
    key = (name, *(0 for _ in shape))
    graph = {key: Task(key, read_extension, str(path), ext, dtype.str, shape)}  # one task, no alias
    return da.Array(graph, name, tuple((n,) for n in shape), dtype=dtype)


def header_dict(header: fits.Header) -> dict[str, Any]:
    """Header → ``{key: python scalar}``; COMMENT/HISTORY/blank skipped, first duplicate wins."""
    out: dict[str, Any] = {}
    for key, value in header.items():
        if key in ("COMMENT", "HISTORY", ""):
            continue
        if isinstance(value, fits.card.Undefined):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        out.setdefault(key, value)
    return out


def read_image(path: str | Path, ext: str = "SCI") -> tuple[np.ndarray, dict[str, Any]]:
    """Read one image extension eagerly (for small products: previews, analysis).

    Parameters
    ----------
    path : path
        FITS file.
    ext : str
        Extension name.

    Returns
    -------
    data : ndarray
        Native byte order.
    header : dict
        The extension's header cards.

    Raises
    ------
    InputError
        Missing file or extension.
    """
    path = Path(path)
    try:
        with fits.open(path) as hdul:
            hdu = hdul[ext]
            data = np.asarray(hdu.data)
            return data.astype(data.dtype.newbyteorder("=")), header_dict(hdu.header)
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read extension {ext}: {exc}") from None
