"""Turn lazy products into write tasks that run on the workers.

Every product is written by the task that computes it (no pixels are gathered to the client)
to a hidden ``.partial`` name, renamed when complete.  The 4-D psfalign is streamed: its
file is pre-allocated and each science integration's slab is written by the task that
aligned it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from coron3_dask import io, schema
from coron3_dask.config import Coron3Config
from coron3_dask.products import Provenance, clean_header, product_primary, provenance_table

__all__ = ["plan", "shifts_table", "write_cube"]

_CUBE_VARS = ("sci", "err", "dq", *schema.VAR_NAMES, "area")
_IMAGE_VARS = ("sci", "err", "con", "wht", *schema.VAR_NAMES)


def _whole(array: Any) -> Any:
    """Return a Delayed of the whole array, built from its *unoptimised* blocks.

    Handing a dask array straight to ``dask.delayed`` optimises (fuses and re-keys) its
    graph, so tasks it shares with other products (alignment, KLIP) would run again.
    """
    if array is None or isinstance(array, np.ndarray):
        return array
    return dask.delayed(np.block, pure=True)(array.to_delayed(optimize_graph=False).tolist())


def _int_times(exposure: xr.Dataset) -> np.ndarray | None:
    rows = exposure.attrs.get("int_times")
    if not rows:
        return None
    if isinstance(rows, np.ndarray):
        return rows
    names = list(rows[0])
    dtype = [(n, np.asarray([r[n] for r in rows]).dtype) for n in names]
    return np.array([tuple(r[n] for n in names) for r in rows], dtype=dtype)


def write_cube(
    path: str,
    primary: Mapping[str, Any],
    sci_header: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    tables: Mapping[str, np.ndarray | None],
) -> str:
    """Write an image product (cube, quad or 2-D image) atomically; runs on a worker.

    Parameters
    ----------
    path : str
        Final file name.
    primary : mapping
        PRIMARY cards.
    sci_header : mapping
        SCI header cards (WCS, BUNIT, ...); ERR and VAR_* get BUNIT too.
    arrays : mapping
        Lower-case extension name to array (``sci``, ``err``, ``dq``, ``var_*``, ...).
    tables : mapping
        Extension name to structured array (``INT_TIMES``, ``C3D_PROV``, ...).

    Returns
    -------
    str
        ``path``.
    """
    bunit = sci_header.get("BUNIT", "MJy/sr")
    extensions = []
    for name, data in arrays.items():
        if data is None:
            continue
        if name == "sci":
            header: Mapping[str, Any] = sci_header
        elif name in ("err",) or name.startswith("var_"):
            header = {"BUNIT": bunit if name == "err" else f"({bunit})**2"}
        else:
            header = {}
        extensions.append(io.Extension(name.upper(), np.ascontiguousarray(data), header))
    extensions += [io.Extension(name, data, table=True) for name, data in tables.items() if data is not None]
    io.write_fits(path, primary, extensions)
    return path


def _write_slabs(tmp: str, offsets: Mapping[str, int], index: int, sci: np.ndarray, err: np.ndarray) -> int:
    """Write one science integration's aligned references (SCI and ERR slabs)."""
    written = io.write_slab(tmp, offsets["SCI"], index, sci[0], np.float32)
    return written + io.write_slab(tmp, offsets["ERR"], index, err[0], np.float32)


def _finish_stream(tmp: str, path: str, tables: Mapping[str, np.ndarray], written: list[int]) -> str:
    """Append the small tables and rename the streamed file into place."""
    for name, table in tables.items():
        io.append_table(tmp, name, table, {})
    Path(tmp).replace(path)
    return path


def shifts_table(shifts: np.ndarray, ref_source: np.ndarray, ref_int: np.ndarray) -> np.ndarray:
    """Rows ``(integration, ref, source, int_number, sx, sy, beta)`` for the SHIFTS extension.

    Parameters
    ----------
    shifts : ndarray, (integration, ref, 3) or (ref, 3)
        Fitted (sx, sy, beta); 3-D psfalign (``first``) is integration 0.
    ref_source, ref_int : ndarray, (ref,)
        Each reference plane's PSF file name and integration number.

    Returns
    -------
    ndarray
        Structured array, one row per fitted pair.
    """
    s = shifts.reshape(-1, shifts.shape[-2], 3)
    n_int, n_ref = s.shape[:2]
    table = np.zeros(n_int * n_ref, dtype=[("integration", "i4"), ("ref", "i4"), ("ref_source", "S64"),
                                          ("ref_int", "i4"), ("sx", "f8"), ("sy", "f8"), ("beta", "f8")])
    table["integration"] = np.repeat(np.arange(n_int), n_ref)
    table["ref"] = np.tile(np.arange(n_ref), n_int)
    table["ref_source"] = np.tile(np.asarray(ref_source, dtype="S64"), n_int)
    table["ref_int"] = np.tile(np.asarray(ref_int), n_int)
    table["sx"], table["sy"], table["beta"] = s.reshape(-1, 3).T
    return table


