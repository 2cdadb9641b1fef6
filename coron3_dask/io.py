"""All file I/O: associations, calints and PSFMASK files in; FITS products out.

Headers are read eagerly (cheap) and pixels lazily: the Dask graph holds file paths and read
tasks, never pixel arrays, so it can be shipped to remote workers.  Each read task is named
from ``tokenize(path, mtime, extension)``, so opening a file twice gives the same graph.
Byte-level FITS work (header scans, the read tasks, whole-file and slab-by-slab writes
through a temporary name renamed into place) lives in :mod:`coron3_dask.fits_stream`; its
writers and :class:`InputError` are re-exported here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from astropy.io import fits

from coron3_dask import schema
from coron3_dask.fits_stream import (  # the byte-level half of the I/O layer; writers re-exported
    Extension,
    ExtensionSpec,
    FitsLayout,
    InputError,
    append_table,
    atomic_path,
    data_nbytes,
    image_shape,
    lazy_extension,
    preallocate_fits,
    scan_fits,
    write_block,
    write_fits,
    write_slab,
)
from coron3_dask.psfmask import find_psfmask, lazy_psfmask, read_psfmask

log = logging.getLogger(__name__)

__all__ = [
    "Association",
    "Extension",
    "ExtensionSpec",
    "FitsLayout",
    "InputError",
    "append_table",
    "atomic_path",
    "check_same_frame",
    "find_psfmask",
    "lazy_psfmask",
    "open_calints",
    "open_exposures",
    "preallocate_fits",
    "read_association",
    "read_image",
    "read_psfmask",
    "write_block",
    "write_fits",
    "write_slab",
]


# --------------------------------------------------------------------------- association
@dataclass(frozen=True)
class Association:
    """The parts of a coron3 association the pipeline uses (spec §2.1).

    ``science`` and ``psf`` are absolute member paths in ASN order; ``raw`` is the parsed JSON.
    """

    path: Path
    asn_id: str
    product_name: str
    asn_pool: str
    asn_table: str
    science: tuple[Path, ...]
    psf: tuple[Path, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


def _members(product: dict[str, Any], base: Path, problems: list[str]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {"science": [], "psf": []}
    members = product.get("members")
    if not isinstance(members, list) or not members:
        problems.append("products[0].members " + ("missing" if members is None else "is empty or not a list"))
        return groups
    counts = dict.fromkeys(groups, 0)
    seen: dict[Path, int] = {}
    for i, member in enumerate(members):
        where = f"products[0].members[{i}]"
        if not isinstance(member, dict):
            problems.append(f"{where} is not an object")
            continue
        values = {key: member.get(key) for key in ("expname", "exptype")}
        absent = [key for key, val in values.items() if not isinstance(val, str) or not val.strip()]
        problems.extend(f"{where}.{key} missing" for key in absent)
        expname, kind = str(values["expname"]), str(values["exptype"]).lower()
        if absent or kind not in groups:
            continue
        counts[kind] += 1
        file = (base / expname).resolve()
        if not file.is_file():
            problems.append(f"{where}.expname {expname!r} not found (looked in {base})")
        elif file in seen:
            problems.append(f"{where}.expname {expname!r} duplicates members[{seen[file]}]")
        else:
            seen[file] = i
            groups[kind].append(file)
    problems.extend(f"no {kind} members (exptype '{kind}')" for kind, n in counts.items() if n == 0)
    return groups


def read_association(path: str | Path) -> Association:
    """Read and validate a coron3 association (ASN JSON).

    Only ``products[0]`` is used; members whose ``exptype`` is ``science`` or ``psf``
    (case-insensitive) are kept in ASN order, others dropped.  Member files are resolved
    relative to the ASN file's directory.

    Parameters
    ----------
    path : path
        The ASN JSON file.

    Returns
    -------
    Association

    Raises
    ------
    InputError
        Naming the file and every problem found (invalid JSON, missing or wrong fields,
        no science or psf members, member files missing or listed twice).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read association: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: top level is a JSON {type(raw).__name__}, expected an object")
    problems: list[str] = []
    asn_type, asn_id = raw.get("asn_type"), raw.get("asn_id")
    if asn_type is None:
        problems.append("asn_type missing")
    elif str(asn_type).lower() != "coron3":
        problems.append(f"asn_type is {asn_type!r}, expected 'coron3'")
    if not isinstance(asn_id, str) or not asn_id.strip():
        problems.append("asn_id missing" if asn_id is None else f"asn_id is {asn_id!r}, expected a non-empty string")
    products, name = raw.get("products"), None
    groups: dict[str, list[Path]] = {"science": [], "psf": []}
    if not isinstance(products, list) or not products:
        problems.append("products missing" if products is None else "products is empty or not a list")
    elif not isinstance(products[0], dict):
        problems.append("products[0] is not an object")
    else:
        name = products[0].get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append("products[0].name missing")
        groups = _members(products[0], path.resolve().parent, problems)
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return Association(
        path=path.resolve(),
        asn_id=str(asn_id),
        product_name=str(name),
        asn_pool=str(raw.get("asn_pool", "")),
        asn_table=path.name,
        science=tuple(groups["science"]),
        psf=tuple(groups["psf"]),
        raw=raw,
    )


