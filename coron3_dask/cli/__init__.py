"""Command-line interface: ``coron3-dask run | simulate | demo``.

The only layer that chooses a scheduler (:mod:`coron3_dask.cli.schedulers`), imports ``distributed``
or configures logging.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from coron3_dask import __version__
from coron3_dask.cli import schedulers
from coron3_dask.config import ConfigError, Coron3Config, load_config
from coron3_dask.progress import LocalProgress, StageBoard

__all__ = ["main"]

log = logging.getLogger("coron3_dask")

_STEPS = "--steps."  # strun's parameter overrides: --steps.klip.truncate=10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coron3-dask",
        description="JWST stage-3 coronagraphic processing (calwebb_coron3) as a Dask job.",
        epilog="Products and names follow jwst's calwebb_coron3: crfints, psfstack, psfalign, psfsub, i2d.",
    )
    parser.add_argument("--version", action="version", version=f"coron3_dask {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    for target in (parser, common):  # accepted before or after the subcommand
        default = 0 if target is parser else argparse.SUPPRESS
        target.add_argument(
            "-v", "--verbose", action="count", default=default, help="more log detail (-vv: every fitted shift)"
        )
        debug = False if target is parser else argparse.SUPPRESS
        target.add_argument("--debug", action="store_true", default=debug, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="process one coron3 association",
        description=("Process one coron3 association (ASN JSON) into crfints, psfstack, psfalign, psfsub and i2d."),
    )
    run.add_argument("asn", type=Path, help="coron3 association JSON file")
    run.add_argument("-o", "--output-dir", type=Path, default=Path(), help="directory for products (default: .)")
    _processing_args(run)
    schedulers.scheduler_args(run)

    sim = sub.add_parser(
        "simulate",
        parents=[common],
        help="write a simulated coronagraphic programme",
        description=("Write a simulated programme (calints, ASN, PSFMASK, truth.json) in the real on-disk layout."),
    )
    sim.add_argument("out_dir", type=Path, help="output directory")
    sim.add_argument("--preset", default="SUB320A335R", help="SUB320A335R (default), SUB640A210R or MASK1550")
    sim.add_argument("--science-ints", type=int, default=4, help="integrations per science exposure (default 4)")
    sim.add_argument("--ref-ints", type=int, default=3, help="integrations per reference exposure (default 3)")
    sim.add_argument("--dither", type=int, default=5, choices=(1, 5, 9), help="reference dither points (default 5)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    camp = sub.add_parser(
        "campaign",
        parents=[common],
        help="process many associations on one cluster, resuming where a previous run stopped",
        description=(
            "Process many associations, each into OUTPUT_ROOT/<product name>/. Associations whose run record "
            "exists are skipped (resume after failures); failures are recorded in OUTPUT_ROOT/campaign.json "
            "and the campaign goes on. Exit status 1 if any association failed."
        ),
    )
    camp.add_argument("asn", type=Path, nargs="*", help="association files")
    camp.add_argument("--list", type=Path, help="text file of association paths, one per line")
    camp.add_argument("-o", "--output-root", type=Path, required=True, help="root directory of the outputs")
    _processing_args(camp)
    camp.add_argument("--force", action="store_true", help="reprocess associations that are already complete")
    schedulers.scheduler_args(camp)

    demo = sub.add_parser(
        "demo", parents=[common], help="simulate the default programme and run it on a local Dask cluster"
    )
    demo.description = "Simulate the default programme into DIR/inputs and process it into DIR/products."
    demo.add_argument("--dir", type=Path, default=Path("demo_output"), help="working directory (default demo_output)")
    schedulers.scheduler_args(demo)
    return parser


def _processing_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument("--psfmask", type=Path, help="PSFMASK reference file (default: look up in --crds-path)")
    group.add_argument("--crds-path", type=Path, help="CRDS-style cache root (default: $CRDS_PATH)")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="step parameters: a TOML file ([klip] truncate = 10), or a jwst parameter file as strun reads it "
        "(.asdf/.yaml/.yml: a Coron3Pipeline config or a CRDS pars-*step file)",
    )
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STEP.PARAM=VALUE",
        help="override one parameter, e.g. --set klip.truncate=10 (repeatable); strun's spelling "
        "--steps.klip.truncate=10 or --steps.klip.truncate 10 works too, in the same order",
    )
    # strun's --steps.STEP.PARAM[=]VALUE, rewritten by _strun_steps() into --steps=STEP.PARAM=VALUE
    group.add_argument("--steps", dest="overrides", action="append", type=_STEPS.__add__, help=argparse.SUPPRESS)
    group.add_argument(
        "--jwst-compat",
        action="store_true",
        help="behave exactly like jwst 3.0.0: align_refs.align_to=first, align_refs.jwst_compat=true",
    )
    group.add_argument("--no-save-psfalign", action="store_true", help="do not write psfalign products")


def _strun_steps(argv: Sequence[str]) -> list[str]:
    """Rewrite strun's ``--steps.STEP.PARAM=VALUE`` / ``--steps.STEP.PARAM VALUE`` as ``--steps=STEP.PARAM=VALUE``.

    argparse cannot declare these options (one per parameter); the rewritten token feeds the hidden
    ``--steps`` option, which appends ``"--steps.STEP.PARAM=VALUE"`` to the ``--set`` list, so both
    spellings apply in command-line order.  A missing value (nothing or an option next) is left for
    :func:`coron3_dask.config.load_config` to report.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":  # the rest are positional arguments
            out += argv[i - 1 :]
            break
        if not token.startswith(_STEPS):
            out.append(token)
            continue
        key, sep, value = token.removeprefix(_STEPS).partition("=")
        if not sep and i < len(argv) and not argv[i].startswith("--"):
            sep, value = "=", argv[i]
            i += 1
        out.append(f"--steps={key}{sep}{value}")
    return out


