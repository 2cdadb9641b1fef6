"""The end-of-campaign HTML report (``OUT/campaign_report.html``): one self-contained file.

Inline CSS, no scripts, thumbnails embedded as ``data:`` URIs and the timeline drawn as inline
SVG, so it can be mailed, archived or opened from disk.  Links to products are relative to the
output root.  Times are UTC.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from coron3_dask import files
from coron3_dask.dashboard.state import (
    association_name,
    derive,
    format_bytes,
    format_seconds,
    format_time,
    product_dir,
)
from coron3_dask.dashboard.timeline import timeline_svg
from coron3_dask.files import serving
from coron3_dask.files.campaign_db import STATUSES

__all__ = ["REPORT_NAME", "render_report", "write_report"]

REPORT_NAME = "campaign_report.html"

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #1d2330; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { padding: 3px 8px; border-bottom: 1px solid #d9dce1; text-align: left; }
th { background: #eef0f3; font-size: 12px; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; gap: 10px; flex-wrap: wrap; }
.card { border: 1px solid #d9dce1; border-top: 4px solid #8a8f98; border-radius: 6px; padding: 6px 14px; }
.card b { display: block; font-size: 20px; }
.card.running { border-top-color: #2f6fdf; } .card.done { border-top-color: #2e9d4f; }
.card.failed { border-top-color: #d0383a; }
.pill { padding: 1px 8px; border-radius: 9px; color: #fff; font-size: 12px; background: #8a8f98; }
.pill.running { background: #2f6fdf; } .pill.done { background: #2e9d4f; } .pill.failed { background: #d0383a; }
td.error { color: #d0383a; max-width: 36em; overflow-wrap: anywhere; }
img.thumb { height: 64px; display: block; background: #303030; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dt { color: #5b6372; } dd { margin: 0; }
svg text { font: 11px system-ui, sans-serif; }
"""


def write_report(root: str | Path) -> Path:
    """Write ``root/campaign_report.html`` atomically from the campaign database; return its path.

    Parameters
    ----------
    root : path
        The campaign output root.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        No campaign database in ``root``, or an unusable one.
    """
    root = Path(root)
    snapshot = serving.campaign_snapshot(root)
    if snapshot is None:
        raise files.InputError(f"{root}: no campaign database here (has a campaign run in this directory?)")
    thumbnails = {row["id"]: _data_uri(root, row.get("thumbnail")) for row in snapshot["associations"]}
    text = render_report(snapshot, root, thumbnails=thumbnails)
    return files.write_text(root / REPORT_NAME, text)


def render_report(
    snapshot: Mapping[str, Any], root: str | Path, *, thumbnails: Mapping[int, str | None] | None = None
) -> str:
    """Return the report's HTML (ASCII only: other characters as references) for a snapshot.

    Parameters
    ----------
    snapshot : mapping
        From :meth:`CampaignDB.snapshot`.
    root : path
        The output root (its name titles the report; product links are relative to it).
    thumbnails : mapping, optional
        Association id to the ``src`` of its thumbnail (a ``data:`` URI), or None.

    Returns
    -------
    str
    """
    thumbnails = thumbnails or {}
    derived = derive(snapshot)
    title = f"coron3_dask campaign report: {Path(root).name or root}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Output root <code>{_e(str(root))}</code>; state as of {_e(format_time(snapshot['now']))}.</p>",
        _counts(snapshot),
        _totals(snapshot, derived),
        '<h2>Timeline</h2><section id="timeline">',
        timeline_svg(snapshot),
        "</section>",
        '<h2>Associations</h2><section id="timings">',
        _timings(snapshot["associations"], root, thumbnails),
        "</section>",
        '<h2>Sessions</h2><section id="sessions">',
        _sessions(snapshot.get("sessions") or [], float(snapshot["now"])),
        "</section></body></html>",
    ]
    return "\n".join(parts).encode("ascii", "xmlcharrefreplace").decode("ascii") + "\n"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(root: Path, relative: str | None) -> str | None:
    if not relative:
        return None
    path = serving.served_file(root, str(relative))
    if path is None or path.suffix.lower() != ".png":
        return None
    try:
        return "data:image/png;base64," + base64.b64encode(serving.file_bytes(path)).decode("ascii")
    except files.InputError:
        return None


