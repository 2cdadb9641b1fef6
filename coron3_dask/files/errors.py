"""Write errors that name the file: :class:`WriteError` and :func:`name_errors`.

Every writer of the files layer wraps its system calls in :func:`name_errors`, so a full disk
or a permission problem reads ``cannot write /out/.x_psfsub.fits.ab12cd34.partial: [Errno 28]
No space left on device`` (one line, as the CLI prints it) instead of a bare errno.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["WriteError", "name_errors"]


class WriteError(OSError):
    """A system error while writing an output file; ``str()`` names the file on one line.

    ``errno`` and ``strerror`` are those of the original error (also kept as ``__cause__``),
    ``filename`` is the file being written, e.g.
    ``cannot write /out/.x_psfsub.fits.ab12cd34.partial: [Errno 28] No space left on device``.
    """

    path: str
    action: str
    target: str

    @classmethod
    def wrap(
        cls, exc: OSError, path: str | Path, action: str = "write", target: str | Path | None = None
    ) -> WriteError:
        """Return the error for ``exc`` raised while doing ``action`` on ``path``.

        Parameters
        ----------
        exc : OSError
            The original error.
        path : path
            The file being written (or renamed).
        action : str
            What was being done: ``"write"``, ``"create"``, ``"rename"``, ``"lock"``.
        target : path, optional
            The destination of a rename.

        Returns
        -------
        WriteError
        """
        err = cls(exc.errno, exc.strerror or str(exc) or type(exc).__name__, str(path))
        # kept in __dict__ too: it travels with the pickle from a worker to the client
        err.path, err.action, err.target = str(path), action, "" if target is None else str(target)
        return err

    def __str__(self) -> str:
        """One line: ``cannot ACTION PATH[ to TARGET]: [Errno N] reason``."""
        where = self.__dict__.get("path", self.filename)
        if self.__dict__.get("target"):
            where = f"{where} to {self.__dict__['target']}"
        reason = f"[Errno {self.errno}] {self.strerror}" if self.errno is not None else str(self.strerror)
        return f"cannot {self.__dict__.get('action', 'write')} {where}: {reason}".replace("\n", " ")


@contextlib.contextmanager
def name_errors(path: str | Path, action: str = "write", target: str | Path | None = None) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block as a :class:`WriteError` naming ``path``.

    Parameters
    ----------
    path : path
        The file being written.
    action : str
        What the block does to it (``"write"``, ``"rename"``, ...).
    target : path, optional
        The destination of a rename.

    Yields
    ------
    None
    """
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError.wrap(exc, path, action, target) from exc
