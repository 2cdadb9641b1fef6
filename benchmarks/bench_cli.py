"""Whole-process benchmark: the ``coron3-dask run`` CLI against jwst's ``Coron3Pipeline``, paired alternately.

Unlike ``bench_pipeline.py`` (which times ``pipeline.run`` inside a warm child), every number here
belongs to a WHOLE process, python start-up and imports included, measured from outside:

* **wall s**: ``time.perf_counter`` from ``subprocess.Popen`` to ``os.wait4`` returning.
* **CPU s**: user + sys from the ``os.wait4`` rusage of the child: the child itself plus every
  descendant it reaped (LocalCluster worker processes are joined, so they count).  Processes
  still in the child's process group when it exits are killed then and not counted: with
  ``--scheduler local`` that is multiprocessing's resource tracker (~0.03 s of CPU), which
  outlives its parent by a moment (``leftover_processes`` in the JSON).
* **peak RSS MiB**: peak of the summed RSS of the process tree (child + descendants, shared
  pages counted once per process), sampled with ``psutil`` every 20 ms, and never less than
  the ``ru_maxrss`` of the largest single process.
* **others' CPU s**: machine-wide busy CPU during the run minus the tree's and this script's
  own (sampler) CPU: other load on the machine that may have disturbed the measurement.

Configurations (each a fresh process, OUT emptied and ``os.sync()`` called before each run):

* ``ours <mode> [<scheduler>]``: ``.venv/bin/coron3-dask run ASN -o OUT --psfmask PSFMASK
  --no-progress [mode args] [--scheduler S]`` with modes ``each`` (no args), ``first``
  (``--set align_refs.align_to=first``) and ``compat`` (``--jwst-compat``), under the CLI's
  default scheduler (``default``: no ``--scheduler``) and ``--scheduler threads``.
* ``jwst 3.0.0``: ``benchmarks/_official.run_official`` (offline CRDS,
  ``align_refs.override_psfmask``, ``save_results=True``) in a fresh ``python`` of this venv.
* ``jwst 3.0.0 float64 fit``: the same with ``fit_dtype="float64"``: the align_refs shift fit
  (``imageregistration.align_fourier_lsq``) gets float64 copies of its inputs
  (``_official.float64_shift_fit``); nothing else changes.
* ``jwst 1.15.1`` (``--jwst115``): ``Coron3Pipeline`` of jwst 1.15.1, whose align_refs aligns
  every reference to every science integration (a 4-D psfalign, comparable to ``each``), in a
  separate virtual environment ``WORK/venv-jwst-1.15.1`` created on first use (``python3 -m
  venv`` + ``pip install jwst==1.15.1`` plus the pins in :data:`JWST115_PINS`).  Two
  differences from the other runs, both forced by jwst 1.15.1:

  - it reads its own gWCS copy of the same members: gwcs 0.22 / asdf-astropy 0.11 cannot read
    the gWCS that gwcs 1.0 writes (transform tags 1.4.0/1.5.0, ``gwcs/wcs-1.4.0``: "ERROR
    loading embedded ASDF: "transform" should be an instance of astropy.modeling.Model"), so
    ``_official.prepare_programme`` is run again by the old venv's python (same pixels, same
    WCS model, tags its own asdf knows); the simulator's files without a gWCS read fine;
  - it runs with the association's folder as working directory: jwst 1.15.1's
    ``calwebb_coron3`` opens the PSF members by their bare ``expname``, relative to the cwd.

Rounds: ``--repeat N`` rounds; each round runs every configuration once, in the listed order on
even rounds and reversed on odd rounds, so drifts (thermal, page cache, other load) hit all
configurations alike.  The tables give the median per configuration and every wall.

Usage::

    .venv/bin/python benchmarks/bench_cli.py                         # 3 modes x (default, threads), jwst 3.0.0 (+f64)
    .venv/bin/python benchmarks/bench_cli.py --repeat 1 --jwst115 --json /tmp/bench_cli.json
    .venv/bin/python benchmarks/bench_cli.py --modes each --schedulers default threads local --no-official64
    .venv/bin/python benchmarks/bench_cli.py --science-ints 4 --dither 5 --ref-ints 3 --wait-quiet 60 --repeat 5
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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _process import busy_cpu, kill_group, self_cpu

HERE = Path(__file__).resolve().parent
MODES: dict[str, list[str]] = {
    "each": [],
    "first": ["--set", "align_refs.align_to=first"],
    "compat": ["--jwst-compat"],
}
JWST115 = "1.15.1"
#: pins added to ``pip install jwst==1.15.1`` (everything else as pip resolves jwst 1.15.1's own ranges):
#: jwst 1.15.1 asks for ``drizzle>=1.15.0`` without a cap, pip picks drizzle 3, whose ``cdrizzle.tdriz``
#: returns 2 values: resample then fails with "ValueError: not enough values to unpack (expected 3, got 2)"
JWST115_PINS = ("drizzle<2",)
PRODUCT_SUFFIXES = ("crfints", "psfstack", "psfalign", "psfsub", "i2d")


# ----------------------------------------------------------------------------------------------
# child side: runs in this venv (jwst 3.0.0) or in the jwst 1.15.1 venv, so stdlib imports only here


def _quiet_logs() -> None:
    import logging

    for name in ("stpipe", "jwst", "stcal", "stdatamodels", "crds", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one official pipeline in this process (``_child`` entry); return what it measured inside."""
    import warnings

    sys.path.insert(0, str(HERE))
    warnings.simplefilter("ignore")
    out = Path(spec["out"])
    if spec["kind"] == "official":
        from _official import run_official

        run = run_official(spec["asn"], spec["psfmask"], out, crds_root=spec["crds"], fit_dtype=spec.get("fit_dtype"))
        return {"inner_wall": run.wall, "steps": run.steps}
    if spec["kind"] == "jwst115":
        from _official import offline_crds_env

        os.environ.update(offline_crds_env(spec["crds"]))
        os.chdir(Path(spec["asn"]).parent)  # jwst 1.15.1 opens the PSF members relative to the cwd
        from jwst.pipeline import Coron3Pipeline

        _quiet_logs()
        pipe = Coron3Pipeline(output_dir=str(out), save_results=True,
                              steps={"align_refs": {"override_psfmask": spec["psfmask"]}})
        start = time.perf_counter()
        pipe.run(spec["asn"])
        return {"inner_wall": time.perf_counter() - start}
    raise ValueError(f"unknown child kind {spec['kind']!r}")