def _config(args: argparse.Namespace) -> Coron3Config:
    """Resolve the configuration: defaults < --config file < --jwst-compat < --set/--steps.*; check the scheduler."""
    overrides = list(args.overrides)
    if args.jwst_compat:
        overrides = ["align_refs.align_to=first", "align_refs.jwst_compat=true", *overrides]
    if args.no_save_psfalign:
        overrides.append("save_psfalign=false")
    config = load_config(args.config, overrides)
    schedulers.check_scheduler(args)
    return config


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("coron3_dask")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from coron3_dask import pipeline

    config = _config(args)
    inputs = pipeline.open_inputs(args.asn, config, psfmask=args.psfmask, crds_path=args.crds_path)
    products = pipeline.build(inputs, config)
    board = None if args.no_progress else StageBoard()
    start = time.perf_counter()
    with schedulers.scheduler(args) as client:
        if client is not None:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
            result = pipeline.run(
                inputs,
                config,
                args.output_dir,
                products=products,
                compute=schedulers.distributed_compute(client, board),
            )
        else:
            with LocalProgress(board) if board else contextlib.nullcontext():
                result = pipeline.run(inputs, config, args.output_dir, products=products)
    elapsed = time.perf_counter() - start
    print(f"Wrote {len(result.paths)} products to {args.output_dir} in {elapsed:.1f} s:")
    for path in result.paths:
        print(f"  {path.name}")
    return 0


def _campaign(args: argparse.Namespace) -> int:
    from coron3_dask.campaign import read_list, run_campaign

    config = _config(args)
    associations = [*args.asn, *(read_list(args.list) if args.list else [])]
    if not associations:
        raise ConfigError("campaign: no associations given (pass ASN files or --list FILE)")
    board = None if args.no_progress else StageBoard()

    def report(outcome: Any) -> None:
        detail = outcome.error or f"{len(outcome.products)} products"
        print(f"{outcome.status:>7}  {outcome.asn}  ({outcome.wall_seconds:.1f} s) {detail}", file=sys.stderr)

    with schedulers.scheduler(args) as client:
        if client is not None:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        compute = schedulers.distributed_compute(client, board) if client is not None else None
        with LocalProgress(board) if board and client is None else contextlib.nullcontext():
            outcomes = run_campaign(
                associations,
                args.output_root,
                config,
                psfmask=args.psfmask,
                crds_path=args.crds_path,
                force=args.force,
                compute=compute,
                on_outcome=report,
            )
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(
        f"Campaign: {counts['done']} done, {counts['skipped']} skipped (already complete), {counts['failed']} "
        f"failed; record in {args.output_root / 'campaign.json'}"
    )
    return 1 if counts["failed"] else 0


def _simulate(args: argparse.Namespace) -> int:
    from coron3_dask.simulate import simulate_programme

    sim = simulate_programme(
        args.out_dir,
        preset=args.preset,
        n_science_ints=args.science_ints,
        n_ref_ints=args.ref_ints,
        n_dither=args.dither,
        seed=args.seed,
    )
    print(
        f"Simulated programme in {sim.directory}: association {sim.asn_path.name}, "
        f"{len(sim.science_files)} science + {len(sim.psf_files)} PSF exposures, truth in {sim.truth_path.name}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from coron3_dask.simulate import simulate_programme

    inputs = args.dir / "inputs"
    sim = simulate_programme(inputs)
    print(f"Simulated the default programme (NIRCam SUB320A335R, 2 rolls, 5-point reference dither) in {inputs}")
    args.asn = sim.asn_path
    args.output_dir = args.dir / "products"
    args.psfmask, args.crds_path, args.config = sim.psfmask_path, None, None
    args.overrides, args.jwst_compat, args.no_save_psfalign = [], False, False
    status = _run(args)
    from coron3_dask import files
    from coron3_dask.analysis.preview import write_preview

    products = args.output_dir
    png = write_preview(
        sorted(products.glob("*_psfsub.fits")),
        next(products.glob("*_i2d.fits"), None),
        products / "preview.png",
        truth=files.read_json(sim.truth_path),
    )
    print(f"Inputs: {inputs}\nProducts: {products}\nPreview: {png}\nTruth: {sim.truth_path}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = _parser().parse_args(_strun_steps(sys.argv[1:] if argv is None else argv))
    _configure_logging(args.verbose)
    handlers = {"run": _run, "campaign": _campaign, "simulate": _simulate, "demo": _demo}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("coron3-dask: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `coron3-dask run ... | head`: the work itself is done
        sys.stderr.close()
        return 0
    except Exception as exc:
        if args.debug:
            raise
        print(f"coron3-dask: error: {exc}", file=sys.stderr)
        return 1


def entry() -> NoReturn:
    """Console entry point (``coron3-dask``): run :func:`main`, then exit without interpreter teardown.

    By the time ``main`` returns every product is complete, renamed into place and closed, the
    output lock is released and the cluster is shut down; what the interpreter would still do
    is free the objects of every imported module one by one and join idle pool threads, about
    half a second of a run spent on nothing.  Logging and the standard streams are flushed
    first.  An exception escaping ``main`` (``--debug``) takes the normal way out.
    """
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed by a broken pipe
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    entry()
