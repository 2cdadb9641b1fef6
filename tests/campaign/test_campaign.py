"""Campaigns in one process: state database, resume rules, retries, flow control, the second client."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from coron3_dask.campaign import Campaign, Settings
from coron3_dask.cli import main
from coron3_dask.config import load_config
from coron3_dask.files.campaign_db import DB_NAME, SCHEMA_VERSION, CampaignDB
from coron3_dask.files.checksums import sha256_of
from coron3_dask.files.lock import OutputLock


def _campaign(paths, out, mask, *extra, scheduler="synchronous"):
    return main(["campaign", *map(str, paths), "-o", str(out), "--psfmask", str(mask), "--scheduler", scheduler,
                 "--no-progress", "--set", "resample.skip=true", *extra])


def _state(out) -> dict:
    with CampaignDB(Path(out) / DB_NAME, readonly=True) as db:
        return db.snapshot()


def _statuses(out) -> list[str]:
    return [a["status"] for a in _state(out)["associations"]]


@pytest.fixture(scope="module")
def broken(few, tmp_path_factory):
    (a, *_), _ = few
    asn = json.loads(a.read_text())
    asn["products"][0]["name"] += "-broken"
    asn["products"][0]["members"][0]["expname"] = "missing_calints.fits"
    path = a.with_name("broken-association.json")  # not *_asn.json: directory searches skip it
    path.write_text(json.dumps(asn))
    return path


def test_database_records_everything_and_failures_are_isolated(few, broken, tmp_path, capsys):
    (a, b, _), mask = few
    assert _campaign([a, broken, b], tmp_path, mask) == 1
    state = _state(tmp_path)
    assert state["schema_version"] == SCHEMA_VERSION
    assert [x["status"] for x in state["associations"]] == ["done", "failed", "done"]
    failed = state["associations"][1]
    assert "missing_calints.fits" in failed["error"] and "\n" not in failed["error"]
    assert failed["attempts"] == 1, "bad input is not retried"
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    done = state["associations"][0]
    out = Path(done["output_dir"])
    assert done["wall_seconds"] > 0 and done["task_seconds"] > 0 and done["workers"]
    assert done["tasks_done"] == done["tasks_total"] > 0
    for product in done["products"]:  # every product with its size and checksum, as on disk
        path = out / product["name"]
        assert product["size"] == path.stat().st_size and product["sha256"] == sha256_of(path)
    assert any(p["name"].endswith("_psfsub.fits") for p in done["products"])
    inputs = db.execute("SELECT path, size, sha256 FROM inputs WHERE association=?", (done["id"],)).fetchall()
    assert {Path(p).name for p, _, _ in inputs} >= {a.name, mask.name}
    for path, size, digest in inputs:
        assert Path(path).stat().st_size == size and sha256_of(path) == digest
    provenance = json.loads(db.execute("SELECT provenance FROM associations WHERE id=?", (done["id"],)).fetchone()[0])
    assert provenance["parameters"]["resample"]["skip"] is True and provenance["version"]
    assert "failed" in capsys.readouterr().err


def test_rerun_skips_current_work_and_redoes_what_changed(few, tmp_path, capsys):
    (a, b, _), mask = few
    assert _campaign([a, b], tmp_path, mask) == 0
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.fits")}
    assert _campaign([a, b], tmp_path, mask) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.fits")} == mtimes, "current work is not redone"
    assert "skipped" in capsys.readouterr().err
    # a different parameter: both redone
    assert _campaign([a, b], tmp_path, mask, "--set", "klip.truncate=1") == 0
    assert all(p.stat().st_mtime_ns != t for p, t in mtimes.items() if p.name.endswith("_psfsub.fits"))
    assert [x["attempts"] for x in _state(tmp_path)["associations"]] == [2, 2]
    # a missing product: that association only
    state = _state(tmp_path)
    victim = Path(state["associations"][1]["output_dir"]) / state["associations"][1]["products"][0]["name"]
    victim.unlink()
    assert _campaign([a, b], tmp_path, mask, "--set", "klip.truncate=1") == 0
    assert victim.exists()
    assert [x["attempts"] for x in _state(tmp_path)["associations"]] == [2, 3]
    # --force: everything
    assert _campaign([a, b], tmp_path, mask, "--set", "klip.truncate=1", "--force") == 0
    assert [x["attempts"] for x in _state(tmp_path)["associations"]] == [3, 4]


def test_changed_input_is_redone(tmp_path):
    from campaign_helpers import make_programmes

    (a, b), mask = make_programmes(tmp_path / "in", 2, seed=70)
    assert _campaign([a, b], tmp_path / "out", mask) == 0
    member = next(a.parent.glob("*_calints.fits"))
    data = bytearray(member.read_bytes())
    data[-100] ^= 1  # one bit of the last data block: same size, different checksum
    member.write_bytes(bytes(data))
    assert _campaign([a, b], tmp_path / "out", mask) == 0
    assert [x["attempts"] for x in _state(tmp_path / "out")["associations"]] == [2, 1]


def test_running_left_by_a_dead_client_goes_back_to_pending(few, tmp_path):
    (a, b, _), mask = few
    assert _campaign([a], tmp_path, mask) == 0
    with CampaignDB(tmp_path / DB_NAME) as db:  # as a killed client leaves it
        session = db.begin_session(command="killed")
        ident = db.register([str(b.resolve())])[0]
        db.start(ident, session)
        assert db.row(ident)["status"] == "running"
    assert _campaign([a, b], tmp_path, mask) == 0
    assert _statuses(tmp_path) == ["done", "done"]
    assert [x["attempts"] for x in _state(tmp_path)["associations"]] == [1, 2]


def test_second_client_is_refused(few, tmp_path, capsys):
    (a, *_), mask = few
    with OutputLock(tmp_path, association="campaign of 3 associations"):
        assert _campaign([a], tmp_path, mask) == 1
    err = capsys.readouterr().err
    assert "in use by another campaign client" in err and str(tmp_path) in err
    assert not (tmp_path / DB_NAME).exists() or not _state(tmp_path)["associations"]


def test_status_command_and_inputs_as_directory_glob_and_list(few, tmp_path, capsys):
    (a, b, c), mask = few
    listing = tmp_path / "list.txt"
    listing.write_text(f"# campaign\n{a}\n\n{b}  # second\n")
    out = tmp_path / "out"
    assert main(["campaign", "--list", str(listing), "-o", str(out), "--psfmask", str(mask), "--scheduler",
                 "synchronous", "--no-progress", "--set", "resample.skip=true"]) == 0
    assert _campaign([c.parent.parent, str(c.parent / "*_asn.json")], out, mask) == 0  # a tree and a glob
    assert len(_state(out)["associations"]) == 3
    capsys.readouterr()
    assert main(["campaign", "status", str(out)]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in (a.parent.name, "done"))
    assert main(["campaign", "status", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["done"] == 3
    assert main(["campaign", "status", str(tmp_path / "nothing")]) == 1
    assert "no campaign database" in capsys.readouterr().err
    assert main(["campaign", "-o", str(tmp_path / "none")]) == 1
    assert "no associations" in capsys.readouterr().err
    assert main(["campaign", str(tmp_path / "absent_asn.json"), "-o", str(tmp_path / "none")]) == 1
    assert "absent_asn.json: no such file" in capsys.readouterr().err


class _FakeExecutor:
    """Runs each graph synchronously after a pause; counts graphs in flight; fails on request."""

    slots = 3
    dashboard_link = ""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.inflight = 0
        self.peak = 0
        self.lock = threading.Lock()

    def compute(self, collections, label):
        import dask

        with self.lock:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            time.sleep(0.3)
            if self.fail.get(label, 0) > 0:
                self.fail[label] -= 1
                raise RuntimeError(f"worker lost while computing {label}")
            with dask.config.set(scheduler="synchronous"):
                return list(dask.compute(*collections, optimize_graph=False)), [("fake", 0.0, 1.0, 1.0)]
        finally:
            with self.lock:
                self.inflight -= 1

    def progress(self, label):
        return None

    def cancel(self):
        pass

    def lost(self):
        return None


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    from campaign_helpers import make_programmes

    return make_programmes(tmp_path_factory.mktemp("campaign_five"), 5, seed=80)


def _settings(out, mask):
    return Settings(Path(out), load_config(overrides=["resample.skip=true"]), psfmask=mask)


def test_flow_control_keeps_at_most_max_concurrent_in_flight(five, tmp_path):
    asns, mask = five
    executor = _FakeExecutor()
    result = Campaign(asns, _settings(tmp_path, mask), executor, max_concurrent=2).run()
    assert executor.peak == 2, "two graphs in flight at once, never more"
    assert result.count("done") == 5 and result.ending == "complete"
    executor = _FakeExecutor()
    Campaign(asns, _settings(tmp_path / "b", mask), executor).run()
    assert executor.peak == 3, "default: the executor's slots"


def test_retries_then_failed_with_the_error(five, tmp_path):
    asns, mask = five
    names = [json.loads(a.read_text())["products"][0]["name"] for a in asns]
    executor = _FakeExecutor(fail={names[0]: 1, names[1]: 5})
    result = Campaign(asns[:3], _settings(tmp_path, mask), executor, retries=2).run()
    state = {a["product_name"]: a for a in _state(tmp_path)["associations"]}
    assert state[names[0]]["status"] == "done" and state[names[0]]["attempts"] == 2
    assert state[names[1]]["status"] == "failed" and state[names[1]]["attempts"] == 3
    assert "worker lost while computing" in state[names[1]]["error"]
    assert state[names[2]]["status"] == "done" and state[names[2]]["attempts"] == 1
    assert result.count("failed") == 1
    assert not list(tmp_path.rglob("*.partial")), "failed attempts leave no partial file"


def test_stop_request_finishes_in_flight_and_submits_nothing_more(five, tmp_path):
    asns, mask = five
    executor = _FakeExecutor()
    campaign = Campaign(asns, _settings(tmp_path, mask), executor, max_concurrent=2)
    compute = executor.compute

    def stop_at_first_compute(collections, label):  # both first associations are in flight by then
        campaign.request_stop()
        return compute(collections, label)

    executor.compute = stop_at_first_compute
    result = campaign.run()
    assert result.ending == "stopped"
    statuses = _statuses(tmp_path)
    assert statuses.count("done") == 2 and statuses.count("pending") == 3 and "running" not in statuses


def test_duplicate_and_unsafe_product_names_are_refused(five, tmp_path):
    asns, mask = five
    twin = asns[0].with_name("twin-of-p00_asn.json")
    twin.write_text(asns[0].read_text())  # another ASN, the same product name: same output directory
    evil = json.loads(asns[1].read_text())
    evil["products"][0]["name"] = "../escaped"
    unsafe = asns[1].with_name("unsafe_asn.json")
    unsafe.write_text(json.dumps(evil))
    result = Campaign([asns[0], twin, unsafe], _settings(tmp_path / "out", mask), _FakeExecutor()).run()
    by_asn = {o.asn: o for o in result.outcomes}
    assert by_asn[str(asns[0].resolve())].status == "done"
    assert by_asn[str(twin.resolve())].status == "failed" and "also that of" in by_asn[str(twin.resolve())].error
    assert "not a plain directory name" in by_asn[str(unsafe.resolve())].error
    assert not (tmp_path / "escaped").exists()
    twin.unlink()
    unsafe.unlink()


def test_interrupted_association_is_retried_without_a_stop(five, tmp_path):
    from concurrent.futures import CancelledError

    asns, mask = five
    executor = _FakeExecutor()
    name = json.loads(asns[0].read_text())["products"][0]["name"]
    compute = executor.compute
    cancelled = []

    def cancelled_once(collections, label):  # e.g. another client cancelled its futures on a shared cluster
        if label == name and not cancelled:
            cancelled.append(label)
            raise CancelledError("cancelled elsewhere")
        return compute(collections, label)

    executor.compute = cancelled_once
    result = Campaign(asns[:2], _settings(tmp_path, mask), executor).run()
    assert cancelled and result.ending == "complete" and result.count("done") == 2
