"""One writer per output directory: an advisory lock held for the whole of a run.

:class:`OutputLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``DIR/.coron3_dask.lock``.  A
second run on the same directory is refused at once with :class:`OutputLockedError`, whose
one-line message names the directory and the holder (host, pid, start time, association),
read from the lock file that the holder writes right after taking the lock.

Design notes
------------
* The lock belongs to the open file description, not to the process: every
  :meth:`OutputLock.acquire` opens the file anew, so two runs in one process (threads, tests)
  exclude each other exactly as two processes do.  The descriptor is opened close-on-exec, so
  spawned workers never inherit it; a child *forked* without exec while the lock is held
  would keep it held until that child exits too.
* A crashed run cannot leave the directory locked: the kernel drops a flock when the last
  descriptor of its open file description is closed, which includes the process dying (even
  by SIGKILL).  The stale lock file left behind is harmless (its content is rewritten by the
  next holder).
* The lock file is unlinked on release, *only while still holding the lock*, so a finished
  run leaves nothing but its products behind.  That unlink would race with a run that opened
  the old file just before it and locks it just after: such a run holds a lock on a file no
  longer reachable by name.  :meth:`OutputLock.acquire` therefore checks, after locking, that
  the path still names the very file it locked (same device and inode) and otherwise starts
  over; with that check the unlink is safe.  Only a person deleting the lock file by hand
  while it is held can defeat the lock.
* On network filesystems flock is only as good as the client's lock support (Linux NFS
  clients map it onto NFS byte-range locks, which work across machines).  A filesystem that
  refuses flock altogether raises :class:`~coron3_dask.files.errors.WriteError`
  ("cannot lock ...") rather than running unprotected.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from coron3_dask.files.errors import WriteError, name_errors
from coron3_dask.files.fits_read import InputError

__all__ = ["LOCK_NAME", "OutputLock", "OutputLockedError", "describe_holder"]

#: name of the lock file inside the output directory (hidden: never a product)
LOCK_NAME = ".coron3_dask.lock"

#: how long a refused run waits for a holder that has just taken the lock to name itself
_HOLDER_WAIT_S = 1.0


class OutputLockedError(InputError):
    """Another run holds the output directory.

    Attributes
    ----------
    directory : Path
        The output directory.
    holder : dict
        What the holder wrote into the lock file (``host``, ``pid``, ``started``,
        ``association``); empty if it could not be read.
    """

    def __init__(self, directory: Path, holder: dict[str, Any], lock_path: Path) -> None:
        super().__init__(
            f"output directory {directory} is in use by another coron3-dask run ({describe_holder(holder)}; "
            f"lock file {lock_path}): wait for it to finish or write elsewhere"
        )
        self.directory = directory
        self.holder = holder

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by the constructor's arguments (the message is rebuilt from them)."""
        return (type(self), (self.directory, self.holder, self.directory / LOCK_NAME))


def describe_holder(holder: dict[str, Any]) -> str:
    """One-line description of a lock holder, e.g. ``pid 4242 on node7, started ..., association a.json``.

    Parameters
    ----------
    holder : dict
        Content of a lock file, as written by :meth:`OutputLock.acquire`.

    Returns
    -------
    str
    """
    if not holder:
        return "holder unknown: the lock file is empty or unreadable"
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    if holder.get("started"):
        parts.append(f"started {holder['started']}")
    if holder.get("association"):
        parts.append(f"association {holder['association']}")
    return ", ".join(parts).replace("\n", " ")


def run_is_live(directory: str | Path, run_token: str) -> bool:
    """Tell whether run ``run_token`` still holds ``directory``'s lock and has not been abandoned.

    Read from the lock file (it may be called on a worker that shares the filesystem).
    """
    try:
        holder = json.loads((Path(directory) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return False
    return holder.get("run_token") == run_token and not holder.get("abandoned", False)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _read_holder(fd: int) -> dict[str, Any]:
    """Read the holder's self-description from the locked file open as ``fd`` (wait briefly for it)."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        try:
            holder = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
            if isinstance(holder, dict):
                return holder
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return {}
        time.sleep(0.02)  # the holder writes its name right after taking the lock


class OutputLock:
    """Advisory, exclusive lock on an output directory (see the module notes).

    Parameters
    ----------
    directory : path
        The output directory (must exist).
    association : path or str, optional
        Recorded in the lock file, for the message another run gets.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, OutputLock(d, association="a_asn.json") as held:
    ...     try:
    ...         OutputLock(d).acquire()
    ...     except OutputLockedError as exc:
    ...         print("refused:", exc.holder["association"])
    refused: a_asn.json
    """

    def __init__(self, directory: str | Path, *, association: str | Path | None = None, run_token: str = "") -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.association = "" if association is None else str(association)
        self.run_token = run_token
        self._holder: dict[str, Any] = {}
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock without waiting, then write the holder's description into the lock file.

        Returns
        -------
        OutputLock
            ``self``.

        Raises
        ------
        OutputLockedError
            Another run (in this or another process) holds the directory.
        WriteError
            The lock file cannot be created, locked or written.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this OutputLock")
        while True:
            with name_errors(self.path, "create"):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
                os.close(fd)
                if holder is None:
                    raise WriteError.wrap(exc, self.path, "lock") from exc
                raise OutputLockedError(self.directory, holder, self.path) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the previous holder unlinked it as we opened it: lock the file now named
        self._fd = fd
        try:
            started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": started}
            self._write_holder({**holder, "association": self.association, "run_token": self.run_token})
        except BaseException:
            self.release()
            raise
        return self

    def _write_holder(self, holder: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held by this OutputLock")
        self._holder = holder
        with name_errors(self.path):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(holder) + "\n").encode(), 0)

    def abandon(self) -> None:
        """Record in the lock file that this run failed, before its partial files are removed.

        A task of the run that pre-allocates a product checks :func:`run_is_live` after
        creating its file and removes it again if the run was abandoned meanwhile, so a
        straggling task never leaves a file behind.
        """
        self._write_holder({**self._holder, "abandoned": True})

    def release(self) -> None:
        """Unlink the lock file (while still holding it) and drop the lock; a no-op if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a lock file left behind is harmless: the next holder reuses it
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> OutputLock:
        """Acquire (see :meth:`acquire`)."""
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release (see :meth:`release`)."""
        self.release()
