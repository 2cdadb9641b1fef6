"""Whole-process benchmark of ``coron3-dask campaign``: many small associations on one cluster, paired alternately.

The issue ("Archive-scale campaigns") asks for at least 1.8x the throughput on 2 worker processes
as on 1, and at least 1.5x the throughput of the previous release's serial campaign (one
association after another) on the same 2 workers.  This script measures both.

Inputs
------
``--n`` (default 50) small simulated associations, cached in ``WORK/inputs/pNN`` and reused when
present: ``coron3_dask.simulate.simulate_programme(WORK/inputs/pNN, n_science_ints=2, n_ref_ints=2,
n_dither=1, seed=100 + k)`` (SUB320A335R, 2 science exposures x 2 integrations, 1 reference x 2), its
ASN's ``products[0].name`` suffixed with ``-pNN`` so that every association has its own output
folder (as ``tests/campaign/campaign_helpers.make_programmes``).  PSFMASK: ``p00``'s (all equal).

Configurations
--------------
Each is a fresh whole process, its output root ``WORK/runs/<config>`` emptied and ``os.sync()``
called before the run (after it, the product folders are removed unless ``--keep-outputs``); the ASN
files are passed as positional arguments, in the same order, to every configuration:

1. ``ours 1 worker``:  ``.venv/bin/coron3-dask campaign ASN... -o OUT --psfmask PSFMASK --no-progress
   --scheduler local --workers 1 --threads-per-worker 1``
2. ``ours 2 workers``: the same with ``--workers 2``
3. ``ours default``:   no ``--scheduler`` (the in-process ``local-threads`` cluster: one worker of
   cores + 1 threads inside the client process, so it has no worker processes)
4. ``serial (before)``: the campaign of the previous release (one association after another,
   each one's graph on the cluster), the code at ``--serial-ref`` (default ``04fd337``) checked
   out as a git worktree in ``--old-dir`` (default ``/tmp/coron3_bench/old``, created when
   missing, refused when at another commit): ``PYTHONPATH=OLD .venv/bin/python -m coron3_dask.cli
   campaign ASN... -o OUT --psfmask PSFMASK --no-progress --scheduler local --workers 2
   --threads-per-worker 1``, run with OLD as working directory: ``python -m`` puts the working
   directory first on ``sys.path``, so from the repository root it would silently import today's
   package instead.  Before the rounds, ``coron3_dask.__file__`` is printed from each
   configuration's environment and working directory and asserted to lie under OLD (serial) or
   under this repository (ours).

Rounds: ``--repeat N`` rounds (default 1); each runs every configuration once, in the listed order
on even rounds and reversed on odd ones, so that drifts (page cache, thermal, other load) hit all
configurations alike.  Tables give the median over rounds.

What is measured, per run
-------------------------
* **wall s**: ``time.perf_counter`` from ``subprocess.Popen`` to the process's exit (python
  start-up, imports, cluster start and shutdown, report writing included).
* **assoc/h**: associations ``done`` / wall x 3600.  **done**: ``done`` associations out of
  ``--n``: ours from ``OUT/campaign.sqlite`` (``CampaignDB(path, readonly=True).snapshot()``),
  the serial campaign from its ``OUT/campaign.json`` (``done``/``skipped``/``failed``).
* **speed-up**: assoc/h of the configuration / assoc/h of ``ours 1 worker``.  Targets:
  ``ours 2 workers`` ≥ 1.8x, and ``ours 2 workers`` / ``serial (before)`` ≥ 1.5x (both printed
  as met or not).
* **task-s**: sum over associations of the database's ``task_seconds`` (each association's
  tasks' run time on the workers, summed over its attempts' spans).  The serial campaign has no
  database: a dash.
* **overhead s**: wall - task-s / slots, slots being the task threads of the cluster (1, 2, and
  cores + 1 for ``ours default``): the part of the wall not covered by perfectly packed task
  time: process start, imports, cluster start/stop, scheduling gaps, client-side work (graph
  building, checksums, thumbnails, database, report), idle slots at the tail.
* **peak worker MiB**: the largest RSS any single worker process reached; **peak client MiB**: the
  client's (the campaign process's own).  The process tree is sampled with ``psutil`` every
  ``--interval`` s (default 0.05; new descendants are looked for every 0.5 s, a walk of ``/proc``
  that costs ~4 ms); per process the peak is the largest of its sampled RSS and its kernel
  high-water mark ``VmHWM`` (``/proc/PID/status``, exact up to the last sample before the process
  exits).  The sampler's own CPU is in the JSON (``sampler_cpu``).  Worker processes are the
  descendants whose command line contains ``distributed`` or ``multiprocessing.spawn``
  (distributed's nannies spawn their workers), or forkserver children (a process first seen between
  fork and exec, still showing its parent's command line, is looked at again); multiprocessing's
  resource tracker is neither worker nor client.
* **client CPU s**: user + sys of the campaign process alone, read from its zombie
  (``os.waitid(..., WNOWAIT)`` then ``/proc``) so it is exact; **CPU s**: the whole tree (the
  ``os.wait4`` rusage: the process and every descendant it reaped).
* **where the time goes** (second table): start-up = first association's ``started`` (set once
  its ASN is read, its inputs opened and checksummed) - launch,
  span = last ``finished`` - first ``started``, tail = exit - last ``finished`` (database
  wall-clock times); per-association wall (``wall_seconds``, median) and task-seconds (median),
  their ratio, the client's time before an association's first task and after its last one (its
  ``started``/``finished`` against its worker spans: graph building and submission; checksums,
  thumbnail, database), and the mean number of associations in flight (Σ association wall / span).  For the
  serial campaign: Σ association wall (``campaign.json``) and wall - Σ.
* **others' CPU s**: machine-wide busy CPU during the run minus the tree's and this script's own
  (the sampler's): other load that may have disturbed the run.  ``--wait-quiet S`` waits up to S
  seconds before each run for the machine to be less than 25 % busy.

Waiting for the command: ``coron3-dask campaign`` may be unfinished while this runs.  Before the
rounds, ``campaign --help`` and a smoke campaign of 2 associations are retried every 60 s for up
to ``--wait-minutes`` (default 40); a failed run of ours during the rounds is retried the same way.

Usage::

    .venv/bin/python benchmarks/bench_campaign.py                       # 50 associations, 1 round
    .venv/bin/python benchmarks/bench_campaign.py --n 50 --repeat 1 --json /tmp/bench_campaign.json
    .venv/bin/python benchmarks/bench_campaign.py --n 8 --configs "ours 1 worker" "ours 2 workers"
    .venv/bin/python benchmarks/bench_campaign.py --repeat 3 --wait-quiet 120 --serial-ref 04fd337 --work-dir /tmp/cb
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _process import busy_cpu, kill_group, self_cpu

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BENCH_ROOT = Path("/tmp/coron3_bench")
CONFIG_NAMES = ("ours 1 worker", "ours 2 workers", "ours default", "serial (before)")
TARGET_SCALING = 1.8  # ours 2 workers / ours 1 worker
TARGET_VS_SERIAL = 1.5  # ours 2 workers / serial (before), both on 2 worker processes
POLL_S = 60.0


# ----------------------------------------------------------------------------------------------
# inputs


def _asn_of(folder: Path) -> Path | None:
    asns = sorted(folder.glob("*_asn.json"))
    return asns[0] if len(asns) == 1 else None


def _usable(folder: Path, suffix: str) -> bool:
    """A cached programme: one ASN with the suffixed product name, every member and the PSFMASK present."""
    asn = _asn_of(folder)
    if asn is None or not (folder / "truth.json").is_file():
        return False
    try:
        product = json.loads(asn.read_text())["products"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return False
    members = [folder / m["expname"] for m in product.get("members", [])]
    return (product.get("name", "").endswith(suffix) and bool(members) and all(m.is_file() for m in members)
            and any(folder.glob("*psfmask*.fits")))


def programmes(inputs: Path, n: int, seed: int) -> tuple[list[Path], Path, int]:
    """``n`` small programmes in ``inputs/pNN`` (simulated once, reused); their ASNs, a PSFMASK, how many made."""
    made = 0
    asns = []
    for k in range(n):
        folder = inputs / f"p{k:02d}"
        suffix = f"-p{k:02d}"
        if not _usable(folder, suffix):
            from coron3_dask.simulate import simulate_programme

            shutil.rmtree(folder, ignore_errors=True)
            sim = simulate_programme(folder, n_science_ints=2, n_ref_ints=2, n_dither=1, seed=seed + k)
            asn = json.loads(sim.asn_path.read_text())
            asn["products"][0]["name"] = f"{asn['products'][0]['name']}{suffix}"
            sim.asn_path.write_text(json.dumps(asn))
            made += 1
        asn_path = _asn_of(folder)
        assert asn_path is not None
        asns.append(asn_path)
    psfmask = sorted((inputs / "p00").glob("*psfmask*.fits"))[0]
    return asns, psfmask, made


# ----------------------------------------------------------------------------------------------
# the previous release, as a git worktree


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def ensure_old_worktree(old: Path, ref: str) -> str:
    """Check out ``ref`` of this repository into ``old`` (a detached worktree) unless it is there; return its commit."""
    want = _git("-C", str(REPO), "rev-parse", f"{ref}^{{commit}}")
    if not old.exists():
        old.parent.mkdir(parents=True, exist_ok=True)
        _git("-C", str(REPO), "worktree", "add", "--detach", str(old), want)
    have = _git("-C", str(old), "rev-parse", "HEAD")
    if have != want:
        raise SystemExit(f"{old} is at {have[:10]}, not {ref} ({want[:10]}): remove it (git worktree remove) or "
                         "pass another --old-dir")
    return have


def package_origin(python: str, env: dict[str, str], cwd: Path) -> Path:
    """Where ``import coron3_dask`` comes from for ``python`` in ``env`` and working directory ``cwd``."""
    out = subprocess.run([python, "-c", "import coron3_dask; print(coron3_dask.__file__)"], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out).resolve()


# ----------------------------------------------------------------------------------------------
# measurement


def _vm_hwm(pid: int) -> int:
    """Peak resident set (``VmHWM``) of a live process in bytes; 0 when unknown (gone, zombie, not Linux)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def classify(cmdline: Sequence[str], parent_cmdline: Sequence[str]) -> str:
    """``worker`` or ``other`` for a descendant of the campaign process, from its command line."""
    cmd = " ".join(cmdline)
    if "resource_tracker" in cmd:
        return "other"
    if "forkserver" in cmd:  # the fork server itself has the same command line as its children
        return "worker" if "forkserver" in " ".join(parent_cmdline) else "other"
    return "worker" if "distributed" in cmd or "multiprocessing.spawn" in cmd else "other"


