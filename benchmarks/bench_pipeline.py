"""End-to-end benchmark of coron3_dask against jwst 3.0.0's ``Coron3Pipeline`` on the same programme.

Every measured configuration runs in a fresh child process (this script re-invoked with
``_child``), so peak memory and CPU time belong to that configuration alone:

* **wall s**: ``open_inputs`` + ``build`` + ``pipeline.run`` (coron3_dask) or
  ``Coron3Pipeline.run`` (official); a LocalCluster's start-up is reported separately.
* **CPU s**: user + sys of the whole process tree over the same interval: the child's own
  ``getrusage`` delta plus (LocalCluster) the ``psutil`` CPU-time delta of every descendant
  (worker processes); the official pipeline is one process (``getrusage`` around ``run``).
* **peak RSS MiB**: the peak of the summed RSS of the process tree (child + nannies + workers),
  sampled every 20 ms by a background thread, and never less than the child's ``ru_maxrss``.
* **tasks**: the length of the graph ``pipeline.run`` computes (``optimize_graph=False``, as it
  runs it), and the number of tasks actually executed.
* **per stage**: the sum of task durations grouped by stage (``dask.utils.key_split`` of the key
  mapped to read / outlier_detection / stack_refs / align_refs / klip / resample / write / glue):
  a ``dask.callbacks.Callback`` for the local schedulers, the task stream (``compute`` intervals)
  for a LocalCluster.  Task-seconds add up over parallel workers, so they can exceed the wall time.
* **official**: the same programme (members copied with a gWCS, ``benchmarks/_official.py``)
  through ``Coron3Pipeline`` offline with ``align_refs.override_psfmask``; per step = the wall
  time of each sub-step's ``run`` (exclusive of product writes, which are the ``write`` row).

Usage::

    python benchmarks/bench_pipeline.py                        # default programme, all modes, official
    python benchmarks/bench_pipeline.py --preset SUB640A210R --science-ints 8 --dither 5 --ref-ints 4 \\
        --no-official
    python benchmarks/bench_pipeline.py --sweep                # scaling sweep (320 preset)
    python benchmarks/bench_pipeline.py --modes compat --schedulers threads --official

The machine may be shared with other work: each row records "others' CPU s", the CPU time used by
processes outside the measured tree while it ran (system-wide busy time minus the tree's), so a
contaminated measurement can be recognised; ``--repeat N`` keeps the fastest of N runs and
``--wait-quiet S`` waits up to S seconds for an idle machine before each run.  ``--blas-threads 1``
caps OpenBLAS/OpenMP threads in every run (LocalCluster workers get 1 anyway, from distributed's
``nanny.pre-spawn-environ``; the threads scheduler and the official pipeline otherwise use one
BLAS thread per core on top of Dask's threads).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from coron3_dask.progress import STAGES as PIPELINE_STAGES
from coron3_dask.progress import stage_of
from coron3_dask.testing import RssSampler

HERE = Path(__file__).resolve().parent
#: the package's task-to-stage map (coron3_dask.progress.stage_of), "other" shown as glue (rechunk, getitem, ...)
STAGES = (*PIPELINE_STAGES, "glue")
MODES: dict[str, list[str]] = {
    "each": [],
    "first": ["align_refs.align_to=first"],
    "compat": ["align_refs.align_to=first", "align_refs.jwst_compat=true"],
}
# ----------------------------------------------------------------------------------------------
# measurement helpers (child side)


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rc = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime + rc.ru_utime + rc.ru_stime


def _worker_rusage() -> tuple[float, float]:
    """Run on a worker: (user + sys CPU seconds, ru_maxrss MiB) of the worker process."""
    import resource as r

    ru = r.getrusage(r.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def _system_cpu() -> float:
    """CPU seconds used by every process on the machine so far (busy time of all cores)."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _tree_cpu() -> dict[int, float]:
    """user + sys CPU seconds of every live descendant process (LocalCluster workers, nannies)."""
    import psutil

    out = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


