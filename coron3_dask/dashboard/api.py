"""What ``/api/state`` answers: the campaign snapshot with derived figures, as JSON, briefly cached."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from coron3_dask.dashboard.report import REPORT_NAME
from coron3_dask.dashboard.state import association_name, derive, product_dir
from coron3_dask.files import serving
from coron3_dask.files.fits_read import InputError

__all__ = ["STATE_TTL", "StateCache", "state_payload", "to_json"]

#: seconds a snapshot is reused for further requests (several open pages cost one read)
STATE_TTL = 0.5


def state_payload(root: str | Path) -> dict[str, Any]:
    """Return what ``/api/state`` answers: the snapshot, derived figures and links, or why there is none.

    Parameters
    ----------
    root : path
        The campaign output root.

    Returns
    -------
    dict
        ``state``: ``waiting`` (no database yet), ``error`` (unreadable, see ``message``),
        or :func:`~coron3_dask.dashboard.state.derive`'s state; the snapshot's keys, each
        association with ``name`` and ``files_dir`` (its products' directory relative to the
        root) added; ``derived``; ``links`` (``report``: relative URL of the HTML report, or None).
    """
    root = Path(root)
    base: dict[str, Any] = {
        "root": str(root),
        "now": round(time.time(), 3),
        "counts": {"pending": 0, "running": 0, "done": 0, "failed": 0},
        "total": 0,
        "session": None,
        "sessions": [],
        "associations": [],
        "spans": [],
        "derived": None,
        "message": "",
    }
    try:
        snapshot = serving.campaign_snapshot(root)
    except (InputError, sqlite3.Error) as exc:
        return {**base, "state": "error", "message": str(exc), "links": {"report": None}}
    if snapshot is None:
        message = (
            f"No campaign database in {root} yet: this page fills in as soon as "
            f"`coron3-dask campaign ... -o {root}` starts."
        )
        return {**base, "state": "waiting", "message": message, "links": {"report": None}}
    for row in snapshot["associations"]:
        row["name"] = association_name(row)
        row["files_dir"] = product_dir(row, root)
    derived = derive(snapshot)
    report = serving.served_file(root, REPORT_NAME)
    return {
        **base,
        **snapshot,
        "state": derived["state"],
        "derived": derived,
        "links": {"report": f"files/{REPORT_NAME}" if report else None},
    }


class StateCache:
    """The latest ``/api/state`` body, reused for :data:`STATE_TTL` seconds."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._body = b""
        self._at = -math.inf

    def body(self) -> bytes:
        """Return the JSON body, read again when the cached one is older than :data:`STATE_TTL`."""
        with self._lock:
            if time.monotonic() - self._at > STATE_TTL:
                self._body = to_json(state_payload(self._root))
                self._at = time.monotonic()
            return self._body


def to_json(obj: Any) -> bytes:
    """Encode as compact JSON; NaN and infinities (which JSON cannot spell) become null."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:  # a NaN or infinity somewhere: JSON has no spelling for them
        return json.dumps(_finite(obj), separators=(",", ":")).encode()


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