class _TreeSampler(threading.Thread):
    """Per-process peak RSS and CPU of a process and its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float, rescan: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.interval, self.rescan = interval, rescan
        self._next_scan = 0.0
        self.procs: dict[int, dict[str, Any]] = {}
        self._handles: dict[int, Any] = {}
        self._stop_event = threading.Event()
        try:
            self._root: Any = psutil.Process(pid)
        except psutil.Error:
            self._root = None
        if self._root is not None:
            self._track(self._root, "client", [])

    def _track(self, proc: Any, kind: str | None, parent_cmdline: Sequence[str]) -> None:
        import psutil

        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            return
        self._handles[proc.pid] = proc
        self.procs[proc.pid] = {"kind": kind or classify(cmdline, parent_cmdline), "cmd": " ".join(cmdline)[:160],
                                "peak": 0, "cpu": 0.0, "ppid": proc.ppid()}

    def sample(self) -> None:
        import psutil

        if self._root is None:
            return
        now = time.monotonic()
        if now >= self._next_scan:  # walking /proc for descendants costs ~4 ms: not at every sample
            self._next_scan = now + self.rescan
            with contextlib.suppress(psutil.Error):
                for child in self._root.children(recursive=True):
                    if child.pid not in self.procs:
                        parent = self.procs.get(child.ppid(), {}).get("cmd", "").split()
                        self._track(child, None, parent)
        for pid, proc in list(self._handles.items()):
            rec = self.procs[pid]
            try:
                if rec["kind"] == "other":  # first seen between fork and exec (a spawned worker): look again
                    cmdline = proc.cmdline()
                    parent = self.procs.get(rec["ppid"], {}).get("cmd", "").split()
                    rec["kind"], rec["cmd"] = classify(cmdline, parent), " ".join(cmdline)[:160]
                rec["peak"] = max(rec["peak"], proc.memory_info().rss, _vm_hwm(pid))
                t = proc.cpu_times()
                rec["cpu"] = t.user + t.system
            except psutil.NoSuchProcess:
                del self._handles[pid]
            except psutil.Error:
                pass

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _zombie_cpu(pid: int) -> float | None:
    """User + sys of an exited, not yet reaped process (its own, not its children's)."""
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def measure(cmd: Sequence[str], log_path: Path, timeout: float, env: dict[str, str], cwd: Path,
            interval: float) -> dict[str, Any]:
    """Run ``cmd`` as a fresh process (own session) and measure it and its descendants."""
    timed_out = threading.Event()
    with log_path.open("wb") as log:
        busy0, self0 = busy_cpu(), self_cpu()
        launched = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
        sampler = _TreeSampler(proc.pid, interval)
        sampler.start()

        def on_timeout() -> None:
            timed_out.set()
            kill_group(proc.pid)

        timer = threading.Timer(timeout, on_timeout)
        timer.start()
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie: its CPU is final
            wall = time.perf_counter() - start
            exited = time.time()
            sampler.stop()
            client_cpu = _zombie_cpu(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): take the child's tree down with us
            kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
        busy = busy_cpu() - busy0
        own = self_cpu() - self0
    proc.returncode = os.waitstatus_to_exitcode(status)
    leftovers = kill_group(proc.pid)  # the session leader is gone; anything still in its group is a leftover
    cpu = usage.ru_utime + usage.ru_stime
    procs = list(sampler.procs.values())
    workers = [p for p in procs if p["kind"] == "worker"]
    client = [p for p in procs if p["kind"] == "client"]
    result: dict[str, Any] = {
        "wall": wall, "launched": launched, "exited": exited, "cpu": cpu,
        "client_cpu": client_cpu if client_cpu is not None else (client[0]["cpu"] if client else None),
        "peak_client_mib": client[0]["peak"] / 2**20 if client and client[0]["peak"] else None,
        "peak_worker_mib": max(p["peak"] for p in workers) / 2**20 if workers else None,
        "worker_processes": len(workers), "worker_cpu": sum(p["cpu"] for p in workers),
        "maxrss_mib": usage.ru_maxrss / 1024, "others_cpu": max(0.0, busy - cpu - own), "sampler_cpu": own,
        "rc": proc.returncode, "leftover_processes": leftovers,
        "processes": [{k: p[k] for k in ("kind", "cmd", "cpu")} | {"peak_mib": p["peak"] / 2**20} for p in procs],
    }
    if timed_out.is_set():
        result["error"] = f"timeout after {timeout:.0f} s"
    elif proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-4:]
        result["error"] = f"exit {proc.returncode}: " + " | ".join(line.strip()[:200] for line in tail)
    return result


