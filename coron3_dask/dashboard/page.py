"""The live campaign page: one self-contained HTML document (inline CSS and vanilla JavaScript).

It polls ``api/state`` every second and updates in place: counts, progress bar, throughput and
ETA, session, and one table row per association (``<tr id="asn-ID" data-status="...">``).
URLs are relative, so the page also works behind a proxy prefix.  Every value from the
database goes into the document as text (``textContent``), never as markup.
"""

from __future__ import annotations

import html

__all__ = ["render_page"]


def render_page(title: str) -> str:
    """Return the page's HTML, its heading naming ``title`` (the output root)."""
    return _PAGE.replace("__TITLE__", html.escape(title))


_CSS = """
:root { --pending: #8a8f98; --running: #2f6fdf; --done: #2e9d4f; --failed: #d0383a; --line: #d9dce1; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330;
  background: #f5f6f8; }
header { display: flex; gap: 1em; align-items: baseline; padding: 12px 20px; background: #1d2330; color: #fff;
  flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; }
header code { color: #c8d3e6; }
main { padding: 12px 20px 40px; }
.badge { padding: 2px 8px; border-radius: 10px; font-size: 12px; background: #4a5263; }
.badge[data-state=running] { background: var(--running); } .badge[data-state=finished] { background: var(--done); }
.badge[data-state=error], #conn[data-ok=false] { background: var(--failed); }
#conn[data-ok=true] { background: #2e7d4a; }
#message { padding: 10px 14px; margin: 10px 0; border-left: 4px solid var(--running); background: #fff; }
#message[data-kind=error] { border-color: var(--failed); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card .n { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .l { color: #5b6372; font-size: 12px; }
.card[data-status] { border-top: 4px solid var(--pending); }
.card[data-status=running] { border-top-color: var(--running); }
.card[data-status=done] { border-top-color: var(--done); }
.card[data-status=failed] { border-top-color: var(--failed); }
.bar { display: flex; height: 14px; background: #e4e6ea; border-radius: 7px; overflow: hidden; }
.bar div { transition: width .4s; } .bar .done { background: var(--done); } .bar .failed { background: var(--failed); }
.bar .running { background: var(--running); }
#progress-text { color: #5b6372; font-size: 12px; margin: 4px 0 10px; }
#session { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; margin: 10px 0; }
#session dl { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 14px; margin: 0; }
#session dt { color: #5b6372; } #session dd { margin: 0; overflow-wrap: anywhere; }
.controls { display: flex; gap: 10px; align-items: center; margin: 12px 0 6px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
th { background: #eef0f3; font-weight: 600; font-size: 12px; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 9px; color: #fff; font-size: 12px;
  background: var(--pending); }
tr[data-status=running] .pill { background: var(--running); } tr[data-status=done] .pill { background: var(--done); }
tr[data-status=failed] .pill { background: var(--failed); }
tr[data-status=failed] td.error { color: var(--failed); }
td.error { max-width: 28em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
td.thumb img { display: block; height: 48px; width: auto; border-radius: 3px; background: #303030; }
td.thumb { width: 60px; } progress { width: 90px; height: 10px; vertical-align: middle; }
details summary { cursor: pointer; } details ul { margin: 4px 0; padding-left: 16px; font-size: 12px; }
a { color: #2458c4; }
"""