def graph_size(products: Any, inputs: Any, config: Any) -> int:
    """Number of tasks in the graph ``pipeline.run`` computes (unoptimised, as it runs it)."""
    import tempfile

    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr, unpack_collections

    from coron3_dask.files import writers
    from coron3_dask.files.products import Provenance

    with tempfile.TemporaryDirectory() as tmp:
        tasks, shifts, _ = writers.plan(products, inputs, Path(tmp), Provenance(config.to_dict(), inputs.files),
                                 save_crfints=config.save_results, save_psfalign=config.save_psfalign)
        collections_, _ = unpack_collections(tasks, shifts)
        expr = FinalizeCompute(collections_to_expr(collections_, False)).optimize()
        return len(expr.__dask_graph__())


def _profile_rows(profiler: Any, n: int = 15) -> list[tuple[str, int, float, float]]:
    """Top functions by own time: (function, calls, tottime s, cumtime s)."""
    import pstats

    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.items():
        where = f"{Path(filename).name}:{line}" if line else filename
        rows.append((f"{func} ({where})", ncalls, tottime, cumtime))
    return sorted(rows, key=lambda r: -r[2])[:n]


def _stage_totals(durations: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {s: {"seconds": 0.0, "tasks": 0} for s in STAGES}
    for name, values in durations.items():
        stage = stage_of(name)
        row = out[stage if stage in PIPELINE_STAGES else "glue"]
        row["seconds"] += sum(values)
        row["tasks"] += len(values)
    return out


def _top_tasks(durations: dict[str, list[float]], n: int = 8) -> list[tuple[str, float, int]]:
    rows = [(name, sum(v), len(v)) for name, v in durations.items()]
    return sorted(rows, key=lambda r: -r[1])[:n]


def child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Run coron3_dask once under the requested scheduler and measure it."""
    import dask
    from dask.callbacks import Callback
    from dask.utils import key_split

    from coron3_dask import pipeline
    from coron3_dask.config import load_config

    config = load_config(None, MODES[spec["mode"]] + list(spec.get("overrides", [])))
    out_dir = Path(spec["out_dir"])
    shutil.rmtree(out_dir, ignore_errors=True)
    durations: dict[str, list[float]] = collections.defaultdict(list)
    result: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    workers = int(spec["workers"])
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(RssSampler(interval=0.02))
        client = None
        if spec["scheduler"] == "local":
            from distributed import Client, LocalCluster, get_task_stream

            t = time.perf_counter()
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                host="127.0.0.1", memory_limit="auto"))
            client = stack.enter_context(Client(cluster))
            client.wait_for_workers(workers)
            result["startup"] = time.perf_counter() - t
            tree_before = _tree_cpu()
            stream: Any = get_task_stream(client)
        else:
            starts: dict[Any, float] = {}

            class StageTimer(Callback):
                def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
                    starts[key] = time.perf_counter()

                def _posttask(self, key: Any, res: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                    durations[key_split(key)].append(time.perf_counter() - starts.pop(key))

            stack.enter_context(dask.config.set(scheduler=spec["scheduler"], num_workers=workers))
            stack.enter_context(StageTimer())
            stream = contextlib.nullcontext()
        cpu0, sys0 = _cpu_self(), _system_cpu()
        t0 = time.perf_counter()
        inputs = pipeline.open_inputs(spec["asn"], config, psfmask=spec["psfmask"])
        products = pipeline.build(inputs, config)
        t_build = time.perf_counter()
        profiler = None
        if spec.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            stack.enter_context(profiler)
        with stream:
            run = pipeline.run(inputs, config, out_dir, products=products)
        if profiler is not None:
            profiler.disable()
            result["profile"] = _profile_rows(profiler)
        wall = time.perf_counter() - t0
        cpu = _cpu_self() - cpu0
        system = _system_cpu() - sys0
        if client is not None:
            tree_after = _tree_cpu()
            cpu += sum(v - tree_before.get(pid, 0.0) for pid, v in tree_after.items())
            worker_after = client.run(_worker_rusage)
            result["worker_maxrss_mib"] = max(v[1] for v in worker_after.values())
            actions: dict[str, float] = collections.defaultdict(float)
            for task in stream.data:
                for ss in task.get("startstops", ()):
                    if ss["action"] == "compute":
                        durations[key_split(task["key"])].append(ss["stop"] - ss["start"])
                    else:  # transfer, deserialize, disk-write/read (spilling)
                        actions[ss["action"]] += ss["stop"] - ss["start"]
            result["transfer_s"] = actions.pop("transfer", 0.0)
            result["worker_other_s"] = dict(actions)
    peak = max(sampler.peak / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result.update(
        wall=wall, build_s=t_build - t0, cpu=cpu, others_cpu=max(0.0, system - cpu), peak_rss_mib=peak,
        products=len(run.paths),
        tasks=graph_size(products, inputs, config), executed=sum(len(v) for v in durations.values()),
        stages=_stage_totals(durations), top=_top_tasks(durations),
        output_mib=sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file()) / 2**20,
    )
    return result


def child_official(spec: dict[str, Any]) -> dict[str, Any]:
    """Run jwst's Coron3Pipeline once and measure it."""
    import warnings

    sys.path.insert(0, str(HERE))
    from _official import offline_crds, run_official

    crds_root = Path(spec["work"]) / "crds"
    with offline_crds(crds_root):
        import jwst.pipeline  # noqa: F401  (import cost is not part of the run, as for coron3_dask)
    out_dir = Path(spec["out_dir"])
    shutil.rmtree(out_dir, ignore_errors=True)
    load = os.getloadavg()[0]
    with RssSampler(interval=0.02) as sampler, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sys0 = _system_cpu()
        run = run_official(spec["asn"], spec["psfmask"], out_dir, crds_root=crds_root)
        cpu = run.cpu
        system = _system_cpu() - sys0
    peak = max(sampler.peak / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"load_before": load, "wall": run.wall, "cpu": cpu, "others_cpu": max(0.0, system - cpu),
            "peak_rss_mib": peak, "steps": run.steps,
            "calls": run.calls, "products": len(run.products),
            "output_mib": sum(p.stat().st_size for p in run.products) / 2**20}


# ----------------------------------------------------------------------------------------------
# orchestration (parent side)


#: set by --wait-quiet: (most seconds to wait, busy fraction of the machine regarded as quiet)
QUIET: tuple[float, float] = (0.0, 0.25)


def wait_quiet() -> float:
    """Wait (at most ``QUIET[0]`` s) until other processes use less than ``QUIET[1]`` of the machine's cores.

    Returns the busy fraction seen last (over a 1 s window).
    """
    import psutil

    deadline = time.monotonic() + QUIET[0]
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100.0
        if busy < QUIET[1] or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)