# ----------------------------------------------------------------------------------------------
# what the campaign recorded


def db_outcome(out: Path) -> dict[str, Any]:
    """Counts, task-seconds and timeline from ``OUT/campaign.sqlite`` (ours)."""
    from coron3_dask.files.campaign_db import DB_NAME, CampaignDB

    with CampaignDB(out / DB_NAME, readonly=True) as db:
        snap = db.snapshot()
    rows = snap["associations"]
    walls = [r["wall_seconds"] for r in rows if r.get("wall_seconds") is not None]
    tasks = [r["task_seconds"] for r in rows if r.get("task_seconds") is not None]
    started = [r["started"] for r in rows if r.get("started")]
    first_task: dict[int, float] = {}
    last_task: dict[int, float] = {}
    for span in snap["spans"]:
        a = span["association"]
        first_task[a] = min(first_task.get(a, span["start"]), span["start"])
        last_task[a] = max(last_task.get(a, span["stop"]), span["stop"])
    done = [r for r in rows if r["status"] == "done" and r["id"] in first_task and r.get("started")]
    finished = [r["finished"] for r in rows if r.get("finished")]
    return {
        "done": snap["counts"].get("done", 0), "failed": snap["counts"].get("failed", 0), "total": snap["total"],
        "task_s": sum(tasks) if tasks else None, "assoc_walls": walls, "assoc_tasks": tasks,
        "first_start": min(started) if started else None, "last_finish": max(finished) if finished else None,
        "assoc_prep": [first_task[r["id"]] - r["started"] for r in done],
        "assoc_post": [r["finished"] - last_task[r["id"]] for r in done if r.get("finished")],
        "attempts": sum(r.get("attempts") or 0 for r in rows),
        "workers_seen": sorted({w for r in rows for w in r.get("workers") or []}),
        "errors": [r["error"] for r in rows if r.get("error")][:3],
    }