# ----------------------------------------------------------------------------------------------
# measurement (parent side)


class _TreeRss(threading.Thread):
    """Peak of the summed RSS of process ``pid`` and all its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        import psutil

        self.interval = interval
        self.peak = 0
        self.processes = 0
        self._stop_event = threading.Event()
        try:
            self._root: Any = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def sample(self) -> None:
        import psutil

        if self._root is None:
            return
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self.peak = max(self.peak, total)
        self.processes = max(self.processes, len(procs))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(cmd: Sequence[str], log_path: Path, timeout: float, env: dict[str, str] | None = None,
            interval: float = 0.02) -> dict[str, Any]:
    """Run ``cmd`` as a fresh process (own session) and measure the whole process tree."""
    timed_out = threading.Event()
    with log_path.open("wb") as log:
        busy0, self0 = busy_cpu(), self_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        sampler = _TreeRss(proc.pid, interval)
        sampler.start()

        def on_timeout() -> None:
            timed_out.set()
            kill_group(proc.pid)

        timer = threading.Timer(timeout, on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): take the child's tree down with us
            kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        sampler.stop()
        busy = busy_cpu() - busy0
        own = self_cpu() - self0
    proc.returncode = os.waitstatus_to_exitcode(status)
    leftovers = kill_group(proc.pid)  # the session leader is gone; anything still in its group is a leftover
    cpu = usage.ru_utime + usage.ru_stime
    result: dict[str, Any] = {
        "wall": wall, "cpu": cpu, "user": usage.ru_utime, "sys": usage.ru_stime,
        "peak_rss_mib": max(sampler.peak, usage.ru_maxrss * 1024) / 2**20, "maxrss_mib": usage.ru_maxrss / 1024,
        "processes": sampler.processes, "others_cpu": max(0.0, busy - cpu - own), "rc": proc.returncode,
        "leftover_processes": leftovers,
    }
    if timed_out.is_set():
        result["error"] = f"timeout after {timeout:.0f} s"
    elif proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-4:]
        result["error"] = f"exit {proc.returncode}: " + " | ".join(line.strip()[:200] for line in tail)
    if not result.get("error"):
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith("RESULT ")]
        if lines:
            result["child"] = json.loads(lines[-1][len("RESULT "):])
    return result


# ----------------------------------------------------------------------------------------------
# configurations


@dataclass
class Config:
    """One measured configuration."""

    name: str
    kind: str  # ours | official | official64 | jwst115
    cmd: list[str]
    out: Path
    mode: str | None = None
    scheduler: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # set when it cannot run at all (e.g. the jwst 1.15.1 env failed)


def _child_cmd(python: Path | str, spec: dict[str, Any]) -> list[str]:
    return [str(python), str(Path(__file__).resolve()), "_child", json.dumps(spec)]


def expected_products(asn: Path) -> Counter[str]:
    """Number of products of each suffix a coron3 run of ``asn`` writes (crfints for every member)."""
    product = json.loads(asn.read_text())["products"][0]
    science = sum(1 for m in product["members"] if m["exptype"].lower() == "science")
    return Counter(crfints=len(product["members"]), psfstack=1, psfalign=science, psfsub=science, i2d=1)


def product_check(out: Path, expected: Counter[str]) -> tuple[bool, str]:
    """(all expected products written and non-empty, short text)."""
    found: Counter[str] = Counter()
    empty = 0
    for path in out.iterdir() if out.is_dir() else ():
        stem = path.name.removesuffix(".fits")
        suffix = stem.rsplit("_", 1)[-1]
        if path.suffix == ".fits" and suffix in PRODUCT_SUFFIXES:
            found[suffix] += 1
            empty += path.stat().st_size == 0
    missing = {k: v - found[k] for k, v in expected.items() if found[k] < v}
    ok = not missing and not empty
    text = f"{sum(found.values())}/{sum(expected.values())}"
    if missing:
        text += " missing " + ", ".join(f"{k}×{v}" for k, v in missing.items())
    if empty:
        text += f" ({empty} empty)"
    return ok, text


def ensure_jwst115(work: Path, base_python: str, timeout: float) -> tuple[Path, dict[str, Any]]:
    """Create (once) ``WORK/venv-jwst-1.15.1`` with jwst 1.15.1; return its python and how it went."""
    venv = work / f"venv-jwst-{JWST115}"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists():
        return python, {**json.loads(marker.read_text()), "reused": True}
    shutil.rmtree(venv, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"venv-jwst-{JWST115}.log"
    start = time.perf_counter()
    with log.open("w") as fh:
        for cmd in ([base_python, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", f"jwst=={JWST115}", *JWST115_PINS],
                    [str(python), "-c", "import jwst, jwst.pipeline, drizzle, numpy; "
                                        "print(jwst.__version__, numpy.__version__)"]):
            fh.write(f"$ {shlex.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, check=False)
            if proc.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"`{shlex.join(cmd[:4])}` exited {proc.returncode}: " + " | ".join(tail)
                                   + f" (full log: {log})")
    seconds = time.perf_counter() - start
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=False).stdout
    info = {"seconds": seconds, "pins": list(JWST115_PINS), "log": str(log),
            "packages": sorted(line for line in freeze.splitlines() if line.split("==")[0].lower() in {
                "jwst", "numpy", "astropy", "scipy", "stcal", "stdatamodels", "stpipe", "gwcs", "asdf",
                "asdf-astropy", "drizzle", "crds"})}
    marker.write_text(json.dumps(info))
    return python, {**info, "reused": False}


def jwst115_copy(python: Path, asn: Path, timeout: float) -> Path:
    """The members with a gWCS written by the jwst 1.15.1 venv's own gwcs/asdf (see the module docstring)."""
    directory = asn.parent.with_name(asn.parent.name + f"_gwcs_jwst{JWST115}")
    done = directory / ".complete"
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        code = ("import sys, warnings; warnings.simplefilter('ignore'); sys.path.insert(0, sys.argv[1]); "
                "from _official import prepare_programme; print(prepare_programme(sys.argv[2], sys.argv[3]))")
        proc = subprocess.run([str(python), "-c", code, str(HERE), str(asn), str(directory)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError("gWCS copy for jwst 1.15.1 failed: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
        done.write_text(proc.stdout.strip().splitlines()[-1])
    return Path(done.read_text())


def build_configs(args: argparse.Namespace, asn_sim: Path, asn: Path, psfmask: Path, runs_dir: Path
                  ) -> tuple[list[Config], dict[str, Any]]:
    """The configurations to measure; ``asn_sim`` is the simulator's association, ``asn`` its gWCS copy."""
    configs: list[Config] = []
    cli = args.cli or str(Path(sys.executable).with_name("coron3-dask"))
    for mode in args.modes:
        for sched in args.schedulers:
            name = f"ours {mode} [{sched}]"
            out = runs_dir / f"ours_{mode}_{sched}"
            cmd = [cli, "run", str(asn), "-o", str(out), "--psfmask", str(psfmask), "--no-progress", *MODES[mode]]
            if sched != "default":
                cmd += ["--scheduler", sched]
            configs.append(Config(name, "ours", cmd, out, mode, sched))
    crds = str(args.work_dir / "crds")
    base = {"asn": str(asn), "psfmask": str(psfmask), "crds": crds}
    if args.official:
        out = runs_dir / "jwst_3.0.0"
        configs.append(Config("jwst 3.0.0", "official", _child_cmd(sys.executable, {
            **base, "kind": "official", "out": str(out)}), out))
    if args.official64:
        out = runs_dir / "jwst_3.0.0_f64"
        configs.append(Config("jwst 3.0.0 float64 fit", "official64", _child_cmd(sys.executable, {
            **base, "kind": "official", "fit_dtype": "float64", "out": str(out)}), out))
    env_info: dict[str, Any] = {}
    if args.jwst115:
        out = runs_dir / f"jwst_{JWST115}"
        config = Config(f"jwst {JWST115}", "jwst115", [], out)
        try:
            python, env_info = ensure_jwst115(args.work_dir, args.venv_python, args.timeout)
            asn115 = jwst115_copy(python, asn_sim, args.timeout)
            config.cmd = _child_cmd(python, {**base, "asn": str(asn115), "kind": "jwst115", "out": str(out)})
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            config.error = f"jwst {JWST115} environment: {exc}"
            env_info["error"] = config.error
        configs.append(config)
    return configs, env_info


# ----------------------------------------------------------------------------------------------
# report


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if not r.get("error") and r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(config: Config) -> dict[str, Any]:
    good = [r for r in config.runs if not r.get("error")]
    return {
        "name": config.name, "kind": config.kind, "mode": config.mode, "scheduler": config.scheduler,
        "wall": _median(good, "wall"), "cpu": _median(good, "cpu"),
        "cpu_per_wall": statistics.median([r["cpu"] / r["wall"] for r in good]) if good else None,
        "peak_rss_mib": _median(good, "peak_rss_mib"), "others_cpu": _median(good, "others_cpu"),
        "walls": [r["wall"] for r in good], "failed": len(config.runs) - len(good),
        "errors": [r["error"] for r in config.runs if r.get("error")] + ([config.error] if config.error else []),
        "products": config.runs[-1].get("products") if config.runs else None,
        "fit_cpu": _median([{"v": r.get("child", {}).get("steps", {}).get("align_fit_cpu")} for r in good], "v"),
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_table(summaries: list[dict[str, Any]]) -> None:
    print("\n| configuration | wall s (median) | CPU s | CPU/wall | peak RSS MiB | others' CPU s | products | walls |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for s in summaries:
        if s["wall"] is None:
            print(f"| {s['name']} | failed: {'; '.join(s['errors'])[:300]} | | | | | | |")
            continue
        walls = ", ".join(f"{w:.1f}" for w in s["walls"])
        failed = f" ({s['failed']} failed)" if s["failed"] else ""
        print(f"| {s['name']} | {_f(s['wall'], 2)} | {_f(s['cpu'])} | {_f(s['cpu_per_wall'], 2)} "
              f"| {_f(s['peak_rss_mib'], 0)} | {_f(s['others_cpu'])} | {s['products'] or '–'} | {walls}{failed} |")


def ratios(summaries: list[dict[str, Any]], schedulers: Sequence[str]) -> list[dict[str, Any]]:
    """Speed-up rows: baseline / ours for wall, CPU and peak RSS (> 1: ours is faster / leaner)."""
    by_name = {s["name"]: s for s in summaries if s["wall"] is not None}
    wanted: list[tuple[str, str]] = []
    for sched in schedulers:
        wanted += [(f"ours each [{sched}]", f"jwst {JWST115}"), (f"ours each [{sched}]", "jwst 3.0.0"),
                   (f"ours first [{sched}]", "jwst 3.0.0 float64 fit"), (f"ours compat [{sched}]", "jwst 3.0.0")]
    if "default" in schedulers:
        wanted += [(f"ours {mode} [default]", f"ours {mode} [{sched}]") for mode in MODES
                   for sched in schedulers if sched != "default"]
    rows = []
    for ours, base in wanted:
        a, b = by_name.get(ours), by_name.get(base)
        if a is None or b is None:
            continue
        rows.append({"ours": ours, "baseline": base, "wall": b["wall"] / a["wall"], "cpu": b["cpu"] / a["cpu"],
                     "peak_rss": b["peak_rss_mib"] / a["peak_rss_mib"]})
    return rows


def compat_bounds(summaries: list[dict[str, Any]], schedulers: Sequence[str], cores: int) -> list[dict[str, Any]]:
    """compat's wall against its bound: our ``first`` run + the official float32 fit's CPU spread over the cores.

    ``--jwst-compat`` is ``align_to=first`` with jwst 3.0.0's float32 MINPACK fit replayed bit for
    bit, so its fit evaluations are fixed.  The bound is the wall of our ``first`` run under the
    same scheduler (every other stage, and our own float64 fit, which compat does not run: the
    bound is generous by that much) plus the official fit's CPU seconds divided by the cores.
    """
    by_name = {s["name"]: s for s in summaries if s["wall"] is not None}
    official = by_name.get("jwst 3.0.0")
    rows = []
    for sched in schedulers:
        first, compat = by_name.get(f"ours first [{sched}]"), by_name.get(f"ours compat [{sched}]")
        if not (official and first and compat and official.get("fit_cpu")):
            continue
        bound = first["wall"] + official["fit_cpu"] / cores
        rows.append({"scheduler": sched, "compat": compat["wall"], "first": first["wall"],
                     "fit_cpu": official["fit_cpu"], "bound": bound, "ratio": compat["wall"] / bound})
    return rows


def print_compat_bounds(rows: list[dict[str, Any]], cores: int) -> None:
    if not rows:
        return
    print(f"\n| compat [scheduler] | wall s | bound s = first wall + official fit CPU / {cores} cores "
          "| official fit CPU s | compat / bound |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| compat [{r['scheduler']}] | {r['compat']:.2f} | {r['bound']:.2f} = {r['first']:.2f} + "
              f"{r['fit_cpu']:.1f}/{cores} | {r['fit_cpu']:.1f} | {r['ratio']:.2f} |")


def print_ratios(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print("\n| comparison (baseline / ours; > 1: ours faster or leaner) | wall speed-up | CPU ratio | peak RSS ratio |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['ours']} vs {r['baseline']} | {r['wall']:.2f}× | {r['cpu']:.2f}× | {r['peak_rss']:.2f}× |")


# ----------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="SUB320A335R", help="simulation preset (default SUB320A335R)")
    p.add_argument("--science-ints", type=int, default=8, help="integrations per science exposure (default 8)")
    p.add_argument("--ref-ints", type=int, default=4, help="integrations per reference exposure (default 4)")
    p.add_argument("--dither", type=int, default=9, choices=(1, 5, 9), help="reference dither points (default 9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="our modes (default all)")
    p.add_argument("--schedulers", nargs="+", default=["default", "threads"],
                   help="our schedulers; 'default' passes no --scheduler (default: default threads)")
    p.add_argument("--official", action=argparse.BooleanOptionalAction, default=True, help="jwst 3.0.0 (default on)")
    p.add_argument("--official64", action=argparse.BooleanOptionalAction, default=True,
                   help="jwst 3.0.0 with the float64 shift fit (default on)")
    p.add_argument("--jwst115", action="store_true",
                   help=f"also jwst {JWST115}, in WORK/venv-jwst-{JWST115} (created on first use; needs PyPI)")
    p.add_argument("--venv-python", default="python3", help="interpreter that creates the jwst 1.15.1 venv")
    p.add_argument("--cli", help="coron3-dask executable (default: beside this python)")
    p.add_argument("--repeat", type=int, default=3, help="rounds (default 3); medians are reported")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each run wait up to SECONDS for the machine to be idle (< 25%% busy)")
    p.add_argument("--timeout", type=float, default=1800.0, help="per-run time limit in seconds (default 1800)")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "coron3_bench",
                   help="simulated programmes, outputs, venv (default $TMPDIR/coron3_bench)")
    p.add_argument("--json", type=Path, help="also write the raw measurements to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_child":
        print("RESULT " + json.dumps(child(json.loads(argv[1]))), flush=True)
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `kill` takes the measured child down too
    args.work_dir = args.work_dir.resolve()
    sys.path.insert(0, str(HERE))
    import bench_pipeline

    bench_pipeline.QUIET = (args.wait_quiet, 0.25)
    asn_sim, psfmask, sim_s = bench_pipeline.programme(args.work_dir, args.preset, args.science_ints, args.ref_ints,
                                                       args.dither, args.seed)
    asn = bench_pipeline.official_copy(args.work_dir, asn_sim)
    label = f"{args.preset} 2×{args.science_ints} sci, {args.dither}×{args.ref_ints} ref, seed {args.seed}"
    print(f"programme: {label} ({asn}; simulated/reused in {sim_s:.1f} s)", flush=True)
    runs_dir = args.work_dir / "cli_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    configs, env_info = build_configs(args, asn_sim, asn, psfmask, runs_dir)
    if env_info:
        state = (("reused, " if env_info.get("reused") else "") + f"created in {env_info.get('seconds', 0):.0f} s"
                 + f" with extra pins {env_info.get('pins')}")
        print(f"jwst {JWST115} env: {env_info.get('error') or state} {env_info.get('packages', '')}", flush=True)
    expected = expected_products(asn)
    print("\ncommands:")
    for c in configs:
        print(f"  {c.name}: {shlex.join(c.cmd) if c.cmd else c.error}")
    runnable = [c for c in configs if not c.error]
    for round_ in range(max(1, args.repeat)):
        order = runnable if round_ % 2 == 0 else runnable[::-1]
        for c in order:
            busy = bench_pipeline.wait_quiet() if args.wait_quiet > 0 else None
            shutil.rmtree(c.out, ignore_errors=True)
            c.out.mkdir(parents=True)
            os.sync()  # the previous run's writes are flushed outside the measured interval
            result = measure(c.cmd, c.out.with_name(c.out.name + ".log"), args.timeout)
            result["round"], result["busy_before"] = round_, busy
            ok, text = product_check(c.out, expected)
            result["products"], result["products_ok"] = text, ok
            result["product_files"] = sorted(p.name for p in c.out.iterdir())
            c.runs.append(result)
            status = result.get("error") or f"wall {result['wall']:.1f} s, CPU {result['cpu']:.1f} s, " \
                f"peak {result['peak_rss_mib']:.0f} MiB, products {text}"
            print(f"[round {round_ + 1}/{args.repeat}] {c.name}: {status}", flush=True)
    summaries = [summarise(c) for c in configs]
    rows = ratios(summaries, args.schedulers)
    print(f"\n### {label}: whole processes, median of {args.repeat} round(s)")
    print_table(summaries)
    print_ratios(rows)
    cores = os.cpu_count() or 1
    bounds = compat_bounds(summaries, args.schedulers, cores)
    print_compat_bounds(bounds, cores)
    if args.json:
        args.json.write_text(json.dumps({
            "programme": {"label": label, "asn": str(asn), "psfmask": str(psfmask), "expected": dict(expected)},
            "jwst115_env": env_info, "cpu_count": os.cpu_count(),
            "configs": [{"name": c.name, "kind": c.kind, "mode": c.mode, "scheduler": c.scheduler, "cmd": c.cmd,
                         "error": c.error, "runs": c.runs} for c in configs],
            "summary": summaries, "ratios": rows, "compat_bounds": bounds}, indent=2, default=str))
        print(f"\nraw numbers: {args.json}")
    return 0 if all(s["wall"] is not None and not s["failed"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
