"""FITS writing: whole files, or pre-allocated files filled block by block from the workers.

:func:`write_fits` writes a whole multi-extension file from in-memory arrays.  For products too
large to hold in memory (the 4-D psfalign cube), :func:`preallocate_fits` writes every header
and reserves every data area as a sparse, zero-filled hole padded to the 2880-byte FITS
block; Dask workers then fill it block by block (:func:`write_block`, big-endian as FITS
requires) without the array ever being gathered; tables go at the end (:func:`append_table`).
Every write goes to a temporary name, renamed onto the final name only when complete.  A
system error while writing (a full disk, a permission) is raised as :class:`WriteError`,
whose one-line message names the file being written.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import DTypeLike

from coron3_dask.files.errors import WriteError, name_errors

__all__ = [
    "Extension",
    "ExtensionSpec",
    "WriteError",
    "append_table",
    "atomic_path",
    "data_offsets",
    "make_header",
    "name_errors",
    "preallocate_fits",
    "write_block",
    "write_fits",
    "write_text",
]


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


def _layout(primary: Mapping[str, Any], extensions: Sequence[ExtensionSpec]) -> tuple[list[bytes], dict[str, int]]:
    """Return the encoded headers (PRIMARY first) and each extension's data offset."""
    names = [spec.name for spec in extensions]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate EXTNAME in {names}")
    _check_cards(primary, "PRIMARY")
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])
    header.extend(make_header(primary))
    headers = [header.tostring().encode("ascii")]
    offsets: dict[str, int] = {}
    position = len(headers[0])
    for spec in extensions:
        headers.append(spec.fits_header().tostring().encode("ascii"))
        offsets[spec.name] = position + len(headers[-1])
        position = offsets[spec.name] + _padded(spec.nbytes)
    return headers, offsets


def data_offsets(primary: Mapping[str, Any], extensions: Sequence[ExtensionSpec]) -> dict[str, int]:
    """Return the data offsets :func:`preallocate_fits` gives the same headers, without writing."""
    return _layout(primary, extensions)[1]


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

    Raises
    ------
    WriteError
        A system error (a full disk, a permission) while writing ``path``.

    Notes
    -----
    Unwritten slabs read as zero.  Float and signed data areas are sparse holes (no I/O);
    unsigned ones (stored with ``BZERO``) must be filled with the stored pattern of 0, so
    preallocating a uint32 DQ costs one sequential write of its size.
    """
    headers, offsets = _layout(primary, extensions)
    with name_errors(path), open(path, "wb") as f:
        f.write(headers[0])
        for spec, ext_header in zip(extensions, headers[1:], strict=True):
            f.write(ext_header)
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

    Raises
    ------
    WriteError
        A system error while writing ``path`` (or ``path`` is gone: the run was abandoned).
    """
    if start < 0:
        raise ValueError(f"slab index must be >= 0, got {start}")
    buf = _to_disk(np.asarray(block), _native(dtype))
    plane = buf.nbytes // max(len(buf), 1)
    with name_errors(path), open(path, "r+b") as f:
        f.seek(offset + start * plane)
        f.write(buf.tobytes())
    return buf.nbytes


def append_table(path: str | Path, name: str, data: np.ndarray, header: Mapping[str, Any] | None = None) -> None:
    """Append a binary-table extension (from a structured array) at the end of a FITS file.

    Existing data areas are neither read nor rewritten.  A system error is raised as
    :class:`WriteError` naming ``path``.
    """
    hdu = fits.BinTableHDU(data=np.asarray(data), header=make_header(header or {}), name=name)
    # serialised by astropy behind an empty primary (one 2880-byte block), then appended as bytes:
    # the same bytes as ``fits.open(path, mode="append").append(hdu)``, without parsing every
    # header of a large product first
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    raw = buf.getvalue()[BLOCK:]
    if not raw.startswith(b"XTENSION= 'BINTABLE'"):
        raise RuntimeError(f"unexpected serialisation of table {name} for {path}")
    with name_errors(path), open(path, "ab") as f:
        f.write(raw)


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
    temporary one).  The temporary name is private to this call (process id and a random
    token), so concurrent writers of the same ``path``, even threads, never share it.  A
    system error while writing or renaming is raised as :class:`WriteError` naming the file.
    """
    path = Path(path)
    with name_errors(path.parent, "create directory"):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        with name_errors(tmp):
            yield tmp
        with name_errors(tmp, "rename", path):
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


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


def write_text(path: str | Path, text: str) -> Path:
    """Write a small text file (JSON record, TOML) atomically.

    Parameters
    ----------
    path : path
        Final file name.
    text : str
        Content.

    Returns
    -------
    Path
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