def json_outcome(out: Path) -> dict[str, Any]:
    """Counts and per-association wall from ``OUT/campaign.json`` (the serial campaign of the previous release)."""
    record = json.loads((out / "campaign.json").read_text())
    rows = record.get("associations", [])
    return {
        "done": record.get("done", 0), "failed": record.get("failed", 0), "skipped": record.get("skipped", 0),
        "total": record.get("total", len(rows)), "task_s": None,
        "assoc_walls": [r["wall_seconds"] for r in rows if r.get("wall_seconds") is not None], "assoc_tasks": [],
        "first_start": None, "last_finish": None,
        "errors": [r["error"] for r in rows if r.get("error")][:3],
    }


# ----------------------------------------------------------------------------------------------
# configurations


@dataclass
class Config:
    """One measured configuration."""

    name: str
    kind: str  # ours | serial
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    out: Path
    slots: int  # task threads of the cluster
    runs: list[dict[str, Any]] = field(default_factory=list)
    retried: list[dict[str, Any]] = field(default_factory=list)  # failed runs of ours, retried after a wait


def build_configs(args: argparse.Namespace, asns: Sequence[Path], psfmask: Path) -> list[Config]:
    python = sys.executable
    cli = str(Path(python).parent / "coron3-dask")
    ours_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    old_env = {**ours_env, "PYTHONPATH": str(args.old_dir)}
    cores = os.cpu_count() or 1

    def local(workers: int) -> list[str]:
        return ["--scheduler", "local", "--workers", str(workers), "--threads-per-worker", "1"]

    #: name -> (kind, command before the ASNs, options after them, environment, working directory, slots)
    specs = {
        "ours 1 worker": ("ours", [cli, "campaign"], local(1), ours_env, args.work_dir, 1),
        "ours 2 workers": ("ours", [cli, "campaign"], local(2), ours_env, args.work_dir, 2),
        "ours default": ("ours", [cli, "campaign"], [], ours_env, args.work_dir, cores + 1),
        "serial (before)": ("serial", [python, "-m", "coron3_dask.cli", "campaign"], local(2), old_env, args.old_dir,
                            2),
    }
    configs = []
    for name in args.configs:
        kind, head, tail, env, cwd, slots = specs[name]
        out = args.work_dir / "runs" / name.replace(" ", "_").replace("(", "").replace(")", "")
        cmd = [*head, *map(str, asns), "-o", str(out), "--psfmask", str(psfmask), "--no-progress", *tail]
        configs.append(Config(name, kind, cmd, env, cwd, out, slots))
    return configs


