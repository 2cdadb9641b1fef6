"""Figures derived from a campaign snapshot (throughput, ETA, totals) and their human spelling.

Pure functions of :meth:`coron3_dask.files.campaign_db.CampaignDB.snapshot`'s dictionary: the
live page, the HTML report and the status table show the same numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["association_name", "derive", "format_bytes", "format_seconds", "format_time", "product_dir"]


def derive(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """Throughput, ETA and totals of a campaign.

    Parameters
    ----------
    snapshot : mapping
        From :meth:`CampaignDB.snapshot`.

    Returns
    -------
    dict
        ``state`` (``registered`` before any session, ``running``, ``finished``);
        ``elapsed`` (s, the current session: to its end, or to ``now`` while it runs);
        ``done_this_session``; ``throughput_per_hour`` (associations done per hour over the
        current session, None before the first); ``remaining`` (pending + running);
        ``eta_seconds`` and ``eta`` (epoch s; None when unknown or the session has ended;
        0 and ``now`` when nothing remains); ``fraction`` ((done + failed) / total);
        ``campaign_wall`` (s, every session together); ``task_seconds``; ``products`` and
        ``product_bytes`` (of the associations done).
    """
    now = float(snapshot["now"])
    counts = snapshot["counts"]
    rows = snapshot["associations"]
    session = snapshot.get("session")
    remaining = int(counts["pending"]) + int(counts["running"])
    elapsed, done_here, state = 0.0, 0, "registered"
    if session:
        state = "finished" if session.get("finished") else "running"
        elapsed = max(0.0, float(session.get("finished") or now) - float(session["started"]))
        done_here = sum(
            1 for r in rows if r["status"] == "done" and r.get("session") == session["id"] and r.get("finished")
        )
    throughput = done_here / (elapsed / 3600.0) if done_here and elapsed > 0 else None
    eta_seconds: float | None = None
    if remaining == 0:
        eta_seconds = 0.0
    elif throughput and state == "running":
        eta_seconds = remaining / throughput * 3600.0
    total = int(snapshot["total"])
    finished = int(counts["done"]) + int(counts["failed"])
    done_rows = [r for r in rows if r["status"] == "done"]
    return {
        "state": state,
        "elapsed": round(elapsed, 3),
        "done_this_session": done_here,
        "throughput_per_hour": None if throughput is None else round(throughput, 3),
        "remaining": remaining,
        "eta_seconds": None if eta_seconds is None else round(eta_seconds, 1),
        "eta": None if eta_seconds is None else round(now + eta_seconds, 3),
        "fraction": finished / total if total else 0.0,
        "campaign_wall": round(sum(_session_seconds(s, now) for s in snapshot.get("sessions", [])), 3),
        "task_seconds": round(sum(float(r.get("task_seconds") or 0.0) for r in rows), 3),
        "products": sum(len(r["products"]) for r in done_rows),
        "product_bytes": sum(int(p["size"]) for r in done_rows for p in r["products"]),
    }


def _session_seconds(session: Mapping[str, Any], now: float) -> float:
    return max(0.0, float(session.get("finished") or now) - float(session["started"]))


def association_name(row: Mapping[str, Any]) -> str:
    """Return an association's display name: its product name once known, else its ASN file's name."""
    return str(row.get("product_name") or PurePath(str(row["asn"])).name)


def product_dir(row: Mapping[str, Any], root: str | PurePath) -> str | None:
    """Return the association's output directory relative to the output root (``/``-separated), or None."""
    out = row.get("output_dir")
    if out:
        path, base = PurePath(str(out)), PurePath(str(root))
        if not path.is_absolute():
            return path.as_posix()
        if path.is_relative_to(base) and path != base:
            return path.relative_to(base).as_posix()
    return str(row["product_name"]) if row.get("product_name") else None


def format_seconds(seconds: float | None) -> str:
    """Spell a duration: ``"42.0 s"``, ``"3 min 20 s"``, ``"2 h 05 min"`` (``"-"`` for unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def format_bytes(size: float | None) -> str:
    """Spell a size: ``"512 B"``, ``"3.4 MB"`` (decimal units, as file browsers show them)."""
    if size is None:
        return "-"
    value = float(size)
    if abs(value) < 1000:
        return f"{value:.0f} B"
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


def format_time(epoch: float | None) -> str:
    """Spell an epoch time as ``YYYY-MM-DD HH:MM:SS UTC`` (``"-"`` for unknown)."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(epoch)))
