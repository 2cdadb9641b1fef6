"""Calibrated exposures (``_calints.fits``) as lazy xarray datasets.

Headers are read eagerly (cheap) and pixels lazily: the Dask graph holds file paths and read
tasks, never pixel arrays, so it can be shipped to remote workers.  Each read task is named
from ``tokenize(path, mtime, extension)``, so opening a file twice gives the same graph.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from astropy.io import fits

from coron3_dask import schema
from coron3_dask.files import gwcs_cache
from coron3_dask.files.fits_read import InputError, data_nbytes, header_dict, image_shape, lazy_extension, scan_fits

__all__ = ["check_same_frame", "open_calints", "open_exposures"]

log = logging.getLogger(__name__)


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
    TAN approximation).  Any failure to read it falls back to the header WCS, with a log
    message.  ``asdf`` and ``gwcs`` are imported here, not at module level: loading their
    extensions costs about a second, paid only by runs whose inputs carry an ASDF extension
    and only the first time a given extension is read (``gwcs_cache``).
    """
    try:
        with fits.open(path, memmap=False) as hdul:
            raw = bytes(hdul["ASDF"].data["ASDF_METADATA"][0])
        if (cached := gwcs_cache.load(raw)) is not None:
            return cached
        import asdf
        import gwcs  # noqa: F401  (registers the gWCS ASDF converters)

        with asdf.open(BytesIO(raw), memmap=False) as tree:
            wcs = tree.tree.get("meta", {}).get("wcs")
        if wcs is not None:
            gwcs_cache.store(raw, wcs)
        return wcs
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
    primary = header_dict(headers["PRIMARY"])
    attrs: dict[str, Any] = {
        "primary_header": primary,
        "sci_header": header_dict(headers["SCI"]),
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