def run_once(c: Config, args: argparse.Namespace) -> dict[str, Any]:
    shutil.rmtree(c.out, ignore_errors=True)
    c.out.mkdir(parents=True)
    os.sync()  # the previous run's writes are flushed outside the measured interval
    result = measure(c.cmd, c.out.with_name(c.out.name + ".log"), args.timeout, c.env, c.cwd, args.interval)
    try:
        outcome = db_outcome(c.out) if c.kind == "ours" else json_outcome(c.out)
    except Exception as exc:  # noqa: BLE001 - a broken or missing record is a result to report
        outcome = {"done": 0, "record_error": f"{type(exc).__name__}: {exc}"}
    result.update(outcome)
    if not args.keep_outputs:  # ~40 MB of products per association: keep the records, not the products
        for sub in c.out.iterdir():
            if sub.is_dir():
                shutil.rmtree(sub, ignore_errors=True)
    if not result.get("error") and result.get("done") != args.n:
        result["error"] = f"{result.get('done')}/{args.n} done " + "; ".join(
            [*(result.get("errors") or []), result.get("record_error", "")])[:300]
    return result


def shorten(cmd: Sequence[str], asns: Sequence[Path]) -> str:
    """``cmd`` as a shell line, its run of ASN files written as ``FIRST ... LAST`` (N files)."""
    names = {str(a) for a in asns}
    i = next((k for k, a in enumerate(cmd) if a in names), len(cmd))
    j = i
    while j < len(cmd) and cmd[j] in names:
        j += 1
    if j - i <= 2:
        return shlex.join(cmd)
    return f"{shlex.join(cmd[:i])} {shlex.quote(cmd[i])} ... {shlex.quote(cmd[j - 1])} {shlex.join(cmd[j:])}" \
        f"  ({j - i} ASN files)"


