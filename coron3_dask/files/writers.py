"""Turn lazy products into write tasks that run on the workers.

Every product is streamed: its file is pre-allocated (headers written, data areas reserved)
by its first block write, under a hidden name private to the run, ``.{name}.{run_token}.partial``;
each block of each extension is written by a task right after the task that computed it (no
product is ever assembled whole, on the client or on a worker), and a final task, which
depends on every block write, appends the small tables and renames the file into place.  No
other run can touch a partial file (its token is random), and a product is renamed into place
only once every one of its bytes was written by this run.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from coron3_dask import schema
from coron3_dask.files import fits_stream, write_tasks
from coron3_dask.files.product_tables import klmodes_table, shifts_table
from coron3_dask.files.products import Provenance, clean_header, product_primary, provenance_table

__all__ = [
    "new_run_token",
    "partial_name",
    "plan",
    "remove_partials",
    "remove_stale_partials",
    "stream_product",
]

log = logging.getLogger(__name__)

_CUBE_VARS = ("sci", "err", "dq", *schema.VAR_NAMES, "area")
_IMAGE_VARS = ("sci", "err", "con", "wht", *schema.VAR_NAMES)


def _whole(array: Any) -> Delayed:
    """Return a Delayed of a (small) whole array, built from its *unoptimised* blocks.

    Handing a dask array straight to ``dask.delayed`` optimises (fuses and re-keys) its
    graph, so tasks it shares with other products (alignment, KLIP) would run again.
    """
    blocks = array.to_delayed(optimize_graph=False)
    # positional: a nested list of Delayed would make dask materialise their whole graph
    return dask.delayed(_block, pure=True)(blocks.shape, *blocks.ravel().tolist())


def _block(grid: tuple[int, ...], *blocks: np.ndarray) -> np.ndarray:
    """Task: ``np.block`` of the blocks of a ``grid``-shaped block layout (given in C order)."""

    def nest(items: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[Any]:
        if len(shape) == 1:
            return list(items)
        step = len(items) // shape[0]
        return [nest(items[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]

    return np.block(nest(blocks, tuple(grid)))


def new_run_token() -> str:
    """Return a fresh random token (8 hex digits) naming one run's temporary files."""
    return secrets.token_hex(4)


def partial_name(path: Path, run_token: str) -> Path:
    """Return the temporary name of product ``path`` while run ``run_token`` writes it.

    Parameters
    ----------
    path : Path
        Final file name.
    run_token : str
        The run's token (:func:`new_run_token`).

    Returns
    -------
    Path
        ``path.parent / f".{path.name}.{run_token}.partial"``.
    """
    return path.with_name(f".{path.name}.{run_token}.partial")


def remove_partials(directory: Path, run_token: str, partials: Sequence[Path] = ()) -> None:
    """Remove one run's partial files after it failed (a file that cannot be removed is logged).

    Parameters
    ----------
    directory : Path
        The output directory.
    run_token : str
        The failed run's token: every ``.*.{run_token}.partial`` there is its own (also those
        of a plan that failed half-way, before it could return its list).
    partials : sequence of Path
        The partial names the run's plan returned.
    """
    _unlink_all({*partials, *directory.glob(f".*.{run_token}.partial")})


