"""A per-user cache of deserialised gWCS objects, keyed by the bytes of the ASDF extension.

Reading a gWCS from a data model's ASDF extension makes ``asdf`` load every installed
extension manifest (about a second, pure-Python YAML) before the first file; unpickling the
same object takes ~0.2 s.  The cache holds ``pickle`` files named by the SHA-256 of the ASDF
bytes and of the ``gwcs``/``astropy``/``asdf`` versions, so an entry is only ever reused for
identical input under identical libraries.  It lives in ``$CORON3_DASK_CACHE`` (default
``$XDG_CACHE_HOME/coron3_dask`` or ``~/.cache/coron3_dask``), is created private to the user
(mode 0700, the only place pickles are read from), and ``CORON3_DASK_CACHE=off`` disables it.
Any failure to read or write an entry is ignored: the cache only ever saves time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "load", "store"]

log = logging.getLogger(__name__)


def cache_dir() -> Path | None:
    """Return the gWCS cache directory (not created), or None when the cache is off."""
    root = os.environ.get("CORON3_DASK_CACHE", "")
    if root.lower() in ("off", "0", "no", "false"):
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = str(Path(base) / "coron3_dask")
    return Path(root) / "gwcs"


def _key(raw: bytes) -> str:
    versions = [sys.version.split()[0], *(metadata.version(p) for p in ("gwcs", "astropy", "asdf"))]
    return hashlib.sha256(raw + "|".join(versions).encode()).hexdigest()


def load(raw: bytes) -> Any | None:
    """Return the cached gWCS for these ASDF bytes, or None (absent, off or unreadable)."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / f"{_key(raw)}.pickle"
    try:
        if path.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o077:
            return None  # only the user's own private cache is trusted
        return pickle.loads(path.read_bytes())  # the user's own 0700 cache
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a bad entry costs a re-read, never a failed run
        log.info("gWCS cache entry %s unusable (%s); reading the ASDF extension", path, exc)
        return None


def store(raw: bytes, wcs: Any) -> None:
    """Cache the gWCS deserialised from these ASDF bytes (atomically; failures only logged)."""
    directory = cache_dir()
    if directory is None:
        return
    path = directory / f"{_key(raw)}.pickle"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.write_bytes(pickle.dumps(wcs, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation only
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.info("could not cache the gWCS in %s: %s", directory, exc)
