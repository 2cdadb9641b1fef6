"""FITS plumbing: header scans and one-task lazy reads in; whole or slab-by-slab writes out.

:func:`scan_fits` reads every header of a file (no pixels) and checks it is not truncated;
:func:`lazy_extension` makes a one-task Dask array for a whole extension, named from
``tokenize(path, mtime, extension)``, whose graph holds the path and not the pixels.
:func:`write_fits` writes a whole multi-extension file from in-memory arrays.  For products too
large to hold in memory (the 4-D psfalign cube), :func:`preallocate_fits` writes every header
and reserves every data area as a sparse, zero-filled hole padded to the 2880-byte FITS
block; Dask workers then fill it slab by slab (:func:`write_slab`, one leading index at a
time, big-endian as FITS requires) without the array ever being gathered; tables go at the
end (:func:`append_table`).  Every write goes to the temporary name from :func:`atomic_path`,
renamed onto the final name only when complete.

With :mod:`coron3_dask.io` (which re-exports everything here) this is the only code that
touches :mod:`astropy.io.fits`.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from astropy.io import fits
from dask.base import tokenize
from numpy.typing import DTypeLike

__all__ = [
    "Extension",
    "ExtensionSpec",
    "FitsLayout",
    "InputError",
    "append_table",
    "atomic_path",
    "data_nbytes",
    "image_shape",
    "lazy_extension",
    "make_header",
    "preallocate_fits",
    "read_extension",
    "scan_fits",
    "write_block",
    "write_fits",
    "write_slab",
]


class InputError(ValueError):
    """An input file (association, exposure, reference file) is missing or malformed."""


# --------------------------------------------------------------------------- reading
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
    token = tokenize(str(path), mtime_ns, ext)
    read = dask.delayed(read_extension, pure=True)
    load = read(str(path), ext, dtype.str, shape, dask_key_name=f"load-{ext.lower()}-{token}")
    return da.from_delayed(load, shape=shape, dtype=dtype, name=f"read-{ext.lower()}-{token}")


# --------------------------------------------------------------------------- writing
BLOCK = 2880

#: native dtype -> (BITPIX, BZERO or None); unsigned integers use the FITS BZERO convention
_BITPIX: dict[np.dtype, tuple[int, int | None]] = {
    np.dtype(code): (bitpix, bzero)
    for code, bitpix, bzero in [
        ("u1", 8, None),
        ("i2", 16, None),
        ("u2", 16, 1 << 15),
        ("i4", 32, None),
        ("u4", 32, 1 << 31),
        ("i8", 64, None),
        ("u8", 64, 1 << 63),
        ("f4", -32, None),
        ("f8", -64, None),
    ]
}
_STRUCTURAL = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|EXTNAME|BZERO|BSCALE|END)$")


def make_header(cards: Mapping[str, Any]) -> fits.Header:
    """Build a FITS header from ``{"KEY": value}`` or ``{"KEY": (value, comment)}``; ``None`` values are skipped."""
    header = fits.Header()
    for key, value in cards.items():
        if value is not None:
            header[key] = value
    return header


def _padded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


def _native(dtype: DTypeLike) -> np.dtype:
    native = np.dtype(dtype).newbyteorder("=")
    if native not in _BITPIX:
        raise ValueError(f"dtype {native} cannot be stored in a FITS image; use one of {sorted(map(str, _BITPIX))}")
    return native


def _check_cards(cards: Mapping[str, Any], where: str) -> None:
    bad = sorted(key for key in cards if _STRUCTURAL.match(key.upper()))
    if bad:
        raise ValueError(f"{where}: structural keywords {bad} are written by the layout, not by the caller")


@dataclass(frozen=True)
class ExtensionSpec:
    """Shape, dtype and header cards of one image extension to be streamed.

    Parameters
    ----------
    name : str
        EXTNAME.
    shape : tuple of int
        Full array shape in NumPy order, e.g. ``(n_int, n_ref, ny, nx)``.
    dtype : dtype-like
        In-memory dtype (float32, uint32, ...); stored big-endian, unsigned via BZERO.
    header : mapping
        Extra cards; structural keywords (BITPIX, NAXISn, EXTNAME, ...) are not allowed.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    header: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Normalise shape and dtype; reject structural header cards."""
        shape = tuple(int(n) for n in self.shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"extension {self.name}: shape {shape} must have at least one axis, all >= 1")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", _native(self.dtype))
        _check_cards(self.header, f"extension {self.name}")

    @property
    def slab_nbytes(self) -> int:
        """Bytes of one slab (``shape[1:]``)."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the whole data array (without padding)."""
        return self.shape[0] * self.slab_nbytes

    def fits_header(self) -> fits.Header:
        """Return the complete extension header (structural cards first)."""
        bitpix, bzero = _BITPIX[self.dtype]
        cards: list[tuple[str, Any]] = [("XTENSION", "IMAGE"), ("BITPIX", bitpix), ("NAXIS", len(self.shape))]
        cards += [(f"NAXIS{i}", n) for i, n in enumerate(reversed(self.shape), start=1)]
        cards += [("PCOUNT", 0), ("GCOUNT", 1)]
        if bzero is not None:
            cards += [("BSCALE", 1), ("BZERO", bzero)]
        cards.append(("EXTNAME", self.name))
        header = fits.Header(cards)
        header.extend(make_header(self.header))
        return header