def _delayed_shifts_table(aligned: xr.Dataset) -> Delayed:
    return dask.delayed(shifts_table)(_whole(aligned["shifts"].data), aligned["source"].values,
                                      aligned["int_number"].values)


def _psfalign(path: Path, aligned: xr.Dataset, primary: dict[str, Any], sci_header: Mapping[str, Any],
              prov: np.ndarray) -> tuple[Delayed, Path]:
    tables = {"SHIFTS": _delayed_shifts_table(aligned), "C3D_PROV": prov}
    if schema.INTEGRATION not in aligned["sci"].dims:
        arrays = {v: _whole(aligned[v].data) for v in ("sci", "err", "dq")}
        return dask.delayed(write_cube)(str(path), primary, sci_header, arrays, tables), path
    tmp = path.with_name(f".{path.name}.partial")
    shape = aligned["sci"].shape
    bunit = sci_header.get("BUNIT", "MJy/sr")
    specs = [io.ExtensionSpec("SCI", shape, np.dtype(np.float32), dict(sci_header)),
             io.ExtensionSpec("ERR", shape, np.dtype(np.float32), {"BUNIT": bunit}),
             io.ExtensionSpec("DQ", shape, np.dtype(np.uint32), {})]
    offsets = dask.delayed(io.preallocate_fits)(str(tmp), primary, specs)
    sci_blocks = aligned["sci"].data.to_delayed(optimize_graph=False).ravel()
    err_blocks = aligned["err"].data.to_delayed(optimize_graph=False).ravel()
    written = [dask.delayed(_write_slabs)(str(tmp), offsets, i, s, e)
               for i, (s, e) in enumerate(zip(sci_blocks, err_blocks, strict=True))]
    return dask.delayed(_finish_stream)(str(tmp), str(path), tables, written), tmp


def plan(
    products: Any, inputs: Any, config: Coron3Config, out: Path, provenance: Provenance
) -> tuple[list[Delayed], dict[str, Any], list[Path]]:
    """Plan the write tasks of every product.

    Parameters
    ----------
    products : pipeline.Products
        Lazy products.
    inputs : pipeline.Inputs
        The run's inputs (for association bookkeeping).
    config : Coron3Config
        Resolved parameters (which products to save).
    out : Path
        Output directory.
    provenance : Provenance
        Recorded in every product.

    Returns
    -------
    tasks : list of Delayed
        Each returns the path it wrote.
    shifts : dict
        psfalign name to the lazy fitted-parameter array (small; returned to the client).
    partials : list of Path
        Temporary names to remove if the run fails.
    """
    asn = inputs.association
    asn_cards = {"ASNPOOL": asn.asn_pool, "ASNTABLE": asn.path.name}
    tasks: list[Delayed] = []
    shifts: dict[str, Any] = {}
    partials: list[Path] = []
    for kind, name, ds in products.items():
        if kind == "crfints" and not config.save_results:
            continue
        path = out / name
        sources = [ds.attrs.get("filename", "")] if kind != "psfstack" else list(dict.fromkeys(ds["source"].values))
        prov = provenance_table(provenance, sources)
        steps = ds.attrs.get("steps", {})
        if kind == "psfalign":
            shifts[name] = _whole(ds["shifts"].data)
            if not config.save_psfalign:
                continue
            primary = product_primary(ds.attrs["primary_header"], filename=name, steps=steps, asn=asn_cards,
                                      datamodel="QuadModel" if ds["sci"].ndim == 4 else "CubeModel")
            task, partial = _psfalign(path, ds, primary, clean_header(ds.attrs["sci_header"]), prov)
            tasks.append(task)
            partials.append(partial)
            continue
        if kind == "i2d":
            first = inputs.science[0].attrs
            primary = product_primary({**first["primary_header"], **ds.attrs.get("exposure_cards", {})},
                                      filename=name, datamodel="ImageModel", steps=steps, asn=asn_cards)
            sci_header = {"BUNIT": ds.attrs.get("BUNIT", "MJy/sr"), **ds.attrs["wcs_header"],
                          **ds.attrs.get("sci_cards", {})}
            arrays = {v: _whole(ds[v].data) for v in _IMAGE_VARS if v in ds}
            tables: dict[str, Any] = {"C3D_PROV": prov}
        else:
            primary = product_primary(ds.attrs["primary_header"], filename=name, datamodel="CubeModel",
                                      steps=steps, asn=asn_cards)
            sci_header = clean_header(ds.attrs["sci_header"])
            arrays = {v: _whole(ds[v].data) for v in _CUBE_VARS if v in ds}
            tables = {"INT_TIMES": _int_times(ds) if kind != "psfstack" else None, "C3D_PROV": prov}
        tasks.append(dask.delayed(write_cube)(str(path), primary, sci_header, arrays, tables))
        partials.append(path.with_name(f".{path.name}.{os.getpid()}.partial"))
    return tasks, shifts, partials
