"""Read-only access to a campaign output root, for the dashboard and the report.

Three things, none of which ever creates or changes a file:

* :func:`served_file` decides whether a relative path names a file that may be shown (a regular
  file inside the root, symlinks resolved, not hidden, not the state database);
* :func:`file_bytes` / :class:`FileStream` read it (whole, or in blocks for streaming);
* :func:`campaign_snapshot` reads the state database (read-only, creating nothing: see
  :meth:`CampaignDB._open_readonly`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from coron3_dask.files.campaign_db import DB_NAME, CampaignDB
from coron3_dask.files.fits_read import InputError

__all__ = ["CHUNK_BYTES", "FileStream", "campaign_snapshot", "file_bytes", "is_refused_name", "served_file"]

#: block size when streaming a file
CHUNK_BYTES = 1 << 20


def is_refused_name(relative: str) -> bool:
    """Whether a relative path is refused on its spelling alone.

    Refused: empty, absolute, backslashes, NUL or other control characters, empty, ``.`` or
    ``..`` components, hidden components (leading ``.``, e.g. partial files), and the state
    database with its journal files.
    """
    if not relative or relative.startswith("/") or "\\" in relative:
        return True
    if any(ord(c) < 32 or ord(c) == 127 for c in relative):
        return True
    parts = relative.split("/")
    if any(not p or p.startswith(".") for p in parts):
        return True
    return parts[-1].startswith(DB_NAME) or PurePosixPath(parts[-1]).suffix in {".sqlite", ".sqlite-wal", ".sqlite-shm"}


def served_file(root: str | Path, relative: str) -> Path | None:
    """Return the regular file that ``relative`` names inside ``root``, or None if it may not be shown.

    Parameters
    ----------
    root : path
        The campaign output root.
    relative : str
        ``/``-separated path below ``root`` (already percent-decoded, once).

    Returns
    -------
    Path or None
        The real path (symlinks resolved, inside the real ``root``), or None when the name is
        refused (:func:`is_refused_name`), missing, not a regular file, or resolves outside ``root``.
    """
    if is_refused_name(relative):
        return None
    try:
        base = Path(root).resolve(strict=True)
        real = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not real.is_relative_to(base) or real == base or not real.is_file():
        return None
    if is_refused_name(real.relative_to(base).as_posix()):  # a symlink to the database or a hidden file
        return None
    return real


def file_bytes(path: str | Path) -> bytes:
    """Read a whole file's bytes (small files: thumbnails embedded in the report).

    Raises
    ------
    InputError
        Unreadable, naming the file.
    """
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


class FileStream:
    """An open file read in blocks, for streaming it (its size is the opened file's, not the name's).

    Parameters
    ----------
    path : path
        The file; its last link must not be a symlink.
    block_size : int
        Bytes per block.

    Raises
    ------
    InputError
        Cannot be opened, or not a regular file (naming it).
    """

    def __init__(self, path: str | Path, block_size: int = CHUNK_BYTES) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self._stream = os.fdopen(fd, "rb")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            self._stream.close()
            raise InputError(f"{path}: not a regular file")
        self.size, self.mtime, self._block = int(info.st_size), float(info.st_mtime), block_size

    def __iter__(self) -> Iterator[bytes]:
        while block := self._stream.read(self._block):
            yield block

    def close(self) -> None:
        """Close the file."""
        self._stream.close()

    def __enter__(self) -> FileStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def campaign_snapshot(root: str | Path) -> dict[str, Any] | None:
    """Read the campaign state of an output root (:meth:`CampaignDB.snapshot`); None before it exists.

    Never creates or modifies a file (``CampaignDB(..., readonly=True)``).

    Raises
    ------
    InputError
        Not a usable campaign database (corrupt, or written by a newer coron3_dask).
    sqlite3.OperationalError
        The writer held the database locked for longer than the timeout.
    """
    path = Path(root) / DB_NAME
    if not path.is_file():
        return None
    with CampaignDB(path, readonly=True) as db:
        return db.snapshot()