def preallocate_fits(
    path: str | Path, primary: Mapping[str, Any], extensions: Sequence[ExtensionSpec]
) -> dict[str, int]:
    """Write all headers of a multi-extension FITS file and reserve its data areas.

    Parameters
    ----------
    path : path
        File to create (normally the temporary name from ``atomic_path``).
    primary : mapping
        PRIMARY header cards (SIMPLE, BITPIX, NAXIS, EXTEND are supplied).
    extensions : sequence of ExtensionSpec
        Image extensions in file order.

    Returns
    -------
    dict of str to int
        Byte offset of each extension's data area, keyed by EXTNAME.

    Notes
    -----
    Unwritten slabs read as zero.  Float and signed data areas are sparse holes (no I/O);
    unsigned ones (stored with ``BZERO``) must be filled with the stored pattern of 0, so
    preallocating a uint32 DQ costs one sequential write of its size.
    """
    names = [spec.name for spec in extensions]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate EXTNAME in {names}")
    _check_cards(primary, "PRIMARY")
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])
    header.extend(make_header(primary))
    offsets: dict[str, int] = {}
    with open(path, "wb") as f:
        f.write(header.tostring().encode("ascii"))
        for spec in extensions:
            f.write(spec.fits_header().tostring().encode("ascii"))
            offsets[spec.name] = f.tell()
            if _BITPIX[spec.dtype][1] is not None:
                zeros = _to_disk(np.zeros(min(spec.nbytes // spec.dtype.itemsize, 1 << 21), spec.dtype), spec.dtype)
                block = zeros.tobytes()
                for start in range(0, spec.nbytes, len(block)):
                    f.write(block[: spec.nbytes - start])
            f.seek(offsets[spec.name] + _padded(spec.nbytes))
        f.truncate()
    return offsets


def _to_disk(slab: np.ndarray, dtype: np.dtype) -> np.ndarray:
    arr = np.ascontiguousarray(slab, dtype=dtype)
    if _BITPIX[dtype][1] is not None:  # unsigned: stored as signed minus BZERO == flip the sign bit
        signed = np.dtype(f"i{dtype.itemsize}")
        arr = arr.view(signed) ^ np.array(np.iinfo(signed).min, dtype=signed)
    return arr.astype(arr.dtype.newbyteorder(">"), copy=False)


def write_slab(path: str | Path, offset: int, index: int, slab: np.ndarray, dtype: DTypeLike) -> int:
    """Write one slab of an extension preallocated by :func:`preallocate_fits`.

    Parameters
    ----------
    path : path
        The preallocated file.
    offset : int
        Byte offset of the extension's data (from :func:`preallocate_fits`).
    index : int
        Leading index of the slab (0-based).
    slab : ndarray
        Array of shape ``extension.shape[1:]``; cast to ``dtype`` and written big-endian.
    dtype : dtype-like
        The extension's dtype.

    Returns
    -------
    int
        Bytes written.

    Notes
    -----
    Each call opens its own handle (``r+b``), seeks and writes, so different slabs may be
    written concurrently from different threads or processes.  The shape is not checked
    here; :meth:`FitsLayout.write_slab` checks it.
    """
    return write_block(path, offset, index, np.asarray(slab)[None], dtype)


def write_block(path: str | Path, offset: int, start: int, block: np.ndarray, dtype: DTypeLike) -> int:
    """Write consecutive slabs ``block[0], block[1], ...`` starting at leading index ``start``.

    Parameters
    ----------
    path : path
        The preallocated file.
    offset : int
        Byte offset of the extension's data.
    start : int
        Leading index of ``block[0]``.
    block : ndarray
        Array of shape ``(n, *extension.shape[1:])``.
    dtype : dtype-like
        The extension's dtype.

    Returns
    -------
    int
        Bytes written.
    """
    if start < 0:
        raise ValueError(f"slab index must be >= 0, got {start}")
    buf = _to_disk(np.asarray(block), _native(dtype))
    plane = buf.nbytes // max(len(buf), 1)
    with open(path, "r+b") as f:
        f.seek(offset + start * plane)
        f.write(buf.tobytes())
    return buf.nbytes


def append_table(path: str | Path, name: str, data: np.ndarray, header: Mapping[str, Any] | None = None) -> None:
    """Append a binary-table extension (from a structured array) at the end of a FITS file.

    Existing data areas are neither read nor rewritten.
    """
    hdu = fits.BinTableHDU(data=np.asarray(data), header=make_header(header or {}), name=name)
    with fits.open(path, mode="append", memmap=False) as hdul:
        hdul.append(hdu)


@dataclass(frozen=True)
class FitsLayout:
    """A preallocated FITS file: where each extension's data lives.  Small and picklable.

    Create with :meth:`FitsLayout.preallocate`; ship to workers; call :meth:`write_slab`.
    """

    path: Path
    extensions: tuple[ExtensionSpec, ...]
    offsets: Mapping[str, int]

    @classmethod
    def preallocate(
        cls, path: str | Path, primary: Mapping[str, Any], extensions: Sequence[ExtensionSpec]
    ) -> FitsLayout:
        """Run :func:`preallocate_fits` and return the layout."""
        offsets = preallocate_fits(path, primary, extensions)
        return cls(Path(path), tuple(extensions), offsets)

    def spec(self, name: str) -> ExtensionSpec:
        """Return the spec of extension ``name``."""
        for spec in self.extensions:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.path.name} has no extension {name!r}; it has {[s.name for s in self.extensions]}")

    def write_slab(self, name: str, index: int, slab: np.ndarray) -> int:
        """Write ``slab`` (shape ``shape[1:]``) at leading ``index`` of extension ``name``; return bytes written."""
        spec = self.spec(name)
        if np.shape(slab) != spec.shape[1:]:
            raise ValueError(f"{name}: slab shape {np.shape(slab)} != extension slab shape {spec.shape[1:]}")
        if not 0 <= index < spec.shape[0]:
            raise IndexError(f"{name}: slab index {index} outside 0..{spec.shape[0] - 1}")
        return write_slab(self.path, self.offsets[name], index, slab, spec.dtype)


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
        Path(tmp).replace(path)
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
    hdus: list[fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU] = [fits.PrimaryHDU(header=make_header(primary))]
    for ext in extensions:
        header = make_header(ext.header)
        if ext.table:
            hdu: fits.ImageHDU | fits.BinTableHDU = fits.BinTableHDU(data=ext.data, header=header, name=ext.name)
        else:
            hdu = fits.ImageHDU(data=ext.data, header=header, name=ext.name)
        hdus.append(hdu)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, output_verify="silentfix")
    return Path(path)
