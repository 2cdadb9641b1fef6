"""The tasks that write one product: pre-allocate, write blocks, finish (tables and rename).

Planned by :func:`coron3_dask.files.writers.stream_product`; each runs on a worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coron3_dask.files import fits_stream, lock

__all__ = ["create", "finish", "write_blocks"]


def create(
    tmp: str, primary: Mapping[str, Any], specs: Sequence[fits_stream.ExtensionSpec], run_token: str | None = None
) -> dict[str, int]:
    """Task: pre-allocate one product under its partial name; return each extension's data offset.

    Runs inside the graph, just before the product's first block is written.  With a
    ``run_token`` (the run holds the directory's ``OutputLock``): if the run no longer holds
    the directory or was abandoned (``lock.run_is_live``), the file is removed again and the
    task fails: the run's cleanup either sees the file or this task sees the abandoned run
    (``OutputLock.abandon`` is written before the cleanup).
    """
    path = Path(tmp)
    try:
        offsets = fits_stream.preallocate_fits(path, dict(primary), specs)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if run_token is not None and not lock.run_is_live(path.parent, run_token):
        path.unlink(missing_ok=True)
        raise FileNotFoundError(f"{tmp}: the run was abandoned; not written")
    return offsets


def write_blocks(
    tmp: str,
    offsets: Mapping[str, int],
    names: Sequence[str],
    dtypes: Sequence[Any],
    start: tuple[int, int],
    n_second: Sequence[int],
    *blocks: np.ndarray,
) -> int:
    """Task: write the computed blocks at one block position of several extensions; return the bytes.

    A block may be chunked on the first two axes (later axes whole): each of its rows along
    the first axis is then one contiguous run of the file, at flat index
    ``(start[0] + i) * n_second + start[1]`` over the first two axes.  ``tmp`` is this run's
    private partial file (pre-allocated by :func:`create`); a system error is raised as
    ``WriteError`` naming it.
    """
    total = 0
    for name, dtype, second, block in zip(names, dtypes, n_second, blocks, strict=True):
        if block.ndim < 3:
            total += fits_stream.write_block(tmp, offsets[name], start[0], block, dtype)
            continue
        for i, row in enumerate(block):
            total += fits_stream.write_block(tmp, offsets[name], (start[0] + i) * second + start[1], row, dtype)
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