def wait_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait (at most ``limit`` s) until the machine is less than ``threshold`` busy; return the busy fraction seen."""
    import psutil

    deadline = time.monotonic() + limit
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100.0
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)


def wait_until_ready(cli: str, smoke_cmd: list[str], smoke_out: Path, deadline: float) -> None:
    """Retry ``campaign --help`` and a 2-association smoke campaign every minute until both work or ``deadline``."""
    while True:
        help_ = subprocess.run([cli, "campaign", "--help"], capture_output=True, text=True, check=False)
        problem = f"`campaign --help` exited {help_.returncode}: {help_.stderr.strip()[-200:]}" if help_.returncode \
            else None
        if problem is None:
            shutil.rmtree(smoke_out, ignore_errors=True)
            smoke = subprocess.run(smoke_cmd, capture_output=True, text=True, check=False)
            if smoke.returncode == 0:
                try:
                    done = db_outcome(smoke_out)["done"]
                except Exception as exc:  # noqa: BLE001 - report and wait
                    done, problem = 0, f"smoke campaign record: {type(exc).__name__}: {exc}"
                if problem is None and done == 2:
                    return
                problem = problem or f"smoke campaign: {done}/2 done"
            else:
                problem = f"smoke campaign exited {smoke.returncode}: {smoke.stderr.strip()[-300:]}"
        if time.monotonic() > deadline:
            raise SystemExit(f"coron3-dask campaign still not usable: {problem}")
        print(f"waiting for `coron3-dask campaign` ({problem}); retry in {POLL_S:.0f} s", flush=True)
        time.sleep(POLL_S)


# ----------------------------------------------------------------------------------------------
# tables


def _median(values: Sequence[float | None]) -> float | None:
    good = [v for v in values if v is not None]
    return statistics.median(good) if good else None


def summarise(c: Config) -> dict[str, Any]:
    good = [r for r in c.runs if not r.get("error")]

    def med(key: str) -> float | None:
        return _median([r.get(key) for r in good])

    wall, task_s = med("wall"), med("task_s")
    rate = _median([r["done"] / r["wall"] * 3600 for r in good])
    starts = [r["first_start"] - r["launched"] for r in good if r.get("first_start")]
    tails = [r["exited"] - r["last_finish"] for r in good if r.get("last_finish")]
    spans = [r["last_finish"] - r["first_start"] for r in good if r.get("first_start") and r.get("last_finish")]
    walls = [w for r in good for w in r.get("assoc_walls", [])]
    tasks = [t for r in good for t in r.get("assoc_tasks", [])]
    in_flight = _median([sum(r["assoc_walls"]) / (r["last_finish"] - r["first_start"]) for r in good
                         if r.get("first_start") and r.get("last_finish") and r["last_finish"] > r["first_start"]])
    return {
        "name": c.name, "kind": c.kind, "slots": c.slots, "wall": wall, "assoc_per_h": rate, "task_s": task_s,
        "overhead": wall - task_s / c.slots if wall is not None and task_s is not None else None,
        "peak_worker_mib": med("peak_worker_mib"), "peak_client_mib": med("peak_client_mib"),
        "client_cpu": med("client_cpu"), "cpu": med("cpu"), "others_cpu": med("others_cpu"),
        "done": [r.get("done") for r in c.runs], "walls": [r["wall"] for r in good],
        "failed_runs": len(c.runs) - len(good), "errors": [r["error"] for r in c.runs if r.get("error")],
        "startup": _median(starts), "span": _median(spans), "tail": _median(tails),
        "assoc_wall_median": _median(walls), "assoc_task_median": _median(tasks),
        "assoc_wall_sum": _median([sum(r.get("assoc_walls", [])) for r in good]),
        "in_flight": in_flight, "worker_processes": med("worker_processes"),
        "assoc_prep_median": _median([x for r in good for x in r.get("assoc_prep", [])]),
        "assoc_post_median": _median([x for r in good for x in r.get("assoc_post", [])]),
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table_rows(summaries: list[dict[str, Any]], n: int) -> tuple[list[str], list[list[str]]]:
    base = next((s["assoc_per_h"] for s in summaries if s["name"] == "ours 1 worker"), None)
    head = ["configuration", "wall s", "assoc/h", "speed-up vs 1 worker", "task-s", "overhead s", "peak worker MiB",
            "peak client MiB", "client CPU s", "CPU s", "done"]
    rows = []
    for s in summaries:
        speed = _ratio(s["assoc_per_h"], base)
        done = "/".join(str(d) for d in s["done"]) + f" of {n}"
        if s["failed_runs"]:
            done += f" ({s['failed_runs']} failed: {'; '.join(s['errors'])[:160]})"
        rows.append([s["name"], _f(s["wall"]), _f(s["assoc_per_h"], 0), "–" if speed is None else f"{speed:.2f}×",
                     _f(s["task_s"]), _f(s["overhead"]), _f(s["peak_worker_mib"], 0), _f(s["peak_client_mib"], 0),
                     _f(s["client_cpu"]), _f(s["cpu"]), done])
    return head, rows


def print_text_table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for k, r in enumerate([head, *rows]):
        print("  ".join(cell.ljust(w) if i in (0, len(r) - 1) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(r, widths, strict=True))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_markdown_table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i in (0, len(head) - 1) else "---:" for i in range(len(head))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def print_time_table(summaries: list[dict[str, Any]]) -> None:
    print("\n| configuration | start-up s | span s | tail s | assoc wall s (median) | assoc task-s (median) "
          "| wall / task | to first task s (median) | after last task s (median) | in flight (mean) "
          "| Σ assoc wall s | wall − Σ assoc wall s | others' CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        gap = s["wall"] - s["assoc_wall_sum"] if s["wall"] is not None and s["assoc_wall_sum"] is not None else None
        print(f"| {s['name']} | {_f(s['startup'])} | {_f(s['span'])} | {_f(s['tail'])} "
              f"| {_f(s['assoc_wall_median'], 2)} | {_f(s['assoc_task_median'], 2)} "
              f"| {_f(_ratio(s['assoc_wall_median'], s['assoc_task_median']), 2)} "
              f"| {_f(s['assoc_prep_median'], 2)} | {_f(s['assoc_post_median'], 2)} | {_f(s['in_flight'], 2)} "
              f"| {_f(s['assoc_wall_sum'])} | {_f(gap) if s['kind'] == 'serial' else '–'} | {_f(s['others_cpu'])} |")


def targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {s["name"]: s["assoc_per_h"] for s in summaries}
    rows = []
    for label, num, den, goal in (("speed-up 1 → 2 workers", "ours 2 workers", "ours 1 worker", TARGET_SCALING),
                                  ("ours 2 workers / serial (before) on 2 workers", "ours 2 workers",
                                   "serial (before)", TARGET_VS_SERIAL),
                                  ("ours default / serial (before)", "ours default", "serial (before)", None)):
        value = _ratio(by.get(num), by.get(den))
        if value is not None:
            rows.append({"label": label, "value": value, "target": goal,
                         "met": None if goal is None else value >= goal})
    return rows


def print_disturbance(summaries: list[dict[str, Any]], cores: int) -> None:
    """Warn where other processes used more than a quarter of a core on average during a configuration's runs."""
    for s in summaries:
        if s["wall"] and s["others_cpu"] is not None and s["others_cpu"] / s["wall"] > 0.25:
            print(f"warning: {s['name']}: other processes used {s['others_cpu'] / s['wall']:.2f} of the {cores} "
                  f"cores on average (median run): its figures are disturbed")