_SCRIPT = r"""
"use strict";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const rows = new Map();
let clockOffset = 0, last = null, failures = 0;

function fmtSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "-";
  if (s < 60) return s.toFixed(1) + " s";
  s = Math.round(s);
  const p = (n) => String(n).padStart(2, "0");
  if (s < 3600) return Math.floor(s / 60) + " min " + p(s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + p(Math.floor(s % 3600 / 60)) + " min";
  return Math.floor(s / 86400) + " d " + p(Math.floor(s % 86400 / 3600)) + " h";
}
function fmtBytes(b) {
  if (b < 1000) return b + " B";
  for (const u of ["kB", "MB", "GB"]) { b /= 1000; if (b < 1000) return b.toFixed(1) + " " + u; }
  return (b / 1000).toFixed(1) + " TB";
}
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : "-"; }
function serverNow() { return Date.now() / 1000 - clockOffset; }
function setText(node, text) { text = String(text); if (node.textContent !== text) node.textContent = text; }
function el(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") node.textContent = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null) node.append(kid);
  return node;
}
function fileUrl(rel) { return "files/" + rel.split("/").map(encodeURIComponent).join("/"); }

function duration(a) {
  if (a.status === "running" && a.started) return serverNow() - a.started;
  return a.wall_seconds;
}

function makeRow(a) {
  const cells = {};
  const names = ["pos", "thumb", "name", "status", "step", "duration", "attempts", "workers", "products", "error"];
  for (const name of names) cells[name] = el("td", {className: name});
  for (const name of ["pos", "duration", "attempts", "workers"]) cells[name].classList.add("num");
  const tr = el("tr", {id: "asn-" + a.id}, ...Object.values(cells));
  tr.dataset.id = a.id;
  return {tr, cells, key: {pos: a.position}};
}

function changed(row, part, value) {
  const v = JSON.stringify(value);
  if (row.key[part] === v) return false;
  row.key[part] = v;
  return true;
}

function updateRow(row, a) {
  const c = row.cells;
  row.tr.dataset.status = a.status;
  row.tr.dataset.name = a.name;
  row.key.pos = a.position;
  setText(c.pos, a.position + 1);
  if (changed(row, "name", [a.name, a.asn])) { c.name.textContent = a.name; c.name.title = a.asn; }
  if (changed(row, "status", a.status)) c.status.replaceChildren(el("span", {className: "pill", text: a.status}));
  if (changed(row, "step", [a.status, a.step, a.tasks_done, a.tasks_total])) {
    c.step.replaceChildren();
    if (a.status === "running") {
      c.step.append(el("span", {className: "stepname", text: a.step || "starting"}), " ");
      if (a.tasks_total) {
        c.step.append(el("progress", {max: a.tasks_total, value: a.tasks_done || 0}),
                      " " + (a.tasks_done || 0) + "/" + a.tasks_total);
      }
    }
  }
  setText(c.duration, fmtSeconds(duration(a)));
  setText(c.attempts, a.attempts);
  if (changed(row, "workers", a.workers)) {
    setText(c.workers, a.workers.length || "");
    c.workers.title = a.workers.join("\n");
  }
  if (changed(row, "products", [a.products, a.files_dir])) {
    c.products.replaceChildren();
    if (a.products.length) {
      const size = a.products.reduce((s, p) => s + p.size, 0);
      const list = el("ul");
      for (const p of a.products) {
        const link = a.files_dir ? el("a", {href: fileUrl(a.files_dir + "/" + p.name), text: p.name, download: p.name})
                                 : el("span", {text: p.name});
        list.append(el("li", {}, link, " " + fmtBytes(p.size)));
      }
      const summary = el("summary", {text: a.products.length + " \u00b7 " + fmtBytes(size)});
      c.products.append(el("details", {}, summary, list));
    }
  }
  if (changed(row, "thumb", [a.thumbnail, a.finished])) {
    c.thumb.replaceChildren();
    if (a.thumbnail) {
      const url = fileUrl(a.thumbnail);
      c.thumb.append(el("a", {href: url, target: "_blank", rel: "noopener"},
                        el("img", {src: url + "?v=" + (a.finished || 0), alt: "i2d of " + a.name, loading: "lazy"})));
    }
  }
  const error = a.error || "";
  if (changed(row, "error", error)) { setText(c.error, error.split("\n")[0]); c.error.title = error; }
}

function applyFilter() {
  const status = $("filter").value, text = $("search").value.toLowerCase();
  for (const row of rows.values()) {
    const a = row.tr.dataset;
    row.tr.hidden = (status !== "all" && a.status !== status) || (text && !a.name.toLowerCase().includes(text));
  }
}

function renderSession(s, d) {
  const box = $("session");
  box.hidden = !s;
  if (!s) return;
  const fields = {host: s.host + (s.pid ? " (pid " + s.pid + ")" : ""), version: s.version, started: fmtTime(s.started),
                  finished: s.finished ? fmtTime(s.finished) + (s.outcome ? " \u2014 " + s.outcome : "") : "running",
                  cluster: s.cluster || s.scheduler || "-", concurrent: s.max_concurrent || "-", sessions: d.sessions,
                  command: s.command || "-"};
  for (const [k, v] of Object.entries(fields)) setText($("s-" + k), v);
  const dask = $("dask-link");
  dask.hidden = !s.dask_dashboard;
  if (s.dask_dashboard && dask.getAttribute("href") !== s.dask_dashboard) dask.href = s.dask_dashboard;
}

function render(state) {
  last = state;
  const badge = $("state");
  badge.dataset.state = state.state;
  setText(badge, state.state);
  const msg = $("message");
  msg.hidden = !state.message;
  msg.dataset.kind = state.state === "error" ? "error" : "info";
  setText(msg, state.message || "");
  $("report-link").hidden = !state.links.report;
  const counts = state.counts || {pending: 0, running: 0, done: 0, failed: 0};
  const total = state.total || 0;
  for (const k of ["pending", "running", "done", "failed"]) {
    setText($("count-" + k), counts[k]);
    $("bar-" + k).style.width = total ? (100 * counts[k] / total) + "%" : "0";
  }
  setText($("count-total"), total);
  const d = state.derived;
  setText($("throughput"), d && d.throughput_per_hour !== null ? d.throughput_per_hour.toFixed(1) : "-");
  setText($("eta"), d && d.eta_seconds !== null ? (d.eta_seconds === 0 ? "complete" : fmtSeconds(d.eta_seconds)) : "-");
  setText($("progress-text"), total ? (counts.done + counts.failed) + " of " + total + " finished (" +
          Math.round(100 * (d ? d.fraction : 0)) + "%), " + counts.running + " running" : "no associations yet");
  document.title = (total ? "(" + (counts.done + counts.failed) + "/" + total + ") " : "") + "coron3_dask campaign";
  renderSession(state.session, {sessions: (state.sessions || []).length});
  const body = $("rows");
  let order = false;
  for (const a of state.associations || []) {
    let row = rows.get(a.id);
    if (!row) { row = makeRow(a); rows.set(a.id, row); order = true; }
    updateRow(row, a);
  }
  if (order) body.replaceChildren(...[...rows.values()].sort((x, y) => x.key.pos - y.key.pos).map((r) => r.tr));
  applyFilter();
  tick();
}

function tick() {
  if (!last || !last.derived) return;
  const d = last.derived, running = last.session && !last.session.finished;
  setText($("elapsed"), fmtSeconds(running ? serverNow() - last.session.started : d.elapsed));
  for (const a of last.associations) {
    if (a.status === "running") setText(rows.get(a.id).cells.duration, fmtSeconds(duration(a)));
  }
}

async function poll() {
  try {
    const response = await fetch("api/state", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const state = await response.json();
    clockOffset = Date.now() / 1000 - state.now;
    render(state);
    failures = 0;
    $("conn").dataset.ok = "true";
    setText($("conn"), "live");
  } catch (err) {
    failures += 1;
    $("conn").dataset.ok = "false";
    setText($("conn"), "no connection to the dashboard server (" + err.message + "), retrying");
  } finally {
    setTimeout(poll, failures ? Math.min(10000, POLL_MS * 2 ** failures) : POLL_MS);
  }
}
"""

