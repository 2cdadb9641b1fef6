"""Peak resident memory per Dask worker for a programme run on a LocalCluster.

Runs ``coron3-dask run`` in-process on a ``LocalCluster`` (worker processes, 1 thread each,
``--memory-limit``) and samples the RSS of every worker process every 0.1 s.  Prints a
markdown table: wall time, graph size, peak RSS per worker and of the client, and the
bytes of psfalign written.

    .venv/bin/python benchmarks/bench_memory.py ASN.json --psfmask MASK.fits [--workers 2]
        [--memory-limit 2GiB] [--out DIR] [--no-save-psfalign] [--set step.param=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coron3_dask import pipeline
from coron3_dask.cli import main
from coron3_dask.config import load_config
from coron3_dask.testing import RssSampler


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("asn", type=Path)
    parser.add_argument("--psfmask", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GiB")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-save-psfalign", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_memory_"))
    config = load_config(overrides=args.overrides)
    inputs = pipeline.open_inputs(args.asn, config, psfmask=args.psfmask)
    n_sci = sum(ds.sizes["integration"] for ds in inputs.science)
    n_ref = sum(ds.sizes["integration"] for ds in inputs.psf)
    shape = (inputs.science[0].sizes["y"], inputs.science[0].sizes["x"])
    argv = ["run", str(args.asn), "--psfmask", str(args.psfmask), "-o", str(out), "--scheduler", "local",
            "--workers", str(args.workers),
            "--threads-per-worker", "1", "--memory-limit", args.memory_limit, "--no-progress"]
    argv += [a for o in args.overrides for a in ("--set", o)]
    if args.no_save_psfalign:
        argv.append("--no-save-psfalign")
    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    status = main(argv)
    wall = time.perf_counter() - start
    sampler.stop()
    if status:
        raise SystemExit(status)
    psfalign = sum(p.stat().st_size for p in out.glob("*_psfalign.fits"))
    workers = sampler.worker_peaks()
    client = max(peak for name, peak in sampler.peaks.values() if name == "client")
    mib = 2**20
    print("| frame | science ints | refs | align_to | workers x limit | wall s | psfalign written GB "
          "| peak RSS per worker MiB | client peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {shape[0]}x{shape[1]} | {n_sci} | {n_ref} | {config.align_refs.align_to} | {args.workers} x "
          f"{args.memory_limit} | {wall:.1f} | {psfalign / 1e9:.2f} | {', '.join(str(w // mib) for w in workers)} "
          f"| {client // mib} |")


if __name__ == "__main__":
    main_()
