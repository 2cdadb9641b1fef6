"""SHA-256 checksums of input and product files, with a cache keyed by size and modification time.

A campaign re-checks every input of every association at each rerun to decide whether its
products are still current; reading terabytes again would dominate a resume.  A file whose
(size, ``st_mtime_ns``) pair is unchanged since it was last hashed keeps its checksum, the
same rule ``make`` and ``rsync`` use: a rewrite that keeps both (same size, the clock set
back) goes unnoticed, and ``campaign --force`` redoes everything regardless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coron3_dask.files.fits_read import InputError

__all__ = ["FileDigest", "digest", "sha256_of"]

_BLOCK = 1 << 20

#: ``cache(path, size, mtime_ns) -> sha256 or None`` and ``store(path, size, mtime_ns, sha256)``
Lookup = Callable[[str, int, int], str | None]
Store = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class FileDigest:
    """A file's identity: absolute path, size in bytes and SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file's content, read in 1 MiB blocks (hex digest).

    Raises
    ------
    InputError
        The file cannot be read, naming it.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read for its checksum: {exc.strerror or exc}") from None
    return h.hexdigest()


def digest(path: str | Path, lookup: Lookup | None = None, store: Store | None = None) -> FileDigest:
    """Size and SHA-256 of a file, from the cache when its size and mtime are unchanged.

    Parameters
    ----------
    path : path
        The file.
    lookup, store : callable, optional
        The cache (e.g. a campaign database's); without them the file is always read.

    Returns
    -------
    FileDigest

    Raises
    ------
    InputError
        The file is missing or unreadable, naming it.
    """
    name = str(Path(path).resolve())
    try:
        st = Path(name).stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read for its checksum: {exc.strerror or exc}") from None
    known = lookup(name, st.st_size, st.st_mtime_ns) if lookup else None
    if known is None:
        known = sha256_of(name)
        if store:
            store(name, st.st_size, st.st_mtime_ns, known)
    return FileDigest(name, st.st_size, known)