def _run_best(spec: dict[str, Any], timeout: float, repeat: int) -> dict[str, Any]:
    """Run a configuration ``repeat`` times; keep the run with the least wall time (all walls recorded)."""
    results = []
    for _ in range(max(1, repeat)):
        busy = wait_quiet() if QUIET[0] > 0 else None
        result = _run_child(spec, timeout)
        result["busy_before"] = busy
        results.append(result)
    good = [r for r in results if "error" not in r]
    if not good:
        return results[-1]
    best = min(good, key=lambda r: r["wall"])
    best["walls"] = [r["wall"] for r in good]
    return best


#: set by --blas-threads: environment of every child (BLAS thread pools are sized at import)
CHILD_ENV: dict[str, str] = {}


def _run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", json.dumps(spec)]
    env = {**os.environ, **CHILD_ENV}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


def programme(work: Path, preset: str, science_ints: int, ref_ints: int, dither: int, seed: int
              ) -> tuple[Path, Path, float]:
    """Simulate (or reuse) a programme; return (asn, psfmask, seconds spent simulating)."""
    from coron3_dask.simulate import simulate_programme

    directory = work / f"sim_{preset}_s{science_ints}_r{dither}x{ref_ints}_seed{seed}"
    done = directory / ".complete"
    start = time.perf_counter()
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        sim = simulate_programme(directory, preset=preset, n_science_ints=science_ints, n_ref_ints=ref_ints,
                                 n_dither=dither, seed=seed)
        done.write_text(json.dumps({"asn": str(sim.asn_path), "psfmask": str(sim.psfmask_path)}))
    info = json.loads(done.read_text())
    return Path(info["asn"]), Path(info["psfmask"]), time.perf_counter() - start


def official_copy(work: Path, asn: Path) -> Path:
    """Members with a gWCS for the official run (and, for the same input files, for ours)."""
    sys.path.insert(0, str(HERE))
    from _official import prepare_programme

    directory = asn.parent.with_name(asn.parent.name + "_gwcs")
    done = directory / ".complete"
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        new = prepare_programme(asn, directory)
        done.write_text(str(new))
    return Path(done.read_text())


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _label(preset: str, science_ints: int, dither: int, ref_ints: int) -> str:
    return f"{preset} 2×{science_ints} sci, {dither}×{ref_ints} ref"