# --------------------------------------------------------------------------- FITS reading
def _header_dict(header: fits.Header) -> dict[str, Any]:
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


_CUBE_EXTS = {"SCI": ("sci", schema.FLOAT_DTYPE), "ERR": ("err", schema.FLOAT_DTYPE), "DQ": ("dq", schema.DQ_DTYPE)}
_CUBE_EXTS.update({name.upper(): (name, schema.FLOAT_DTYPE) for name in schema.VAR_NAMES})


def _int_times(path: Path, headers: Mapping[str, fits.Header]) -> list[dict[str, Any]] | None:
    if "INT_TIMES" not in headers or not data_nbytes(headers["INT_TIMES"]):
        return None
    table = fits.getdata(path, extname="INT_TIMES", memmap=False)
    names = table.dtype.names or ()
    return [dict(zip(names, row, strict=True)) for row in np.asarray(table).tolist()]


def _asdf_wcs(path: Path) -> Any:
    """Return the gWCS (``meta.wcs``) of a data-model file's ASDF extension, or None.

    Real JWST exposures carry their distortion model there (the FITS header WCS is only a
    TAN approximation).  Needs the optional ``asdf`` and ``gwcs`` packages; any failure to
    read it falls back to the header WCS, with a log message.
    """
    try:
        import asdf
        import gwcs  # noqa: F401  (registers the gWCS ASDF converters)
    except ImportError:
        return None
    try:
        with fits.open(path, memmap=False) as hdul:
            raw = bytes(hdul["ASDF"].data["ASDF_METADATA"][0])
        with asdf.open(BytesIO(raw), memmap=False) as tree:
            return tree.tree.get("meta", {}).get("wcs")
    except Exception as exc:  # noqa: BLE001 - an unreadable optional extension must not stop a run
        log.info("%s: gWCS in the ASDF extension not usable (%s); using the header WCS", path.name, exc)
        return None


