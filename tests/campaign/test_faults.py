"""Fault tolerance with real processes on 127.0.0.1: a `dask scheduler`, `dask worker`s and a campaign client.

(a) a worker killed midway, (b) the client killed midway and rerun, (c) a corrupt association among
good ones, (d) the scheduler killed midway and a rerun on a new cluster, and clean stops on SIGTERM
(in-flight associations finish) and on a second SIGINT (they are cancelled).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from astropy.io import fits
from campaign_helpers import BIN, Cluster, product_content

from coron3_dask.cli import main
from coron3_dask.files.campaign_db import DB_NAME, CampaignDB
from coron3_dask.files.checksums import sha256_of

pytestmark = pytest.mark.cluster

#: a client that lost its scheduler gives up after this long (distributed's default is 30 s)
_ENV = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s", "PYTHONUNBUFFERED": "1"}


def _argv(asns, out, mask, cluster=None):
    where = ["--scheduler-file", str(cluster.scheduler_file)] if cluster else ["--scheduler", "local-threads"]
    return ["campaign", *map(str, asns), "-o", str(out), "--psfmask", str(mask), "--no-progress", *where,
            "--set", "resample.skip=true"]  # drizzle adds nothing to what these tests check, only time


def _start(asns, out, mask, cluster, *extra):
    cmd = [str(BIN / "coron3-dask"), *_argv(asns, out, mask, cluster), *extra]
    log = open(Path(out).with_suffix(".log"), "ab")
    return subprocess.Popen(cmd, env={**os.environ, **_ENV}, stdout=log, stderr=subprocess.STDOUT)


def _snapshot(out):
    with CampaignDB(Path(out) / DB_NAME, readonly=True) as db:
        return db.snapshot()


def _wait_for(out, proc, condition, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (Path(out) / DB_NAME).exists():
            state = _snapshot(out)
            if condition(state):
                return state
        assert proc.poll() is None, f"campaign ended early ({proc.returncode}): {_log(out)}"
        time.sleep(0.1)
    raise AssertionError(f"timed out; {_log(out)}")


def _log(out, tail=3000):
    path = Path(out).with_suffix(".log")
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-tail:] if tail else text


def _finish(proc, out, timeout=240):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"campaign did not finish: {_log(out)}") from None


def _done(n):
    return lambda s: s["counts"]["done"] >= n


def _check_products(out, reference):
    """Every product complete and equal to the uninterrupted run's; each written once; nothing partial."""
    assert not [p for p in Path(out).rglob("*") if ".partial" in p.name], "a partial file was left"
    state = _snapshot(out)
    assert state["counts"]["done"] == state["total"]
    for assoc in state["associations"]:
        on_disk = sorted(p.name for p in Path(assoc["output_dir"]).glob("*.fits"))
        assert on_disk == sorted(p["name"] for p in assoc["products"]), "products on disk = products recorded"
        for product in assoc["products"]:
            path = Path(assoc["output_dir"]) / product["name"]
            assert sha256_of(path) == product["sha256"]
            with fits.open(path, checksum=True) as hdul:
                hdul.verify("exception")
    assert product_content(Path(out)) == reference


@pytest.fixture(scope="module")
def reference(ten, tmp_path_factory):
    """The uninterrupted campaign's products (in process, the default local-threads cluster)."""
    asns, mask = ten
    out = tmp_path_factory.mktemp("reference")
    assert main(_argv(asns, out, mask)) == 0
    return product_content(out)


def test_a_worker_killed_midway(ten, reference, real_cluster, tmp_path):
    asns, mask = ten
    out = tmp_path / "out"
    proc = _start(asns, out, mask, real_cluster)
    _wait_for(out, proc, lambda s: s["counts"]["done"] >= 2 and s["counts"]["running"] >= 1)
    victim = next(iter(real_cluster.worker_pids().values()))
    os.kill(victim, signal.SIGKILL)
    assert _finish(proc, out) == 0, _log(out)
    _check_products(out, reference)