_PAGE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>coron3_dask campaign</title>
<style>"""
    + _CSS
    + """</style>
</head>
<body>
<header>
  <h1>coron3_dask campaign</h1> <code id="root">__TITLE__</code>
  <span id="state" class="badge" data-state="loading">loading</span>
  <span id="conn" class="badge" data-ok="true">connecting</span>
  <a id="dask-link" href="#" target="_blank" rel="noopener" hidden style="color:#9cc2ff">Dask dashboard</a>
  <a id="report-link" href="files/campaign_report.html" target="_blank" rel="noopener" hidden
     style="color:#9cc2ff">report</a>
</header>
<main>
<div id="message" hidden></div>
<section class="cards">
  <div class="card" data-status="pending"><div class="n" id="count-pending">0</div><div class="l">pending</div></div>
  <div class="card" data-status="running"><div class="n" id="count-running">0</div><div class="l">running</div></div>
  <div class="card" data-status="done"><div class="n" id="count-done">0</div><div class="l">done</div></div>
  <div class="card" data-status="failed"><div class="n" id="count-failed">0</div><div class="l">failed</div></div>
  <div class="card"><div class="n" id="count-total">0</div><div class="l">associations</div></div>
  <div class="card"><div class="n" id="throughput">-</div><div class="l">done per hour (this session)</div></div>
  <div class="card"><div class="n" id="eta">-</div><div class="l">estimated time to go</div></div>
  <div class="card"><div class="n" id="elapsed">-</div><div class="l">elapsed (this session)</div></div>
</section>
<div class="bar" id="progress"><div class="done" id="bar-done"></div><div class="failed" id="bar-failed"></div>
<div class="running" id="bar-running"></div><div class="pending" id="bar-pending"></div></div>
<div id="progress-text">loading</div>
<section id="session" hidden><dl>
  <dt>host</dt><dd id="s-host"></dd><dt>started</dt><dd id="s-started"></dd>
  <dt>coron3_dask</dt><dd id="s-version"></dd><dt>finished</dt><dd id="s-finished"></dd>
  <dt>cluster</dt><dd id="s-cluster"></dd><dt>max concurrent</dt><dd id="s-concurrent"></dd>
  <dt>sessions</dt><dd id="s-sessions"></dd><dt>command</dt><dd id="s-command"></dd>
</dl></section>
<div class="controls">
  <label>show <select id="filter"><option value="all">all</option><option>pending</option><option>running</option>
  <option>done</option><option>failed</option></select></label>
  <label>name <input id="search" type="search" placeholder="filter by name"></label>
</div>
<table id="associations">
<thead><tr><th>#</th><th>i2d</th><th>association</th><th>status</th><th>step</th><th>duration</th><th>attempts</th>
<th>workers</th><th>products</th><th>error</th></tr></thead>
<tbody id="rows"></tbody>
</table>
</main>
<script>"""
    + _SCRIPT
    + """
$("filter").addEventListener("change", applyFilter);
$("search").addEventListener("input", applyFilter);
setInterval(tick, 1000);
poll();
</script>
</body>
</html>
"""
)
