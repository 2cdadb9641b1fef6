"""A real campaign with its live dashboard, watched in headless Chromium (Debian's, driven by Playwright).

The page is loaded once; while the campaign runs (a separate `coron3-dask campaign --dashboard`
process), the rendered rows must go from pending through running to done without a reload, the
Dask dashboard link must be shown, and finished associations must show their i2d thumbnails.
Screenshots are saved as ``tests/artifacts/campaign_dashboard_running.png`` (mid-campaign: the
README's picture, ``docs/campaign_dashboard.png``) and ``campaign_dashboard.png`` (the end).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
from browser import chromium, screenshot
from campaign_helpers import BIN, make_programmes

pytestmark = [pytest.mark.browser, pytest.mark.cluster]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_follows_a_real_campaign(tmp_path):
    asns, mask = make_programmes(tmp_path / "in", 4, seed=90)
    out, port = tmp_path / "out", _free_port()
    log = open(tmp_path / "campaign.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "coron3-dask"), "campaign", *map(str, asns), "-o", str(out), "--psfmask", str(mask),
         "--max-concurrent", "1", "--dashboard", f"127.0.0.1:{port}", "--no-progress"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen: dict[str, set[str]] = {}
    try:
        with chromium() as page:
            deadline = time.monotonic() + 60
            while True:  # the server comes up with the campaign
                try:
                    page.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - playwright's connection refused, until the server listens
                    assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "campaign.log").read_text()
                    time.sleep(0.3)
            page.evaluate("window.__notReloaded = true")
            page.wait_for_selector("tr[data-status]", timeout=20_000)
            deadline, pictured = time.monotonic() + 180, False
            while time.monotonic() < deadline:
                for row in page.locator("tr[data-status]").all():
                    seen.setdefault(row.get_attribute("id"), set()).add(row.get_attribute("data-status"))
                if not pictured and page.locator("tr[data-status=done]").count() >= 2 and page.locator(
                    "tr[data-status=running]"
                ).count():
                    pictured = True  # mid-campaign: the README's picture
                    print(f"campaign dashboard screenshot: {screenshot(page, 'campaign_dashboard_running')}")
                if proc.poll() is not None and page.locator("tr[data-status=done]").count() == 4:
                    break
                time.sleep(0.2)
            assert page.evaluate("window.__notReloaded") is True, "the page updated itself, never reloaded"
            assert page.locator("tr[data-status=done]").count() == 4
            link = page.locator("#dask-link")
            assert link.is_visible() and link.get_attribute("href").startswith("http://127.0.0.1:")
            thumbs = page.locator("td.thumb img")
            assert thumbs.count() == 4
            for i in range(4):
                img = thumbs.nth(i).element_handle()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
            assert page.locator("#count-done").inner_text() == "4"
            print(f"campaign dashboard screenshot: {screenshot(page, 'campaign_dashboard')}")
            # the page keeps polling after the campaign (and its server) ended: refused connections are expected
            errors = [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e]
            assert not errors, errors
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "campaign.log").read_text()
    assert len(seen) == 4
    changed = [states for states in seen.values() if {"pending", "done"} <= states or {"running", "done"} <= states]
    assert len(changed) >= 2, f"rows seen changing state in the page: {seen}"
    assert any("running" in states for states in seen.values()), seen
    assert (out / "campaign_report.html").is_file()
