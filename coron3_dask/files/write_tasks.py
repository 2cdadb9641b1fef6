"""The tasks that write one product: block writes (the first pre-allocates the file) and finish.

Planned by :func:`coron3_dask.files.writers.stream_product`; each runs on a worker.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coron3_dask.files import fits_stream, lock

__all__ = ["ProductFile", "ensure_file", "finish", "write_blocks"]


@dataclass(frozen=True)
class ProductFile:
    """What every write task of one product needs to find or create its partial file.

    Attributes
    ----------
    tmp : str
        The run's private partial name of the product.
    primary : mapping
        PRIMARY header cards.
    specs : tuple of ExtensionSpec
        Image extensions in file order.
    run_token : str or None
        Set when the run holds the directory's ``OutputLock`` under this token: a file is then
        only ever created while the run is live (``lock.run_is_live``).
    """

    tmp: str
    primary: Mapping[str, Any]
    specs: tuple[fits_stream.ExtensionSpec, ...]
    run_token: str | None = None


#: data offsets of the partial files this process has created or found, by partial name
_OFFSETS: dict[str, dict[str, int]] = {}
_CREATING = threading.Lock()


def ensure_file(product: ProductFile) -> dict[str, int]:
    """Pre-allocate the product's partial file if no writer has yet; return its data offsets.

    Called by each block write, so the file is created by the product's first write, however
    the scheduler orders the tasks (a separate pre-allocation task could be run late and keep
    every computed block of the product in memory meanwhile).  Writers in other processes
    race safely: each pre-allocates a private scratch file and hard-links it to the partial
    name, and only the first link wins (the layouts are identical).  If the run no longer
    holds its output directory or was abandoned, a file just created is removed again and
    the write fails: the run's cleanup either sees the file or the writer sees the abandoned
    run (``OutputLock.abandon`` is written before the cleanup).
    """
    path = Path(product.tmp)
    with _CREATING:
        if product.tmp in _OFFSETS and path.exists():
            return _OFFSETS[product.tmp]
        if path.exists():
            offsets = fits_stream.data_offsets(product.primary, product.specs)
        else:
            scratch = path.with_name(f".{os.getpid()}-{threading.get_ident()}{path.name}")
            try:
                offsets = fits_stream.preallocate_fits(scratch, product.primary, product.specs)
                with contextlib.suppress(FileExistsError):  # another process's writer was first
                    os.link(scratch, path)
            finally:
                scratch.unlink(missing_ok=True)
            if product.run_token is not None and not lock.run_is_live(path.parent, product.run_token):
                path.unlink(missing_ok=True)
                raise FileNotFoundError(f"{product.tmp}: the run was abandoned; not written")
        _OFFSETS[product.tmp] = offsets
        return offsets


def write_blocks(
    product: ProductFile,
    names: Sequence[str],
    dtypes: Sequence[Any],
    start: tuple[int, int],
    n_second: Sequence[int],
    *blocks: np.ndarray,
) -> int:
    """Task: write the computed blocks at one block position of several extensions; return the bytes.

    A block may be chunked on the first two axes (later axes whole): each of its rows along
    the first axis is then one contiguous run of the file, at flat index
    ``(start[0] + i) * n_second + start[1]`` over the first two axes.  The product's private
    partial file is created by its first write (:func:`ensure_file`); a system error is
    raised as ``WriteError`` naming it.
    """
    offsets = ensure_file(product)
    total = 0
    for name, dtype, second, block in zip(names, dtypes, n_second, blocks, strict=True):
        if block.ndim < 3:
            total += fits_stream.write_block(product.tmp, offsets[name], start[0], block, dtype)
            continue
        for i, row in enumerate(block):
            total += fits_stream.write_block(product.tmp, offsets[name], (start[0] + i) * second + start[1], row, dtype)
    return total


def finish(tmp: str, path: str, table_names: Sequence[str], expected: int, after: object, *values: Any) -> str:
    """Append the small tables and rename this run's complete partial file into place.

    ``values`` are the tables (one per name in ``table_names``, None to skip) followed by the
    byte counts of the product's block writes.  Runs only after every block write succeeded
    and after ``after`` (the run's guard, which raises when some input integration has
    no usable pixel); the total is checked against ``expected`` so that a file is never renamed
    into place unless all of its data was written.  The partial file is pinned by its inode
    before anything is appended: if the run failed meanwhile and removed it, nothing is
    recreated under its name and nothing is renamed (a straggling task cannot put a
    table-only file over an earlier product).
    """
    tables = dict(zip(table_names, values[: len(table_names)], strict=True))
    written = values[len(table_names) :]
    if sum(written) != expected:
        raise RuntimeError(f"{tmp}: {sum(written)} data bytes written, expected {expected}; not renamed to {path}")
    with fits_stream.name_errors(tmp, "open"):
        fd = os.open(tmp, os.O_RDONLY)  # fails if the run's cleanup removed it
    try:
        inode = os.fstat(fd).st_ino
        for name, table in tables.items():
            if table is not None:
                fits_stream.append_table(tmp, name, table, {})
        with fits_stream.name_errors(tmp, "rename", path):
            if Path(tmp).stat().st_ino != inode:  # removed (and the table appended to a new file): drop it
                Path(tmp).unlink(missing_ok=True)
                raise FileNotFoundError(f"{tmp} was removed while it was being finished")
            Path(tmp).replace(path)
    finally:
        os.close(fd)
    return path
