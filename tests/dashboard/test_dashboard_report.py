"""The end-of-campaign HTML report: self-contained, one timeline lane per worker, thumbnails embedded."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest
from campaign_state import WORKERS, tree_state

from coron3_dask.dashboard.report import REPORT_NAME, write_report
from coron3_dask.files import InputError
from coron3_dask.files.campaign_db import DB_NAME


class Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag, **match):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in match.items())]


@pytest.fixture
def report(campaign):
    path = write_report(campaign.root)
    text = path.read_text(encoding="ascii")
    parsed = Elements()
    parsed.feed(text)
    return campaign, path, text, parsed


def test_written_atomically_into_the_root(report):
    campaign, path, _, _ = report
    assert path == campaign.root / REPORT_NAME
    assert not [p for p in campaign.root.iterdir() if p.name.endswith(".partial")]
    assert not list(campaign.root.glob(f"{DB_NAME}-*"))  # read without leaving journal files


def test_self_contained(report):
    _, _, text, parsed = report
    assert not parsed.all("script") and not parsed.all("link") and "@import" not in text and "url(" not in text
    for tag, attrs in parsed.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not re.match(r"^(https?:)?//", value), (tag, key, value)
            if key == "src" and key in attrs:
                assert value.startswith("data:"), value
    assert parsed.all("style") and "<svg" in text


def test_counts_and_totals(report):
    campaign, _, text, _ = report
    for status, n in {"pending": 1, "running": 1, "done": 1, "failed": 1}.items():
        assert re.search(rf'data-status="{status}"><b>{n}</b>', text), status
    assert "associations" in text and "throughput" in text and "task-seconds" in text
    size = sum(p.stat().st_size for p in campaign.products["alpha"])
    assert f"2 files, {size / 1000:.1f} kB" in text  # alpha's products


def test_timeline_has_one_lane_per_worker(report):
    _, _, text, parsed = report
    lanes = parsed.all("g", **{"class": "lane"})
    assert [lane["data-worker"] for lane in lanes] == sorted(WORKERS)
    spans = parsed.all("g", **{"class": "span"})
    assert len(spans) == 4
    by_status = sorted(s["data-status"] for s in spans)
    assert by_status == ["done", "done", "failed", "failed"]  # beta's retried attempt and its last one: failed
    assert "<title>jw_alpha: attempt 1, done" in text


def test_timings_table_and_embedded_thumbnail(report, campaign):
    _, _, text, parsed = report
    rows = {r["id"]: r for r in parsed.all("tr") if r.get("id")}
    assert [rows[f"asn-{campaign.ids[n]}"]["data-status"] for n in ("alpha", "beta", "gamma", "delta")] == [
        "done",
        "failed",
        "running",
        "pending",
    ]
    images = parsed.all("img")
    assert len(images) == 1
    prefix = "data:image/png;base64,"
    assert images[0]["src"].startswith(prefix)
    png = base64.b64decode(images[0]["src"].removeprefix(prefix))
    assert png == (campaign.root / "campaign_thumbnails" / "jw_alpha.png").read_bytes()
    assert parsed.all("a", href="jw_alpha/jw_alpha_i2d.fits")  # relative download links
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt; input" in text and "<b>bad</b>" not in text  # escaped
    assert "12.5 s" in text  # alpha's wall time


def test_sessions_listed(report):
    _, _, text, _ = report
    assert "coron3-dask campaign asn/ -o out" in text and "tcp://127.0.0.1:8786" in text


def test_thumbnail_outside_the_root_is_not_embedded(campaign, tmp_path):
    from coron3_dask.dashboard.report import render_report, serving

    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((campaign.root / "campaign_thumbnails" / "jw_alpha.png").read_bytes())
    snap = serving.campaign_snapshot(campaign.root)
    snap["associations"][0]["thumbnail"] = "../elsewhere.png"
    from coron3_dask.dashboard import report as module

    uris = {r["id"]: module._data_uri(campaign.root, r.get("thumbnail")) for r in snap["associations"]}
    assert set(uris.values()) == {None}
    assert "<img" not in render_report(snap, campaign.root, thumbnails=uris)


def test_without_spans_or_sessions(tmp_path):
    from coron3_dask.files.campaign_db import CampaignDB

    root = tmp_path / "fresh"
    root.mkdir()
    with CampaignDB(root / DB_NAME) as db:
        db.register(["/x/a_asn.json"])
    text = write_report(root).read_text()
    assert "No worker time recorded yet" in text and "No session recorded" in text


def test_no_database_is_an_input_error(tmp_path):
    before = tree_state(tmp_path)
    with pytest.raises(InputError, match="no campaign database"):
        write_report(tmp_path)
    assert tree_state(tmp_path) == before
