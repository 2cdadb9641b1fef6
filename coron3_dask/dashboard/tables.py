"""A campaign's state as a fixed-width text table (``coron3-dask campaign status OUT``, end-of-run summary)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from coron3_dask.dashboard.state import association_name, derive, format_bytes, format_seconds

__all__ = ["progress_line", "status_table"]

_HEADER = ("association", "status", "attempts", "wall s", "task s", "products", "error / step")
_RIGHT = {2, 3, 4}  # right-aligned columns: the numbers


def status_table(snapshot: Mapping[str, Any], *, name_width: int = 48, error_width: int = 60) -> str:
    """Format a campaign snapshot as a table: one row per association, then the totals.

    Parameters
    ----------
    snapshot : mapping
        From :meth:`CampaignDB.snapshot`.
    name_width, error_width : int
        Longest association name and error shown; longer ones are cut with ``...``.

    Returns
    -------
    str
        Lines without a trailing newline.  ``wall s`` of a running association counts up to the
        snapshot's ``now``; its last column shows the current step and task progress.

    Examples
    --------
    >>> snap = {"now": 10.0, "total": 1, "session": None, "sessions": [], "spans": [],
    ...         "counts": {"pending": 0, "running": 0, "done": 0, "failed": 1},
    ...         "associations": [{"asn": "/data/a_asn.json", "product_name": None, "status": "failed",
    ...                           "attempts": 2, "error": "bad input", "started": 1.0, "finished": 3.5,
    ...                           "wall_seconds": 2.5, "task_seconds": None, "products": []}]}
    >>> print(status_table(snap))  # doctest: +NORMALIZE_WHITESPACE
    association  status  attempts  wall s  task s  products  error / step
    a_asn.json   failed         2     2.5       -         -  bad input
    1 association: 0 done, 1 failed, 0 running, 0 pending
    wall -, no session; task-seconds 0.0; 0 products, 0 B
    """
    now = float(snapshot["now"])
    rows = [_row(r, now, name_width, error_width) for r in snapshot["associations"]]
    lines = _columns([_HEADER, *rows]) if rows else ["no associations registered"]
    return "\n".join([*lines, *_totals(snapshot)])


def progress_line(snapshot: Mapping[str, Any]) -> str:
    """Summarise a campaign in one line: counts, per cent finished, throughput, ETA and elapsed time.

    Parameters
    ----------
    snapshot : mapping
        From :meth:`CampaignDB.snapshot`.

    Returns
    -------
    str
        No newline; for a terminal's status line.

    Examples
    --------
    >>> snap = {"now": 3700.0, "total": 4, "spans": [], "counts": {"pending": 1, "running": 1, "done": 2, "failed": 0},
    ...         "session": {"id": 1, "started": 100.0, "finished": None}, "sessions": [],
    ...         "associations": [{"status": "done", "session": 1, "finished": 9.0, "products": []}] * 2}
    >>> progress_line(snap)
    'campaign: 2/4 finished (50%): 2 done, 0 failed, 1 running, 1 pending | 2.0/h | ETA 1 h 00 min | elapsed 1 h 00 min'
    """
    counts, total = snapshot["counts"], int(snapshot["total"])
    figures = derive(snapshot)
    finished = int(counts["done"]) + int(counts["failed"])
    states = ", ".join(f"{counts[s]} {s}" for s in ("done", "failed", "running", "pending"))
    parts = [f"campaign: {finished}/{total} finished ({round(100 * figures['fraction'])}%): {states}"]
    if figures["throughput_per_hour"] is not None:
        parts.append(f"{figures['throughput_per_hour']:.1f}/h")
    if figures["eta_seconds"] and figures["state"] == "running":
        parts.append(f"ETA {format_seconds(figures['eta_seconds'])}")
    if snapshot.get("session"):
        parts.append(f"elapsed {format_seconds(figures['elapsed'])}")
    return " | ".join(parts)


def _row(r: Mapping[str, Any], now: float, name_width: int, error_width: int) -> tuple[str, ...]:
    status = str(r["status"])
    wall = r.get("wall_seconds")
    if status == "running" and r.get("started"):
        wall = now - float(r["started"])
    task = r.get("task_seconds")
    products = r.get("products") or []
    size = sum(int(p["size"]) for p in products)
    note = " ".join(str(r.get("error") or "").split())
    if status == "running":
        done, total = r.get("tasks_done"), r.get("tasks_total")
        note = f"{r.get('step') or 'starting'}" + (f" ({done}/{total} tasks)" if total else "")
    return (
        _cut(association_name(r), name_width, middle=True),
        status,
        str(r.get("attempts") or 0),
        "-" if wall is None else f"{float(wall):.1f}",
        "-" if task is None else f"{float(task):.1f}",
        f"{len(products)} ({format_bytes(size)})" if products else "-",
        _cut(note, error_width),
    )


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in _RIGHT else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def _totals(snapshot: Mapping[str, Any]) -> list[str]:
    counts, total = snapshot["counts"], int(snapshot["total"])
    figures = derive(snapshot)
    sessions = len(snapshot.get("sessions") or [])
    plural = "" if total == 1 else "s"
    states = ", ".join(f"{counts[s]} {s}" for s in ("done", "failed", "running", "pending"))
    wall = f"wall {format_seconds(figures['campaign_wall'])} over {sessions} session{'' if sessions == 1 else 's'}"
    if not sessions:
        wall = "wall -, no session"
    line = (
        f"{wall}; task-seconds {figures['task_seconds']:.1f}; "
        f"{figures['products']} products, {format_bytes(figures['product_bytes'])}"
    )
    if figures["throughput_per_hour"] is not None:
        line += f"; {figures['throughput_per_hour']:.1f} associations/h"
    if figures["state"] == "running" and figures["eta_seconds"]:
        line += f"; about {format_seconds(figures['eta_seconds'])} to go"
    return [f"{total} association{plural}: {states}", line]


def _cut(text: str, width: int, *, middle: bool = False) -> str:
    """Shorten at the end, or in the middle (association names differ at their ends: ``...-p07``)."""
    if len(text) <= width:
        return text
    if not middle:
        return text[: max(0, width - 3)] + "..."
    head = max(0, (width - 3) // 2)
    return text[:head] + "..." + text[len(text) - (width - 3 - head) :]
