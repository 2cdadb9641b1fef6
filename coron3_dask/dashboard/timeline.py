"""The campaign timeline as inline SVG: one lane per worker, one bar per span, coloured by status."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from coron3_dask.dashboard.state import association_name, format_seconds, format_time

__all__ = ["COLOURS", "span_status", "timeline_svg"]

#: fill colour of each status (the page and the report use the same)
COLOURS = {"pending": "#8a8f98", "running": "#2f6fdf", "done": "#2e9d4f", "failed": "#d0383a"}
_LABEL_W = 190
_PLOT_W = 820
_LANE_H = 22
_GAP = 4
_AXIS_H = 22
_LEGEND_H = 22
_CHAR_W = 6.2  # approximate width of one 11 px character
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def span_status(span: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """Return the status a span is drawn with: its association's, or ``failed`` for an earlier (retried) attempt."""
    if int(span.get("attempt") or 0) < int(row.get("attempts") or 0):
        return "failed"
    return str(row["status"])


def timeline_svg(snapshot: Mapping[str, Any]) -> str:
    """Draw the snapshot's spans as an ``<svg>`` element (no XML namespace needed inline in HTML).

    Parameters
    ----------
    snapshot : mapping
        From :meth:`CampaignDB.snapshot`.

    Returns
    -------
    str
        One ``<g class="lane" data-worker="...">`` per worker (sorted by address), a
        ``<rect class="span" data-status="...">`` with a ``<title>`` per span, a time axis in
        seconds from the first span, and a legend; a ``<p>`` when no span was recorded.
    """
    spans = snapshot.get("spans") or []
    if not spans:
        return '<p class="no-spans">No worker time recorded yet.</p>'
    rows = {r["id"]: r for r in snapshot["associations"]}
    workers = sorted({str(s["worker"]) for s in spans})
    t0 = min(float(s["start"]) for s in spans)
    t1 = max(float(s["stop"]) for s in spans)
    extent = max(t1 - t0, 1e-3)
    lane_y = {w: _AXIS_H + i * (_LANE_H + _GAP) for i, w in enumerate(workers)}
    height = _AXIS_H + len(workers) * (_LANE_H + _GAP) + _LEGEND_H
    width = _LABEL_W + _PLOT_W + 30  # room for the last tick label

    def x(t: float) -> float:
        return _LABEL_W + (t - t0) / extent * _PLOT_W

    out = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="associations per worker over time">',
        *_axis(extent, len(workers), x(t0)),
    ]
    for worker in workers:
        y = lane_y[worker]
        out.append(f'<g class="lane" data-worker="{_e(worker)}">')
        out.append(f'<rect x="{_LABEL_W}" y="{y}" width="{_PLOT_W}" height="{_LANE_H}" fill="#f1f2f5"/>')
        out.append(f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{_e(_fit(worker, _LABEL_W - 10))}</text>')
        for span in (s for s in spans if str(s["worker"]) == worker):
            out.append(_bar(span, rows.get(span["association"]), x, y))
        out.append("</g>")
    out += _legend(height - _LEGEND_H + 4)
    out.append("</svg>")
    return "\n".join(out)


def _bar(span: Mapping[str, Any], row: Mapping[str, Any] | None, x: Any, y: float) -> str:
    start, stop = float(span["start"]), float(span["stop"])
    status = span_status(span, row) if row else "pending"
    name = association_name(row) if row else f"association {span['association']}"
    left, right = x(start), x(stop)
    w = max(right - left, 1.5)
    tip = (
        f"{name}: attempt {span.get('attempt')}, {status}\n{span['worker']}\n{format_time(start)} to "
        f"{format_time(stop)} ({format_seconds(stop - start)}), {float(span['task_seconds']):.1f} task-seconds"
    )
    label = _fit(name, w - 6)
    text = f'<text x="{left + 3:.1f}" y="{y + 15}" fill="#fff">{_e(label)}</text>' if label else ""
    return (
        f'<g class="span" data-association="{int(span["association"])}" data-status="{_e(status)}">'
        f'<rect x="{left:.1f}" y="{y + 2}" width="{w:.1f}" height="{_LANE_H - 4}" rx="3" '
        f'fill="{COLOURS.get(status, "#8a8f98")}"><title>{_e(tip)}</title></rect>{text}</g>'
    )


def _axis(extent: float, lanes: int, x0: float) -> list[str]:
    step = next((s for s in _STEPS if extent / s <= 10), _STEPS[-1] * math.ceil(extent / _STEPS[-1] / 10))
    bottom = _AXIS_H + lanes * (_LANE_H + _GAP)
    out = []
    for k in range(int(extent // step) + 1):
        px = x0 + k * step / extent * _PLOT_W
        out.append(f'<line x1="{px:.1f}" y1="{_AXIS_H - 4}" x2="{px:.1f}" y2="{bottom}" stroke="#c9ccd3"/>')
        out.append(f'<text x="{px:.1f}" y="{_AXIS_H - 8}" text-anchor="middle">+{_e(_tick(k * step))}</text>')
    return out


def _tick(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    return f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 // 60 else "")


def _legend(y: float) -> list[str]:
    out, px = [], float(_LABEL_W)
    for status, colour in COLOURS.items():
        out.append(f'<rect x="{px:.0f}" y="{y}" width="12" height="12" rx="2" fill="{colour}"/>')
        out.append(f'<text x="{px + 16:.0f}" y="{y + 10}">{status}</text>')
        px += 90
    return out


def _fit(text: str, pixels: float) -> str:
    chars = int(pixels // _CHAR_W)
    if chars >= len(text):
        return text
    return "" if chars < 4 else text[: chars - 1] + "\u2026"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