def print_targets(rows: list[dict[str, Any]]) -> None:
    print()
    for r in rows:
        verdict = "" if r["target"] is None else \
            f" (target ≥ {r['target']:.1f}×: {'met' if r['met'] else 'NOT met'})"
        print(f"{r['label']}: {r['value']:.2f}× throughput{verdict}")


# ----------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50, help="associations (default 50)")
    p.add_argument("--seed", type=int, default=100, help="programme k has seed SEED + k (default 100)")
    p.add_argument("--repeat", type=int, default=1, help="rounds (default 1); medians are reported")
    p.add_argument("--configs", nargs="+", default=list(CONFIG_NAMES), choices=CONFIG_NAMES,
                   help="configurations to run (default all)")
    p.add_argument("--serial-ref", default="04fd337", help="git ref of the previous release's serial campaign")
    p.add_argument("--old-dir", type=Path, default=BENCH_ROOT / "old", help="its worktree (default %(default)s)")
    p.add_argument("--work-dir", type=Path, default=BENCH_ROOT / "campaign",
                   help="inputs and outputs (default %(default)s)")
    p.add_argument("--interval", type=float, default=0.05, help="process-tree sampling interval s (default 0.05)")
    p.add_argument("--timeout", type=float, default=3600.0, help="per-run time limit in seconds (default 3600)")
    p.add_argument("--wait-minutes", type=float, default=40.0,
                   help="how long to wait for a working `coron3-dask campaign` (default 40)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each run wait up to SECONDS for the machine to be idle (< 25%% busy)")
    p.add_argument("--keep-outputs", action="store_true",
                   help="keep every run's products (default: only OUT's files, e.g. campaign.sqlite, are kept)")
    p.add_argument("--json", type=Path, help="also write the raw measurements to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `kill` takes the measured child down too
    args.work_dir, args.old_dir = args.work_dir.resolve(), args.old_dir.resolve()
    if args.n < 2:
        raise SystemExit("--n must be at least 2")
    start = time.perf_counter()
    asns, psfmask, made = programmes(args.work_dir / "inputs", args.n, args.seed)
    print(f"inputs: {args.n} associations in {args.work_dir / 'inputs'} ({made} simulated, {args.n - made} reused; "
          f"{time.perf_counter() - start:.1f} s); PSFMASK {psfmask}", flush=True)
    configs = build_configs(args, asns, psfmask)
    serial_commit = None
    for c in configs:
        if c.kind == "serial":
            serial_commit = ensure_old_worktree(args.old_dir, args.serial_ref)
        origin = package_origin(c.cmd[0] if c.kind == "serial" else sys.executable, c.env, c.cwd)
        home = args.old_dir if c.kind == "serial" else REPO
        print(f"{c.name}: coron3_dask from {origin}", flush=True)
        if not origin.is_relative_to(home):
            raise SystemExit(f"{c.name}: imports coron3_dask from {origin}, not from {home}")
    if any(c.kind == "ours" for c in configs):
        cli = str(Path(sys.executable).parent / "coron3-dask")
        smoke_out = args.work_dir / "runs" / "smoke"
        smoke = [cli, "campaign", *map(str, asns[:2]), "-o", str(smoke_out), "--psfmask", str(psfmask),
                 "--no-progress"]
        wait_until_ready(cli, smoke, smoke_out, time.monotonic() + args.wait_minutes * 60)
    print("\ncommands:")
    for c in configs:
        prefix = f"cd {c.cwd} && PYTHONPATH={c.env['PYTHONPATH']} " if c.kind == "serial" else ""
        print(f"  {c.name}: {prefix}{shorten(c.cmd, asns)}")
    wait_deadline: float | None = None
    for round_ in range(max(1, args.repeat)):
        for c in configs if round_ % 2 == 0 else configs[::-1]:
            while True:
                busy = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
                result = run_once(c, args)
                result["busy_before"] = busy
                result["round"] = round_
                if not (result.get("error") and c.kind == "ours"):
                    break
                wait_deadline = wait_deadline or time.monotonic() + args.wait_minutes * 60
                if time.monotonic() > wait_deadline:
                    break
                print(f"[round {round_ + 1}] {c.name} failed ({result['error'][:200]}); retry in {POLL_S:.0f} s",
                      flush=True)
                c.retried.append(result)
                time.sleep(POLL_S)
            c.runs.append(result)
            status = result.get("error") or (
                f"wall {result['wall']:.1f} s, {result['done']}/{args.n} done, task-s {_f(result.get('task_s'))}, "
                f"peak worker {_f(result.get('peak_worker_mib'), 0)} MiB, client {_f(result.get('peak_client_mib'), 0)}"
                f" MiB, client CPU {_f(result.get('client_cpu'))} s")
            print(f"[round {round_ + 1}/{args.repeat}] {c.name}: {status}", flush=True)
    summaries = [summarise(c) for c in configs]
    head, rows = table_rows(summaries, args.n)
    print(f"\n{args.n} associations (SUB320A335R, 2×2 science ints, 1×2 ref ints), whole processes, "
          f"median of {args.repeat} round(s), {os.cpu_count()} cores\n")
    print_text_table(head, rows)
    print("\nmarkdown (benchmarks/RESULTS.md):\n")
    print_markdown_table(head, rows)
    print("\nwhere the time goes:")
    print_time_table(summaries)
    print()
    print_disturbance(summaries, os.cpu_count() or 1)
    goals = targets(summaries)
    print_targets(goals)
    if args.json:
        args.json.write_text(json.dumps({
            "n": args.n, "seed": args.seed, "psfmask": str(psfmask), "asns": [str(a) for a in asns],
            "serial_ref": args.serial_ref, "serial_commit": serial_commit, "cpu_count": os.cpu_count(),
            "configs": [{"name": c.name, "kind": c.kind, "cmd": c.cmd, "cwd": str(c.cwd), "slots": c.slots,
                         "pythonpath": c.env.get("PYTHONPATH"), "runs": c.runs, "retried": c.retried} for c in configs],
            "summary": summaries, "targets": goals}, indent=2, default=str))
        print(f"\nraw numbers: {args.json}")
    return 0 if all(s["wall"] is not None and not s["failed_runs"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