def _unlink_all(paths: Iterable[Path]) -> None:
    """Remove each file, logging (not raising) those that cannot be removed."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)


def remove_stale_partials(directory: Path) -> list[Path]:
    """Remove partial files that dead runs left in an output directory; return what was removed.

    Call only while holding the directory's :class:`~coron3_dask.files.lock.OutputLock`: then
    no live run can own a ``.*.partial`` file there (a run killed with SIGKILL cannot clean up
    after itself, and its private names are never reused).
    """
    stale = [p for p in directory.glob(".*.partial") if p.is_file()]
    _unlink_all(stale)
    if stale:
        log.info("removed %d partial file(s) left by an interrupted run in %s", len(stale), directory)
    return stale


def _int_times(exposure: xr.Dataset) -> np.ndarray | None:
    rows = exposure.attrs.get("int_times")
    if not rows:
        return None
    names = list(rows[0])
    dtype = [(n, np.asarray([r[n] for r in rows]).dtype) for n in names]
    return np.array([tuple(r[n] for n in names) for r in rows], dtype=dtype)


def _block_grid(array: Any) -> tuple[Any, int, tuple[tuple[int, ...], ...]]:
    """Rechunk later axes whole; return (array, number of chunked leading axes, their chunks)."""
    first_whole = 1 if array.ndim < 3 else 2
    array = array.rechunk({i: -1 for i in range(first_whole, array.ndim)})
    return array, first_whole, array.chunks[:first_whole]


def stream_product(
    path: Path,
    primary: Mapping[str, Any],
    extensions: Mapping[str, tuple[Any, Mapping[str, Any]]],
    tables: Mapping[str, Any],
    *,
    run_token: str | None = None,
    after: Delayed | None = None,
    locked: bool = False,
) -> tuple[Delayed, Path]:
    """Plan the pre-allocation and the streamed block writes of one FITS product.

    Parameters
    ----------
    path : Path
        Final file name.
    primary : mapping
        PRIMARY header cards.
    extensions : mapping
        EXTNAME to ``(dask array, header cards)``, in file order.  Arrays are written block
        by block, chunked along their first two axes (later axes are made single-chunk);
        extensions chunked alike are written by one task per block position.
    tables : mapping
        EXTNAME to a structured array or a Delayed of one (appended at the end).
    run_token : str, optional
        The run's token, making the temporary name private to the run (:func:`partial_name`);
        default a fresh one.
    after : Delayed, optional
        A task that must succeed before the product is renamed into place (the run's guard).
    locked : bool
        The run holds the directory's ``OutputLock`` under ``run_token``: the pre-allocation
        task then creates nothing once the run has failed or ended (a straggler).

    Returns
    -------
    task : Delayed
        Returns ``str(path)`` once the file is complete and renamed.
    partial : Path
        The temporary name (created by the product's first block write; removed by the caller
        if the run fails, see :func:`remove_partials`).
    """
    token = run_token or new_run_token()
    tmp = partial_name(path, token)
    specs = [
        fits_stream.ExtensionSpec(name, tuple(arr.shape), np.dtype(arr.dtype), dict(header))
        for name, (arr, header) in extensions.items()
    ]
    # no pre-allocation task: the product's first block write creates the file (write_tasks.ensure_file)
    product = write_tasks.ProductFile(str(tmp), dict(primary), tuple(specs), token if locked else None)
    groups: dict[tuple[Any, ...], list[tuple[str, Any, int]]] = {}
    for name, (arr, _) in extensions.items():
        arr, _, chunks = _block_grid(arr)
        n_second = arr.shape[1] if arr.ndim >= 3 else 0
        groups.setdefault(chunks, []).append((name, arr, n_second))
    written = []
    for chunks, members in groups.items():
        starts = [list(itertools.accumulate(c[:-1], initial=0)) for c in chunks]
        names, dtypes = [m[0] for m in members], [m[1].dtype for m in members]
        seconds = [m[2] for m in members]
        blocks = [m[1].to_delayed(optimize_graph=False) for m in members]
        for index in np.ndindex(blocks[0].shape):
            start = (starts[0][index[0]], starts[1][index[1]] if len(chunks) == 2 else 0)
            row = [b[index] for b in blocks]
            written.append(dask.delayed(write_tasks.write_blocks)(product, names, dtypes, start, seconds, *row))
    expected = sum(spec.nbytes for spec in specs)
    # tables and byte counts positional: containers of Delayed make dask materialise their graphs
    finish = dask.delayed(write_tasks.finish)
    return finish(str(tmp), str(path), tuple(tables), expected, after, *tables.values(), *written), tmp


def _extensions(ds: xr.Dataset, names: tuple[str, ...], sci_header: Mapping[str, Any]) -> dict[str, Any]:
    bunit = sci_header.get("BUNIT", "MJy/sr")
    units = {"sci": sci_header, "err": {"BUNIT": bunit}}
    return {
        v.upper(): (ds[v].data, units.get(v, {"BUNIT": f"({bunit})**2"} if v.startswith("var_") else {}))
        for v in names
        if v in ds
    }


def _klmodes_layout(ds: xr.Dataset, first: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Model, primary cards and extensions of a KL-mode cube (per exposure or combined)."""
    cards = {
        **ds.attrs.get("klip_cards", {}),
        "KLTRUNC": (
            ",".join(str(int(k)) for k in ds["truncation"].values),
            "KL modes of the planes (KLMODES table)",
        ),
    }
    if schema.INTEGRATION in ds.dims:  # (mode, integration, y, x)
        return (
            "KLModeQuadModel",
            {**ds.attrs["primary_header"], **cards},
            _extensions(ds, ("sci", "err"), clean_header(ds.attrs["sci_header"])),
        )
    sci_header = {"BUNIT": ds.attrs.get("BUNIT", "MJy/sr"), **ds.attrs["wcs_header"], **ds.attrs.get("sci_cards", {})}
    primary = {**first["primary_header"], **ds.attrs.get("exposure_cards", {}), **cards}
    return "KLModeCubeModel", primary, _extensions(ds, ("sci", "err", "wht"), sci_header)


def _psfalign_layout(ds: xr.Dataset) -> tuple[str, xr.Dataset]:
    """Decide the psfalign product layout from the alignment mode (the one place that does).

    ``align_to="each"``: a 4-D ``QuadModel`` ``(integration, ref, y, x)``; ``"first"``: the
    shared reference set as a 3-D ``CubeModel`` ``(ref, y, x)``, as jwst writes it.
    """
    if ds.attrs["align_to"] == "first":
        return "CubeModel", ds.isel({schema.INTEGRATION: 0}, drop=True)
    return "QuadModel", ds


def plan(
    products: Any,
    inputs: Any,
    out: Path,
    provenance: Provenance,
    *,
    save_crfints: bool = True,
    save_psfalign: bool = True,
    run_token: str | None = None,
) -> tuple[list[Delayed], dict[str, Any], list[Path]]:
    """Plan the write tasks of every product.

    Parameters
    ----------
    products : pipeline.Products
        Lazy products.
    inputs : pipeline.Inputs
        The run's inputs (for association bookkeeping).
    out : Path
        Output directory.
    provenance : Provenance
        Recorded in every product.
    save_crfints, save_psfalign : bool
        Whether to write those products (``save_results``, ``save_psfalign``).
    run_token : str, optional
        Names this run's temporary files (``writers.partial_name``); default a fresh one per product.

    Returns
    -------
    tasks : list of Delayed
        Each returns the path it wrote.
    shifts : dict
        psfalign name to a Delayed of the fitted-parameter array (small; returned to the
        client for the log and the run record).
    partials : list of Path
        Temporary names to remove if the run fails.

    Notes
    -----
    psfalign has no DQ extension: jwst's is all zeros by construction (a fresh model's
    default), and ``stdatamodels`` supplies those zeros on open; for the 4-D product that
    saves writing an array as large as SCI.
    """
    asn = inputs.association
    asn_cards = {"ASNPOOL": asn.asn_pool, "ASNTABLE": asn.path.name}
    tasks: list[Delayed] = []
    shifts: dict[str, Any] = {}
    partials: list[Path] = []
    for kind, name, ds in products.items():
        if kind == "crfints" and not save_crfints:
            continue
        if kind == "i2d" or (kind == "klmodes" and schema.INTEGRATION not in ds.dims):
            sources = [p.name for p in asn.science]
        elif kind in ("psfstack", "psfalign"):
            sources = [*ds.attrs.get("science_sources", []), *dict.fromkeys(ds["source"].values.tolist())]
        else:
            sources = [ds.attrs.get("filename", "")]
        tables: dict[str, Any] = {"C3D_PROV": provenance_table(provenance, sources)}
        steps = ds.attrs.get("steps", {})
        if kind == "psfalign":
            shifts[name] = _whole(ds["shifts"].data)
            if not save_psfalign:
                continue
            tables["SHIFTS"] = dask.delayed(shifts_table)(shifts[name], ds["source"].values, ds["int_number"].values)
            model, layout = _psfalign_layout(ds)
            sci_header = clean_header(ds.attrs["sci_header"])
            extensions = _extensions(layout, ("sci", "err"), sci_header)
        elif kind == "klmodes":
            model, primary_cards, extensions = _klmodes_layout(ds, inputs.science[0].attrs)
            tables["KLMODES"] = klmodes_table(ds)
            if schema.INTEGRATION in ds.dims:
                tables["INT_TIMES"] = _int_times(ds)
        elif kind == "i2d":
            first = inputs.science[0].attrs
            primary_cards = {**first["primary_header"], **ds.attrs.get("exposure_cards", {})}
            sci_header = {
                "BUNIT": ds.attrs.get("BUNIT", "MJy/sr"),
                **ds.attrs["wcs_header"],
                **ds.attrs.get("sci_cards", {}),
            }
            model, extensions = "ImageModel", _extensions(ds, _IMAGE_VARS, sci_header)
        else:
            model = "CubeModel"
            sci_header = clean_header(ds.attrs["sci_header"])
            extensions = _extensions(ds, _CUBE_VARS, sci_header)
            if kind != "psfstack":
                tables["INT_TIMES"] = _int_times(ds)
        primary = product_primary(
            primary_cards if kind in ("i2d", "klmodes") else ds.attrs["primary_header"],
            filename=name,
            datamodel=model,
            steps=steps,
            asn=asn_cards,
        )
        guard = getattr(products, "guard", None)
        task, partial = stream_product(
            out / name, primary, extensions, tables, run_token=run_token, after=guard, locked=run_token is not None
        )
        tasks.append(task)
        partials.append(partial)
    return tasks, shifts, partials