def print_main_table(rows: list[dict[str, Any]]) -> None:
    print("\n| programme | mode | scheduler/workers | wall s | CPU s | peak RSS MiB | tasks (graph/run) "
          "| vs official (wall) | others' CPU s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    official = {r["programme"]: r["res"]["wall"] for r in rows if r["kind"] == "official" and "error" not in r["res"]}
    for r in rows:
        res = r["res"]
        if "error" in res:
            print(f"| {r['programme']} | {r['mode']} | {r['sched']} | {res['error']} | | | | | |")
            continue
        tasks = f"{res['tasks']}/{res['executed']}" if r["kind"] == "ours" else "–"
        ratio = official.get(r["programme"])
        speed = f"{ratio / res['wall']:.2f}×" if ratio and r["kind"] == "ours" else ("1×" if r["kind"] == "official"
                                                                                    else "–")
        extra = f" (+{res['startup']:.1f} s start-up)" if res.get("startup") else ""
        print(f"| {r['programme']} | {r['mode']} | {r['sched']}{extra} | {_fmt(res['wall'], 2)} | {_fmt(res['cpu'])} "
              f"| {_fmt(res['peak_rss_mib'], 0)} | {tasks} | {speed} | {_fmt(res.get('others_cpu'))} |")
        if len(res.get("walls", [])) > 1:
            print(f"|  |  | (walls of {len(res['walls'])} runs: {', '.join(f'{w:.2f}' for w in res['walls'])}) "
                  "| | | | | | |")


def print_stage_tables(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        res = r["res"]
        if "error" in res:
            continue
        print(f"\n**{r['programme']} — {r['mode']} — {r['sched']}** (wall {res['wall']:.2f} s)\n")
        if r["kind"] == "official":
            print("| step | wall s | % | calls |")
            print("|---|---:|---:|---:|")
            order = ["read", *STAGES[1:6], "write", "other"]
            for step in order:
                seconds = res["steps"].get(step, 0.0)
                print(f"| {step} | {seconds:.2f} | {100 * seconds / res['wall']:.0f} | {res['calls'].get(step, '–')} |")
            continue
        total = sum(s["seconds"] for s in res["stages"].values()) or 1.0
        print("| stage | task-s | % of task time | tasks |")
        print("|---|---:|---:|---:|")
        for stage in STAGES:
            s = res["stages"][stage]
            print(f"| {stage} | {s['seconds']:.2f} | {100 * s['seconds'] / total:.0f} | {s['tasks']} |")
        print(f"| (client: open_inputs + build) | {res['build_s']:.2f} | | |")
        if "transfer_s" in res:
            print(f"| (inter-worker transfer) | {res['transfer_s']:.2f} | | |")
            for action, seconds in sorted(res.get("worker_other_s", {}).items()):
                print(f"| (worker {action}) | {seconds:.2f} | | |")
        tops = ", ".join(f"{name} {sec:.2f} s/{n}" for name, sec, n in res["top"][:6])
        print(f"\ntop task groups: {tops}")
        if res.get("profile"):
            print("\n| function (cProfile, synchronous) | calls | own s | cumulative s |")
            print("|---|---:|---:|---:|")
            for func, calls, own, cum in res["profile"]:
                print(f"| `{func}` | {calls} | {own:.2f} | {cum:.2f} |")


def print_sweep_table(rows: list[dict[str, Any]]) -> None:
    print("\n| sci ints/roll | refs (dither×ints) | workers | mode | wall s | CPU s | peak RSS MiB | tasks (graph) "
          "| align task-s | klip task-s | resample task-s | write task-s | others' CPU s |")
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        res = r["res"]
        refs = f"{r['dither']}×{r['ref_ints']} = {r['dither'] * r['ref_ints']}"
        head = f"| {r['ints']} | {refs} | {r['workers']} | {r['mode']} "
        if "error" in res or "skipped" in res:
            print(head + f"| {res.get('error') or res['skipped']} | | | | | | | | |")
            continue
        st = res["stages"]
        print(head + f"| {res['wall']:.2f} | {res['cpu']:.1f} | {res['peak_rss_mib']:.0f} | {res['tasks']} "
              f"| {st['align_refs']['seconds']:.1f} | {st['klip']['seconds']:.1f} | {st['resample']['seconds']:.1f} "
              f"| {st['write']['seconds']:.1f} | {res['others_cpu']:.1f} |")


def _ours_spec(asn: Path, psfmask: Path, mode: str, scheduler: str, workers: int, out: Path) -> dict[str, Any]:
    return {"kind": "ours", "asn": str(asn), "psfmask": str(psfmask), "mode": mode, "scheduler": scheduler,
            "workers": workers, "out_dir": str(out), "profile": scheduler == "synchronous"}


def run_programme(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    asn, psfmask, sim_s = programme(work, args.preset, args.science_ints, args.ref_ints, args.dither, args.seed)
    print(f"# programme {asn.parent.name} (simulated/reused in {sim_s:.1f} s)", file=sys.stderr)
    label = _label(args.preset, args.science_ints, args.dither, args.ref_ints)
    if args.official or args.same_files:
        t = time.perf_counter()
        asn_gwcs = official_copy(work, asn)
        print(f"# gWCS copy ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if args.same_files:
        asn = asn_gwcs
    rows = []
    for mode in args.modes:
        for sched in args.schedulers:
            workers = args.workers
            spec = _ours_spec(asn, psfmask, mode, sched, workers, work / "out" / f"ours_{mode}_{sched}")
            print(f"# running ours {mode} {sched}/{workers} ...", file=sys.stderr)
            res = _run_best(spec, args.timeout, args.repeat)
            rows.append({"kind": "ours", "programme": label, "mode": mode, "sched": f"{sched}/{workers}", "res": res})
            print(f"#   {json.dumps({k: res.get(k) for k in ('wall', 'cpu', 'peak_rss_mib', 'error')})}",
                  file=sys.stderr)
    if args.official:
        spec = {"kind": "official", "asn": str(asn_gwcs), "psfmask": str(psfmask), "work": str(work),
                "out_dir": str(work / "out" / "official")}
        print("# running official Coron3Pipeline ...", file=sys.stderr)
        res = _run_best(spec, args.timeout, args.repeat)
        rows.append({"kind": "official", "programme": label, "mode": "jwst 3.0.0 Coron3Pipeline",
                     "sched": "serial (1 process)", "res": res})
        print(f"#   {json.dumps({k: res.get(k) for k in ('wall', 'cpu', 'peak_rss_mib', 'error')})}", file=sys.stderr)
    return rows


#: sweep points (science ints per roll, dither, ref ints per dither position, workers)
SWEEP: tuple[tuple[int, int, int, int], ...] = (
    (2, 5, 1, 2), (8, 5, 1, 2), (32, 5, 1, 2),     # science integrations
    (2, 9, 4, 2), (2, 9, 20, 2),                   # references (5 -> 36 -> 180)
    (8, 9, 4, 1), (8, 9, 4, 2),                    # workers
)


def _work_units(mode: str, ints: int, refs: int) -> float:
    """Cost proxy in 320x320 frame-operations: alignment fits dominate, then per-frame work."""
    rolls = 2
    fits = rolls * refs * (ints if mode == "each" else 1)
    klip = rolls * ints * (refs if mode == "each" else 1)
    return fits + 0.3 * klip + 0.05 * (rolls * ints + refs)


def run_sweep(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rate: dict[str, float] = {}  # measured seconds per work unit, per mode (from the points so far)
    for ints, dither, ref_ints, workers in SWEEP:
        refs = dither * ref_ints
        asn = psfmask = None
        for mode in args.sweep_modes:
            row = {"ints": ints, "dither": dither, "ref_ints": ref_ints, "workers": workers, "mode": mode}
            units = _work_units(mode, ints, refs)
            predicted = rate.get(mode, 0.0) * units * (2.0 / workers if workers < 2 else 1.0)
            if predicted > args.point_budget:
                row["res"] = {"skipped": f"skipped (predicted ~{predicted:.0f} s > {args.point_budget:.0f} s)"}
                rows.append(row)
                continue
            if asn is None:
                asn, psfmask, sim_s = programme(work, "SUB320A335R", ints, ref_ints, dither, args.seed)
                print(f"# sweep programme {asn.parent.name} ({sim_s:.1f} s)", file=sys.stderr)
            spec = _ours_spec(asn, psfmask, mode, args.sweep_scheduler, workers,
                              work / "out" / f"sweep_{ints}_{dither}x{ref_ints}_{workers}_{mode}")
            print(f"# sweep {ints} ints, {dither}x{ref_ints} refs, {workers} workers, {mode} "
                  f"(predicted {predicted:.0f} s) ...", file=sys.stderr)
            res = _run_best(spec, max(args.point_budget * 1.5, 60), 1)
            row["res"] = res
            rows.append(row)
            if "error" not in res:
                per_unit = res["wall"] * (workers / 2.0 if workers < 2 else 1.0) / units
                rate[mode] = max(rate.get(mode, 0.0), per_unit)
                print(f"#   wall {res['wall']:.1f} s", file=sys.stderr)
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="SUB320A335R", help="simulation preset (default SUB320A335R)")
    p.add_argument("--science-ints", type=int, default=4, help="integrations per science exposure (default 4)")
    p.add_argument("--ref-ints", type=int, default=3, help="integrations per reference exposure (default 3)")
    p.add_argument("--dither", type=int, default=5, choices=(1, 5, 9), help="reference dither points (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                   help="coron3_dask alignment modes (default: each first compat)")
    p.add_argument("--schedulers", nargs="+", default=["threads", "local"],
                   choices=["threads", "local", "synchronous", "processes"],
                   help="schedulers for coron3_dask (default: threads local); synchronous runs also "
                        "print a cProfile of the run")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="threads (threads) or worker processes (local); default: cores")
    p.add_argument("--blas-threads", type=int,
                   help="OPENBLAS/OMP/MKL_NUM_THREADS for every run (default: unset, OpenBLAS uses all cores)")
    p.add_argument("--official", action=argparse.BooleanOptionalAction, default=None,
                   help="also run jwst's Coron3Pipeline (default: on for the programme run, off with --sweep)")
    p.add_argument("--same-files", action=argparse.BooleanOptionalAction, default=True,
                   help="run coron3_dask on the gWCS copies the official pipeline reads (default on)")
    p.add_argument("--sweep", action="store_true", help="run the scaling sweep instead of one programme")
    p.add_argument("--sweep-modes", nargs="+", default=["each", "first"], choices=list(MODES))
    p.add_argument("--sweep-scheduler", default="threads", choices=["threads", "local"])
    p.add_argument("--point-budget", type=float, default=180.0,
                   help="skip sweep points predicted to take longer than this many seconds (default 180)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per configuration; the fastest is reported, every wall time listed (default 1)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each run wait up to SECONDS for the machine to be < 25%% busy (shared machines)")
    p.add_argument("--timeout", type=float, default=900.0, help="per-run time limit in seconds (default 900)")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "coron3_bench",
                   help="simulated programmes (reused between runs) and outputs")
    p.add_argument("--json", type=Path, help="also write the raw measurements to this file")
    return p


def _machine() -> str:
    import platform

    import dask
    import numpy

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(HERE.parent)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True)
        commit = head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, dask {dask.__version__}; coron3_dask at {commit}")


@contextlib.contextmanager
def _stdout_is_stderr() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_child":
        spec = json.loads(argv[1])
        with _stdout_is_stderr():
            res = child_ours(spec) if spec["kind"] == "ours" else child_official(spec)
        print("RESULT " + json.dumps(res))
        return 0
    args = _parser().parse_args(argv)
    global QUIET
    QUIET = (args.wait_quiet, QUIET[1])
    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            CHILD_ENV[name] = str(args.blas_threads)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"machine: {_machine()}; BLAS threads: {args.blas_threads or 'default (all cores)'}")
    if args.sweep:
        rows = run_sweep(args, work)
        print(f"\n### Scaling sweep (SUB320A335R, 2 rolls, scheduler {args.sweep_scheduler})")
        print_sweep_table(rows)
    else:
        if args.official is None:
            args.official = True
        rows = run_programme(args, work)
        print(f"\n### {_label(args.preset, args.science_ints, args.dither, args.ref_ints)}")
        print_main_table(rows)
        print_stage_tables(rows)
    print(f"\n(benchmark wall time {time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
