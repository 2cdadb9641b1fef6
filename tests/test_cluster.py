"""A real cluster: `dask scheduler` + two `dask worker` processes on 127.0.0.1.

The pipeline submitted through ``--scheduler tcp://...`` and through ``--scheduler-file``
must write products whose pixel data and tables are bit-identical to a synchronous run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from coron3_dask.cli import main

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    sched_file = work / "scheduler.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), "scheduler did not start"
        for i in range(2):
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                 "--memory-limit", "2GiB", "--name", f"w{i}", "--no-dashboard", "--local-directory", str(work)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(scheduler_file=str(sched_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield address, sched_file
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _arrays(directory: Path) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    for path in sorted(directory.glob("*.fits")):
        with fits.open(path) as hdul:
            for hdu in hdul[1:]:
                if hdu.name != "C3D_PROV" and hdu.data is not None:
                    out[path.name, hdu.name] = np.array(hdu.data)
    return out


def _run(sim, out, *scheduler):
    argv = ["run", str(sim.asn_path), "--psfmask", str(sim.psfmask_path), "-o", str(out), "--no-progress",
            *scheduler]
    assert main(argv) == 0


def test_cluster_products_bit_identical_to_synchronous(cluster, small_programme, tmp_path, capsys):
    address, sched_file = cluster
    _run(small_programme, tmp_path / "sync", "--scheduler", "synchronous")
    _run(small_programme, tmp_path / "tcp", "--scheduler", address)
    assert "Dask dashboard" in capsys.readouterr().err
    _run(small_programme, tmp_path / "file", "--scheduler-file", str(sched_file))
    reference = _arrays(tmp_path / "sync")
    assert len({name for name, _ in reference}) == 13
    for other in ("tcp", "file"):
        got = _arrays(tmp_path / other)
        assert got.keys() == reference.keys()
        for key, value in reference.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{other}: {key}")
    record = json.loads(next((tmp_path / "tcp").glob("*_coron3_dask.json")).read_text())
    assert record["parameters"]["align_refs"]["align_to"] == "each"


def test_cluster_progress_reports_stages(cluster, small_programme, tmp_path, capsys):
    address, _ = cluster
    argv = ["run", str(small_programme.asn_path), "--psfmask", str(small_programme.psfmask_path),
            "-o", str(tmp_path), "--scheduler", address, "--set", "resample.skip=true",
            "--performance-report", str(tmp_path / "report.html")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[100.0%]" in err and "align " in err and "klip " in err
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_the_default_scheduler_is_an_in_process_cluster_with_a_dashboard(small_programme, tmp_path, capsys):
    """No --scheduler: a LocalCluster in this process (threads, shared memory) with dashboard and progress."""
    from distributed import LocalCluster

    started = []
    real_init = LocalCluster.__init__

    def spy(self, *args, **kwargs):
        started.append(kwargs)
        return real_init(self, *args, **kwargs)

    LocalCluster.__init__ = spy
    try:
        argv = ["run", str(small_programme.asn_path), "--psfmask", str(small_programme.psfmask_path),
                "-o", str(tmp_path / "default")]
        assert main(argv) == 0
    finally:
        LocalCluster.__init__ = real_init
    (kwargs,) = started
    assert kwargs["processes"] is False and kwargs["n_workers"] == 1
    assert kwargs["threads_per_worker"] == (os.cpu_count() or 1) + 1
    err = capsys.readouterr().err
    assert "Dask dashboard: http://127.0.0.1:" in err and "[100.0%]" in err
    _run(small_programme, tmp_path / "sync", "--scheduler", "synchronous")
    reference, got = _arrays(tmp_path / "sync"), _arrays(tmp_path / "default")
    assert got.keys() == reference.keys() and len(reference) > 13
    for key, value in reference.items():
        np.testing.assert_array_equal(got[key], value, err_msg=str(key))
