"""The live page in a real browser (Debian chromium through Playwright): rows follow the database without reload."""

from __future__ import annotations

import pytest
from browser import chromium, screenshot
from campaign_state import DASK_DASHBOARD, make_campaign, write_png

from coron3_dask.dashboard.server import DashboardServer
from coron3_dask.files.checksums import digest

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000


def row(page, ident):
    return page.locator(f"#asn-{ident}")


def wait_status(page, ident, status):
    page.wait_for_selector(f"tr#asn-{ident}[data-status={status}]", timeout=TIMEOUT_MS)


def test_page_follows_the_campaign_live(tmp_path):
    camp = make_campaign(tmp_path / "out", keep_open=True)
    db, ids = camp.db, camp.ids
    with DashboardServer(camp.root) as server, chromium() as page:
        page.goto(server.url)
        for name, status in (("alpha", "done"), ("beta", "failed"), ("gamma", "running"), ("delta", "pending")):
            wait_status(page, ids[name], status)
        page.evaluate("window.__notReloaded = true")
        assert row(page, ids["alpha"]).locator("td.name").inner_text() == "jw_alpha"
        assert row(page, ids["gamma"]).locator("td.step").inner_text().startswith("klip")
        assert "3/10" in row(page, ids["gamma"]).locator("td.step").inner_text()
        assert page.locator("#count-done").inner_text() == "1"
        assert page.locator("#dask-link").get_attribute("href") == DASK_DASHBOARD
        assert page.locator("#dask-link").is_visible()
        error = row(page, ids["beta"]).locator("td.error")
        assert error.inner_text() == "ValueError: <b>bad</b> input"  # one line, as text, not markup
        assert error.get_attribute("title").endswith("second line of the error")
        thumb = row(page, ids["alpha"]).locator("td.thumb img")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())

        # the campaign goes on: delta starts, progresses, fails; gamma finishes; a new association arrives
        attempt = db.start(ids["delta"], camp.session, product_name="jw_delta", output_dir=str(camp.root / "jw_delta"))
        wait_status(page, ids["delta"], "running")
        db.progress(ids["delta"], "resample", 7, 20)
        page.wait_for_function(
            "id => document.querySelector('#asn-' + id + ' td.step').textContent.includes('7/20')",
            arg=ids["delta"],
            timeout=TIMEOUT_MS,
        )
        assert "resample" in row(page, ids["delta"]).locator("td.step").inner_text()
        assert page.locator("#count-running").inner_text() == "2"
        print(f"dashboard screenshot (running): {screenshot(page, 'dashboard_running')}")

        out = camp.root / "jw_gamma"
        out.mkdir()
        product = out / "jw_gamma_i2d.fits"
        product.write_bytes(b"\0" * 5000)
        write_png(camp.root / "campaign_thumbnails" / "jw_gamma.png", seed=3)
        db.finish(
            ids["gamma"],
            "done",
            attempt=1,
            products=[digest(product)],
            wall_seconds=33.0,
            spans=[("tcp://127.0.0.1:40003", 1.0, 2.0, 1.0)],
            thumbnail="campaign_thumbnails/jw_gamma.png",
        )
        db.finish(ids["delta"], "failed", attempt=attempt, error="RuntimeError: worker lost\ntraceback line")
        [new] = db.register(["/data/asn/epsilon_asn.json"])
        wait_status(page, ids["gamma"], "done")
        wait_status(page, ids["delta"], "failed")
        wait_status(page, new, "pending")
        gamma = row(page, ids["gamma"])
        page.wait_for_function(
            "img => img && img.complete && img.naturalWidth > 0",
            arg=gamma.locator("td.thumb img").element_handle(),
            timeout=TIMEOUT_MS,
        )
        assert gamma.locator("td.step").inner_text() == ""
        assert gamma.locator("td.duration").inner_text() == "33.0 s"
        assert gamma.locator("td.products summary").inner_text().startswith("1 \u00b7 5.0 kB")
        link = gamma.locator("td.products a")
        assert link.get_attribute("href") == "files/jw_gamma/jw_gamma_i2d.fits"
        assert row(page, ids["delta"]).locator("td.error").inner_text() == "RuntimeError: worker lost"
        page.wait_for_function("() => document.querySelector('#count-done').textContent === '2'", timeout=TIMEOUT_MS)
        assert page.locator("#count-failed").inner_text() == "2"
        assert page.locator("#count-total").inner_text() == "5"
        assert page.locator("tbody#rows tr").count() == 5
        assert page.locator("tbody#rows tr").last.get_attribute("id") == f"asn-{new}"

        # the status filter hides the other rows
        page.select_option("#filter", "failed")
        assert [r.get_attribute("data-status") for r in page.locator("tbody#rows tr:visible").all()] == ["failed"] * 2
        page.select_option("#filter", "all")

        assert page.evaluate("window.__notReloaded") is True
        assert page.errors == []
        path = screenshot(page, "dashboard")
        print(f"dashboard screenshot: {path}")
    camp.close()


def test_page_waits_for_the_campaign_to_start(tmp_path):
    root = tmp_path / "later"
    with DashboardServer(root) as server, chromium() as page:
        page.goto(server.url)
        page.wait_for_selector("#state[data-state=waiting]", timeout=TIMEOUT_MS)
        assert "No campaign database" in page.locator("#message").inner_text()
        assert page.locator("tbody#rows tr").count() == 0
        camp = make_campaign(root)
        page.wait_for_selector(f"tr#asn-{camp.ids['alpha']}[data-status=done]", timeout=TIMEOUT_MS)
        page.wait_for_selector("#state[data-state=running]", timeout=TIMEOUT_MS)
        assert page.locator("#message").is_hidden()
        assert page.errors == []


def test_page_reports_a_lost_server(tmp_path):
    camp = make_campaign(tmp_path / "out")
    server = DashboardServer(camp.root).start()
    with chromium() as page:
        page.goto(server.url)
        page.wait_for_selector(f"tr#asn-{camp.ids['alpha']}[data-status=done]", timeout=TIMEOUT_MS)
        server.stop()
        page.wait_for_selector("#conn[data-ok=false]", timeout=TIMEOUT_MS)
        assert "retrying" in page.locator("#conn").inner_text()
        assert row(page, camp.ids["alpha"]).get_attribute("data-status") == "done"  # the last state stays