def test_b_client_killed_midway_then_rerun_redoes_only_the_unfinished(ten, reference, real_cluster, tmp_path):
    asns, mask = ten
    out = tmp_path / "out"
    proc = _start(asns, out, mask, real_cluster)
    state = _wait_for(out, proc, lambda s: s["counts"]["done"] >= 3 and s["counts"]["running"] >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _snapshot(out)
    done_before = {a["id"]: a for a in killed["associations"] if a["status"] == "done"}
    assert len(done_before) >= len([a for a in state["associations"] if a["status"] == "done"])
    mtimes = {p: p.stat().st_mtime_ns for a in done_before.values() for p in Path(a["output_dir"]).glob("*.fits")}
    assert _finish(_start(asns, out, mask, real_cluster), out) == 0, _log(out)
    after = {a["id"]: a for a in _snapshot(out)["associations"]}
    for ident in done_before:
        assert after[ident]["attempts"] == 1, "a finished association is not redone"
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert any(a["attempts"] == 2 for a in after.values()), "the one running when the client died is redone"
    _check_products(out, reference)


def test_c_corrupt_association_fails_alone_with_a_one_line_error(ten, tmp_path, real_cluster):
    asns, mask = ten
    good = asns[:3]
    bad_dir = tmp_path / "corrupt"
    shutil.copytree(asns[3].parent, bad_dir)
    member = sorted(bad_dir.glob("*_calints.fits"))[-1]
    member.write_bytes(member.read_bytes()[:-20000])  # truncated in its data
    bad = bad_dir / asns[3].name
    out = tmp_path / "out"
    assert _finish(_start([*good, bad], out, mask, real_cluster), out) == 1
    state = {Path(a["asn"]).parent.name: a for a in _snapshot(out)["associations"]}
    assert [state[p.parent.name]["status"] for p in good] == ["done"] * 3
    failed = state["corrupt"]
    assert failed["status"] == "failed" and member.name in failed["error"] and "\n" not in failed["error"]
    assert member.name in _log(out)


def test_d_scheduler_killed_then_rerun_on_a_new_cluster(ten, reference, tmp_path):
    asns, mask = ten
    out = tmp_path / "out"
    first = Cluster(tmp_path / "first")
    try:
        proc = _start(asns, out, mask, first)
        _wait_for(out, proc, lambda s: s["counts"]["done"] >= 2 and s["counts"]["running"] >= 1)
        os.kill(first.scheduler.pid, signal.SIGKILL)
        status = _finish(proc, out, timeout=120)
    finally:
        first.close()
    assert status == 3, _log(out)
    assert "lost the connection to the Dask scheduler" in _log(out)
    db = sqlite3.connect(out / DB_NAME)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    state = _snapshot(out)
    assert state["counts"]["running"] == 0, "nothing is left 'running'"
    assert state["counts"]["done"] >= 2 and state["counts"]["failed"] == 0
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
    done_before = {a["id"] for a in state["associations"] if a["status"] == "done"}
    second = Cluster(tmp_path / "second")
    try:
        assert _finish(_start(asns, out, mask, second), out) == 0, _log(out)
    finally:
        second.close()
    after = {a["id"]: a for a in _snapshot(out)["associations"]}
    assert all(after[i]["attempts"] == 1 for i in done_before)
    _check_products(out, reference)


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)], ids=["term", "int-twice"])
def test_clean_stop(ten, real_cluster, tmp_path, signals):
    asns, mask = ten
    out = tmp_path / "out"
    proc = _start(asns, out, mask, real_cluster, "--max-concurrent", "2")
    _wait_for(out, proc, lambda s: s["counts"]["done"] >= 1 and s["counts"]["running"] >= 1)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.3)
    status = _finish(proc, out, timeout=120)
    assert status == 128 + signals[-1], _log(out)
    state = _snapshot(out)
    assert state["counts"]["running"] == 0 and state["counts"]["pending"] >= 1
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
    for assoc in state["associations"]:
        if assoc["status"] == "done":
            assert all((Path(assoc["output_dir"]) / p["name"]).exists() for p in assoc["products"])
    if len(signals) == 2:
        assert "cancelling the associations in flight" in _log(out, tail=None)
        assert any(a["status"] == "pending" and a["started"] for a in state["associations"]), "in flight, cancelled"


def test_sys_executable_is_the_venv():  # the subprocesses above use the same environment as the tests
    assert (BIN / "coron3-dask").exists() and Path(sys.executable).parent == BIN


def test_e_every_worker_gone_for_good_stops_the_campaign(ten, real_cluster, tmp_path):
    asns, mask = ten
    out = tmp_path / "out"
    proc = _start(asns, out, mask, real_cluster, "--no-worker-timeout", "3")
    _wait_for(out, proc, lambda s: s["counts"]["done"] >= 1 and s["counts"]["running"] >= 1)
    for worker in real_cluster.workers:  # nanny and worker: nothing comes back
        os.killpg(worker.pid, signal.SIGKILL)
    assert _finish(proc, out, timeout=120) == 3, _log(out)
    assert "no Dask worker has been connected" in _log(out)
    state = _snapshot(out)
    assert state["counts"]["running"] == 0 and state["counts"]["pending"] >= 1
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
