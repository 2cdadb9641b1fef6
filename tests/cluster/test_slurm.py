"""``--cluster slurm``: the job script our config gives, and a campaign whose workers are real SLURM jobs.

The campaign test needs a SLURM controller with an idle node (``.ci/slurm-setup.sh`` starts one on
127.0.0.1 as root on Debian) and skips with the reason otherwise; the job-script and option tests
need only dask-jobqueue.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dask
import pytest
from campaign_helpers import BIN, make_programmes, product_content

from coron3_dask.cli import _parser, clusters, main, schedulers
from coron3_dask.config import ConfigError

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "deploy" / "hpc" / "jobqueue.yaml"


def _slurm_unavailable() -> str | None:
    """Why a SLURM job cannot run here (None when a node is idle)."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found; as root on Debian, .ci/slurm-setup.sh starts one)"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out"
    if nodes.returncode:
        return f"sinfo fails: {nodes.stderr.strip()[:200]}"
    if not re.search(r" (idle|mix)$", nodes.stdout, re.MULTILINE):
        return f"no idle SLURM node: {nodes.stdout.strip()[:200] or 'none'}"
    return None


def _jobqueue_options(*options: str) -> dict:
    """Keyword arguments for a dask-jobqueue cluster, as ``--cluster-option`` gives them."""
    return dict(clusters.parse_option(o) for o in options)


def test_job_script_has_our_directives():
    jobqueue = pytest.importorskip("dask_jobqueue")
    options = _jobqueue_options("queue=debug", "walltime=00:30:00", "name=coron3-test",
                                "job-extra-directives=[--exclusive]", "scheduler-options={dashboard_address: ':0'}")
    with dask.config.set(clusters.load_config(CONFIG)), jobqueue.SLURMCluster(**options) as cluster:
        script = cluster.job_script()
    for directive in ("#SBATCH -J coron3-test", "#SBATCH -p debug", "#SBATCH --cpus-per-task=16",
                      "#SBATCH --mem=96G", "#SBATCH -t 00:30:00", "#SBATCH --exclusive"):
        assert directive in script.splitlines(), (directive, script)
    assert "export OMP_NUM_THREADS=1" in script  # the prologue
    assert "--nworkers 16" in script and "--local-directory ${TMPDIR:-/tmp}" in script


def test_pbs_job_script_has_our_directives():
    jobqueue = pytest.importorskip("dask_jobqueue")
    options = _jobqueue_options("queue=workq", "scheduler-options={dashboard_address: ':0'}")
    with dask.config.set(clusters.load_config(CONFIG)), jobqueue.PBSCluster(**options) as cluster:
        script = cluster.job_script()
    for directive in ("#PBS -N coron3-worker", "#PBS -q workq", "#PBS -l select=1:ncpus=16:mem=96GB",
                      "#PBS -l walltime=02:00:00"):
        assert directive in script.splitlines(), (directive, script)


def test_missing_jobqueue_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # `import dask_jobqueue` raises ImportError
    args = _parser().parse_args(["run", "x_asn.json", "--cluster", "pbs"])
    with pytest.raises(ConfigError) as err, clusters.start_cluster(args):
        pass
    message = str(err.value)
    assert "\n" not in message and "pip install 'coron3_dask[pbs]'" in message


def test_adapt_and_options_are_parsed():
    args = _parser().parse_args(["campaign", "a", "-o", "out", "--cluster", "slurm", "--adapt", "0:8",
                                 "--cluster-option", "walltime=00:30:00", "--cluster-option", "cores=4"])
    assert args.adapt == (0, 8)
    assert args.cluster_option == [("walltime", "00:30:00"), ("cores", 4)]
    schedulers.check_scheduler(args)
    for bad in ("8", "4:2", "-1:3", "a:b", "0:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            clusters.parse_adapt(bad)


@pytest.mark.parametrize("extra, message", [
    (["--cluster", "slurm", "--scheduler", "local"], "does not go with --scheduler"),
    (["--cluster", "slurm", "--workers", "2", "--adapt", "1:2"], "not both"),
    (["--adapt", "1:2"], "need --cluster"),
])
def test_inconsistent_cluster_options_are_refused(extra, message):
    args = _parser().parse_args(["run", "x_asn.json", *extra])
    with pytest.raises(ConfigError, match=message):
        schedulers.check_scheduler(args)


def _squeue(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, timeout=20)
    return out.stdout.splitlines()


@pytest.mark.slurm
def test_campaign_on_slurm_jobs(tmp_path):
    if reason := _slurm_unavailable():
        pytest.skip(reason)
    pytest.importorskip("dask_jobqueue")
    asns, mask = make_programmes(tmp_path / "in", 2)
    common = ["campaign", *map(str, asns), "--psfmask", str(mask), "--no-progress", "--set", "resample.skip=true"]
    assert main([*common, "-o", str(tmp_path / "sync"), "--scheduler", "synchronous"]) == 0

    name = f"coron3-test-{uuid.uuid4().hex[:8]}"
    logs = tmp_path / "jobs"
    logs.mkdir()
    cluster = ["--cluster", "slurm", "--workers", "1", "--cluster-config", str(CONFIG),
               "--cluster-option", "queue=debug", "--cluster-option", "walltime=00:10:00",
               "--cluster-option", f"name={name}", "--cluster-option", "cores=2", "--cluster-option", "processes=1",
               "--cluster-option", "memory=4GiB", "--cluster-option", "interface=lo",
               "--cluster-option", f"log-directory={logs}", "--cluster-option", f"local-directory={tmp_path}",
               "--cluster-option", "scheduler-options={dashboard_address: '127.0.0.1:0'}"]
    seen: dict[str, str] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for line in _squeue(name):
                job, state = line.split()
                seen.setdefault(job, state)
                seen[job] = state if state == "RUNNING" else seen[job]
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "coron3-dask"), *common, "-o", str(tmp_path / "slurm"), *cluster],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - start
    done.set()
    watcher.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert seen and "RUNNING" in seen.values(), (seen, proc.stderr)

    assert product_content(tmp_path / "slurm") == product_content(tmp_path / "sync")
    assert len({p.parent for p in (tmp_path / "slurm").rglob("*_psfsub.fits")}) == len(asns)

    deadline = time.monotonic() + 60
    while _squeue(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _squeue(name), "the worker jobs outlived the campaign"

    startup = float(re.search(r"connected after ([\d.]+) s", proc.stderr).group(1))
    jobs = ", ".join(seen)
    print("\n" + "\n".join(line for line in proc.stderr.splitlines() if line.startswith(("slurm:", "   done"))))
    print(f"\nSLURM jobs {jobs} ({name}): submit -> worker connected {startup:.1f} s, "
          f"compute and the rest {wall - startup:.1f} s, whole command {wall:.1f} s")


def test_cluster_config_is_read_as_dotted_keys(tmp_path):
    good = tmp_path / "jobqueue.yaml"
    good.write_text("jobqueue:\n  slurm:\n    cores: 2\n    scheduler-options: {}\n")
    assert clusters.load_config(good) == {"jobqueue.slurm.cores": 2, "jobqueue.slurm.scheduler-options": {}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobqueue: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        clusters.load_config(bad)
