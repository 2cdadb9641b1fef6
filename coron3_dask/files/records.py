"""Small whole files next to the products: JSON records, list files, figures, output directories.

Every write goes through :func:`~coron3_dask.files.fits_stream.atomic_path` (a temporary sibling
renamed into place), so a crash never leaves a half-written record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coron3_dask.files.fits_read import InputError
from coron3_dask.files.fits_stream import atomic_path, write_text

__all__ = ["ensure_dir", "find_associations", "read_json", "read_list", "save_figure", "write_json"]


def ensure_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create a directory (and parents) if missing; return its absolute path.

    Parameters
    ----------
    path : path
        The directory.
    what : str
        What it is, for the error message (e.g. ``"--output-dir"``).

    Returns
    -------
    Path
        Absolute (workers may run in another working directory).

    Raises
    ------
    InputError
        ``path`` exists and is not a directory, or cannot be created (naming it and why).
    """
    out = Path(path).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{what} {out} cannot be created: {exc.strerror or exc}") from None
    return out


def read_json(path: str | Path) -> Any:
    """Read a JSON file.

    Raises
    ------
    InputError
        Unreadable or invalid JSON, naming the file.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON: {exc}") from None


def write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (numpy scalars written as floats); return the path."""
    return write_text(path, json.dumps(obj, indent=indent, default=float))


def read_list(path: str | Path) -> list[Path]:
    """Paths from a text file, one per line (``#`` comments and blank lines ignored).

    Relative paths are taken relative to the list file.

    Raises
    ------
    InputError
        The list file cannot be read, naming it.
    """
    base = Path(path).resolve().parent
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read list file: {exc}") from None
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [(base / line).resolve() for line in lines if line]


def save_figure(figure: Any, path: str | Path, **savefig: Any) -> Path:
    """Save a matplotlib figure atomically (``figure.savefig(tmp, **savefig)``, then rename)."""
    out = Path(path)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, **savefig)
    return out


def find_associations(specs: Sequence[str | Path], pattern: str = "*_asn.json") -> list[Path]:
    """Association files named by ``specs``: files as given, directories searched recursively, globs expanded.

    Parameters
    ----------
    specs : sequence of path or str
        ASN files, directory trees (every ``pattern`` file below, sorted) or glob patterns
        (``*``, ``?``, ``[``; ``**`` crosses directories).
    pattern : str
        File-name pattern inside directories.

    Returns
    -------
    list of Path
        Absolute paths in the order given, each once.

    Raises
    ------
    InputError
        A spec names nothing (a missing file, an empty directory, a glob without a match).
    """
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text).expanduser()
        if path.is_dir():
            hits = sorted(path.rglob(pattern))
        elif any(c in text for c in "*?["):
            anchor = Path(text).anchor
            hits = sorted(Path(anchor).glob(text[len(anchor) :]) if anchor else Path().glob(text))
        else:
            hits = [path] if path.is_file() else []
        if not hits:
            what = (
                "directory has no " + pattern if path.is_dir() else "no such file" if not path.exists() else "no match"
            )
            raise InputError(f"{text}: {what}")
        found.extend(h.resolve() for h in hits)
    return list(dict.fromkeys(found))