def _counts(snapshot: Mapping[str, Any]) -> str:
    counts = snapshot["counts"]
    cards = [f'<div class="card {s}" data-status="{s}"><b>{int(counts[s])}</b>{s}</div>' for s in STATUSES]
    cards.append(f'<div class="card"><b>{int(snapshot["total"])}</b>associations</div>')
    return f'<section id="counts" class="cards">{"".join(cards)}</section>'


def _totals(snapshot: Mapping[str, Any], derived: Mapping[str, Any]) -> str:
    throughput = derived["throughput_per_hour"]
    sessions = snapshot.get("sessions") or []
    rows = {
        "wall (all sessions)": format_seconds(derived["campaign_wall"]) if sessions else "-",
        "sessions": str(len(sessions)),
        "task-seconds (all workers)": f"{derived['task_seconds']:.1f} s",
        "throughput (latest session)": "-" if throughput is None else f"{throughput:.1f} associations/h",
        "products": f"{derived['products']} files, {format_bytes(derived['product_bytes'])}",
        "finished": f"{round(100 * derived['fraction'])} % ({derived['remaining']} pending or running)",
    }
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows.items())
    return f'<h2>Totals</h2><section id="totals"><dl>{items}</dl></section>'


def _timings(rows: Sequence[Mapping[str, Any]], root: str | Path, thumbnails: Mapping[int, str | None]) -> str:
    head = (
        "<tr><th>#</th><th>i2d</th><th>association</th><th>status</th><th>attempts</th><th>wall</th>"
        "<th>task-seconds</th><th>workers</th><th>products</th><th>started</th><th>finished</th><th>error</th></tr>"
    )
    body = []
    for row in rows:
        src = thumbnails.get(row["id"])
        thumb = f'<img class="thumb" src="{src}" alt="i2d thumbnail">' if src else ""
        status = _e(row["status"])
        task = row.get("task_seconds")
        workers = row.get("workers") or []
        body.append(
            f'<tr data-status="{status}" id="asn-{int(row["id"])}"><td class="num">{int(row["position"]) + 1}</td>'
            f'<td>{thumb}</td><td title="{_e(row["asn"])}">{_e(association_name(row))}</td>'
            f'<td><span class="pill {status}">{status}</span></td><td class="num">{int(row.get("attempts") or 0)}</td>'
            f'<td class="num">{_e(format_seconds(row.get("wall_seconds")))}</td>'
            f'<td class="num">{"-" if task is None else f"{float(task):.1f}"}</td>'
            f'<td class="num" title="{_e(chr(10).join(workers))}">{len(workers) or ""}</td>'
            f'<td>{_products(row, root)}</td><td class="time">{_e(format_time(row.get("started")))}</td>'
            f'<td class="time">{_e(format_time(row.get("finished")))}</td>'
            f'<td class="error">{_e(row.get("error") or "")}</td></tr>'
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _products(row: Mapping[str, Any], root: str | Path) -> str:
    products = row.get("products") or []
    if not products:
        return ""
    folder = product_dir(row, root)
    size = sum(int(p["size"]) for p in products)
    items = []
    for p in products:
        name = _e(p["name"])
        href = quote(f"{folder}/{p['name']}")
        link = f'<a href="{_e(href)}">{name}</a>' if folder else name
        items.append(f"<li>{link} {_e(format_bytes(p['size']))}</li>")
    summary = f"<summary>{len(products)} &middot; {_e(format_bytes(size))}</summary>"
    return f"<details>{summary}<ul>{''.join(items)}</ul></details>"


def _sessions(sessions: Sequence[Mapping[str, Any]], now: float) -> str:
    if not sessions:
        return "<p>No session recorded.</p>"
    head = (
        "<tr><th>#</th><th>started</th><th>finished</th><th>duration</th><th>outcome</th><th>host</th><th>pid</th>"
        "<th>version</th><th>cluster</th><th>Dask dashboard</th><th>max concurrent</th><th>command</th></tr>"
    )
    body = []
    for s in sessions:
        duration = float(s.get("finished") or now) - float(s["started"])
        cells = [
            s["id"],
            format_time(s["started"]),
            format_time(s.get("finished")) if s.get("finished") else "(running or interrupted)",
            format_seconds(duration),
            s.get("outcome") or "-",
            s.get("host") or "-",
            s.get("pid") or "-",
            s.get("version") or "-",
            s.get("cluster") or s.get("scheduler") or "-",
            s.get("dask_dashboard") or "-",
            s.get("max_concurrent") or "-",
            s.get("command") or "-",
        ]
        body.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
