"""Derived figures (throughput, ETA) and the text table of ``campaign status``."""

from __future__ import annotations

import pytest

from coron3_dask.dashboard.state import derive, format_bytes, format_seconds, format_time, product_dir
from coron3_dask.dashboard.tables import progress_line, status_table
from coron3_dask.files import serving


def snapshot(rows, *, now=10_000.0, started=3_000.0, finished=None):
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pending", "running", "done", "failed")}
    session = {"id": 2, "started": started, "finished": finished}
    full = [
        {
            "id": i + 1,
            "position": i,
            "asn": f"/a/{i}_asn.json",
            "product_name": None,
            "attempts": 1,
            "error": None,
            "started": None,
            "finished": None,
            "wall_seconds": None,
            "task_seconds": None,
            "products": [],
            "session": 2,
            "step": None,
            "tasks_done": None,
            "tasks_total": None,
            "workers": [],
            **r,
        }
        for i, r in enumerate(rows)
    ]
    return {
        "now": now,
        "counts": counts,
        "total": len(rows),
        "session": session,
        "sessions": [{"id": 1, "started": 0.0, "finished": 1000.0}, session],
        "associations": full,
        "spans": [],
    }


def test_throughput_and_eta_over_the_current_session():
    rows = [
        {"status": "done", "finished": 4000.0},
        {"status": "done", "finished": 5000.0},
        {"status": "done", "finished": 900.0, "session": 1},  # done by an earlier session: not this one's throughput
        {"status": "failed", "finished": 6000.0},
        {"status": "running", "started": 9000.0},
        {"status": "pending"},
        {"status": "pending"},
        {"status": "pending"},
    ]
    d = derive(snapshot(rows))
    assert d["state"] == "running"
    assert d["elapsed"] == 7000.0
    assert d["done_this_session"] == 2
    assert d["throughput_per_hour"] == pytest.approx(2 / (7000 / 3600), rel=1e-3)
    assert d["remaining"] == 4
    assert d["eta_seconds"] == pytest.approx(4 * 3500.0, rel=1e-3)
    assert d["eta"] == pytest.approx(10_000 + 14_000, rel=1e-6)
    assert d["fraction"] == pytest.approx(4 / 8)
    assert d["campaign_wall"] == pytest.approx(1000 + 7000)


def test_eta_unknown_before_the_first_done_and_after_the_session():
    assert derive(snapshot([{"status": "running", "started": 9000.0}]))["eta_seconds"] is None
    ended = derive(snapshot([{"status": "done", "finished": 4000.0}, {"status": "pending"}], finished=5000.0))
    assert ended["state"] == "finished" and ended["elapsed"] == 2000.0 and ended["eta_seconds"] is None
    complete = derive(snapshot([{"status": "done", "finished": 4000.0}], finished=5000.0))
    assert complete["eta_seconds"] == 0.0 and complete["fraction"] == 1.0


def test_no_session_yet():
    snap = snapshot([{"status": "pending"}])
    snap["session"], snap["sessions"] = None, []
    d = derive(snap)
    assert d["state"] == "registered" and d["elapsed"] == 0 and d["throughput_per_hour"] is None


def test_status_table_rows_and_totals():
    rows = [
        {
            "status": "done",
            "product_name": "jw_one",
            "wall_seconds": 12.34,
            "task_seconds": 40.0,
            "attempts": 1,
            "finished": 4000.0,
            "products": [{"name": "a.fits", "size": 2_000_000, "sha256": ""}] * 5,
        },
        {
            "status": "failed",
            "attempts": 3,
            "wall_seconds": 2.0,
            "error": "ValueError: " + "very long error " * 20 + "\nsecond line",
        },
        {"status": "running", "started": 9990.0, "step": "klip", "tasks_done": 3, "tasks_total": 12},
        {"status": "pending", "attempts": 0},
    ]
    text = status_table(snapshot(rows))
    lines = text.splitlines()
    assert lines[0].split() == [
        "association",
        "status",
        "attempts",
        "wall",
        "s",
        "task",
        "s",
        "products",
        "error",
        "/",
        "step",
    ]
    one = lines[1].split()
    assert one[:5] == ["jw_one", "done", "1", "12.3", "40.0"] and "(10.0" in one[6]
    failed = lines[2]
    assert "1_asn.json" in failed and failed.endswith("...") and "second line" not in failed
    assert len(failed) < 200
    assert "klip (3/12 tasks)" in lines[3] and " 10.0 " in lines[3]  # running: wall counts up to now
    assert lines[4].split()[:3] == ["3_asn.json", "pending", "0"]
    assert lines[5] == "4 associations: 1 done, 1 failed, 1 running, 1 pending"
    assert "5 products, 10.0 MB" in lines[6] and "associations/h" in lines[6] and "to go" in lines[6]
    statuses = ["status", "done", "failed", "running", "pending"]
    assert len({line.index(s) for line, s in zip(lines[:5], statuses, strict=True)}) == 1  # aligned columns


def test_status_table_without_associations():
    snap = snapshot([])
    assert status_table(snap).startswith("no associations registered\n0 associations:")


def test_progress_line():
    line = progress_line(snapshot([{"status": "done", "finished": 4000.0}, {"status": "pending"}]))
    assert line.startswith("campaign: 1/2 finished (50%): 1 done, 0 failed, 0 running, 1 pending")
    assert "/h" in line and "ETA" in line and "\n" not in line


def test_formats():
    assert format_seconds(None) == "-" and format_seconds(4.25) == "4.2 s"
    assert format_seconds(200) == "3 min 20 s" and format_seconds(7500) == "2 h 05 min"
    assert format_seconds(90000) == "1 d 01 h"
    assert format_bytes(512) == "512 B" and format_bytes(3_400_000) == "3.4 MB" and format_bytes(2e12) == "2.0 TB"
    assert format_time(0) == "1970-01-01 00:00:00 UTC" and format_time(None) == "-"


def test_product_dir():
    assert product_dir({"output_dir": "/out/jw_a", "product_name": "jw_a"}, "/out") == "jw_a"
    assert product_dir({"output_dir": "/elsewhere/jw_a", "product_name": "jw_a"}, "/out") == "jw_a"
    assert product_dir({"output_dir": None, "product_name": None}, "/out") is None


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("a.png", False),
        ("dir/a.fits", False),
        ("", True),
        ("/abs", True),
        ("a/../b", True),
        ("./a", True),
        ("a//b", True),
        (".hidden", True),
        ("d/.x.partial", True),
        ("a\\b", True),
        ("a\x00b", True),
        ("campaign.sqlite", True),
        ("campaign.sqlite-shm", True),
        ("other.sqlite", True),
        ("a/", True),
    ],
)
def test_refused_names(name, refused):
    assert serving.is_refused_name(name) is refused