def open_calints(path: str | Path, *, read_gwcs: bool = True) -> xr.Dataset:
    """Open one ``_calints`` exposure lazily.

    Parameters
    ----------
    path : path
        A calints FITS file (spec §3.1).
    read_gwcs : bool
        Read the gWCS of the ASDF extension into ``attrs["asdf_wcs"]`` (only resampled
        exposures need it; deserialising it costs about a second per process).

    Returns
    -------
    xr.Dataset
        ``sci``, ``err`` : (integration, y, x) float32; ``dq`` : (integration, y, x) uint32;
        ``var_poisson``, ``var_rnoise``, ``var_flat`` (float32, those present); ``area``
        (y, x) float32 if present.  One Dask chunk (one read task) per extension.
        Coordinates on ``integration``: ``int_number`` (1-based) and ``source`` (file
        name).  Attrs: ``primary_header``, ``sci_header`` (dicts), ``filename``, ``path``,
        and ``int_times`` (list of row dicts) when the file has that table.

    Raises
    ------
    InputError
        Naming the file: not FITS, truncated, SCI/ERR/DQ missing, SCI not 3-D, another
        cube's shape differing from SCI, AREA not (y, x).
    """
    path = Path(path).resolve()
    headers, mtime_ns = scan_fits(path)
    if missing := [ext for ext in ("SCI", "ERR", "DQ") if ext not in headers]:
        raise InputError(f"{path}: missing extension(s) {', '.join(missing)} (found {', '.join(headers)})")
    shapes = {name: image_shape(header) for name, header in headers.items()}
    shape = shapes["SCI"]
    problems = [] if len(shape) == 3 else [f"SCI has shape {shape}, expected 3-D (integration, y, x)"]
    present = [ext for ext in _CUBE_EXTS if shapes.get(ext)]  # an empty (NAXIS = 0) extension counts as absent
    problems += [f"{ext} shape {shapes[ext]} != SCI shape {shape}" for ext in present if shapes[ext] != shape]
    if shapes.get("AREA") and shapes["AREA"] != shape[1:]:
        problems.append(f"AREA shape {shapes['AREA']} != SCI frame shape {shape[1:]}")
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    data_vars: dict[str, tuple[tuple[str, ...], da.Array]] = {
        name: (schema.CUBE_DIMS, lazy_extension(path, mtime_ns, ext, shape, dtype))
        for ext, (name, dtype) in _CUBE_EXTS.items()
        if ext in present
    }
    if shapes.get("AREA"):
        data_vars["area"] = (schema.FRAME_DIMS, lazy_extension(path, mtime_ns, "AREA", shape[1:], schema.FLOAT_DTYPE))
    primary = _header_dict(headers["PRIMARY"])
    attrs: dict[str, Any] = {
        "primary_header": primary,
        "sci_header": _header_dict(headers["SCI"]),
        "filename": path.name,
        "path": str(path),
    }
    if read_gwcs and "ASDF" in headers and (wcs := _asdf_wcs(path)) is not None:
        attrs["asdf_wcs"] = wcs
    int_times = _int_times(path, headers)
    start = int(primary["INTSTART"]) if isinstance(primary.get("INTSTART"), int) else 1
    numbers = np.arange(start, start + shape[0], dtype=np.int64)
    if int_times is not None:
        attrs["int_times"] = int_times
        if len(int_times) == shape[0] and "integration_number" in int_times[0]:
            numbers = np.array([row["integration_number"] for row in int_times], dtype=np.int64)
    coords = {"int_number": (schema.INTEGRATION, numbers), "source": (schema.INTEGRATION, np.full(shape[0], path.name))}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def check_same_frame(datasets: Sequence[xr.Dataset]) -> None:
    """Raise InputError naming both files and shapes if the exposures' (y, x) sizes differ."""
    if not datasets:
        return
    first = datasets[0]
    frame = (first.sizes[schema.Y], first.sizes[schema.X])
    for ds in datasets[1:]:
        other = (ds.sizes[schema.Y], ds.sizes[schema.X])
        if other != frame:
            raise InputError(
                f"exposures differ in frame size (ny, nx): {first.attrs.get('path', '?')} is {frame} "
                f"but {ds.attrs.get('path', '?')} is {other}; all members of an association must match"
            )


def open_exposures(paths: Iterable[str | Path]) -> list[xr.Dataset]:
    """Open several calints files lazily, reporting every bad file in one InputError, then :func:`check_same_frame`."""
    datasets, problems = [], []
    for path in paths:
        try:
            datasets.append(open_calints(path))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError("\n".join(problems))
    check_same_frame(datasets)
    return datasets


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
            return data.astype(data.dtype.newbyteorder("=")), _header_dict(hdu.header)
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read extension {ext}: {exc}") from None


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
