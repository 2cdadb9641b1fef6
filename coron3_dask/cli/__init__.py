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
from typing import NoReturn

from coron3_dask import __version__
from coron3_dask.cli import associate, campaign, contrast, dashboard, options, schedulers
from coron3_dask.progress import LocalProgress, StageBoard

__all__ = ["main"]

log = logging.getLogger("coron3_dask")


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
    options.processing_args(run)
    run.add_argument(
        "--contrast", action="store_true", help="run the contrast step at the end (see `coron3-dask contrast -h`)"
    )
    contrast.contrast_args(run)
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
    sim.add_argument("--jitter", type=float, default=0.0, help="per-integration pointing jitter, rms px (default 0)")

    demo = sub.add_parser(
        "demo", parents=[common], help="simulate the default programme and run it on a local Dask cluster"
    )
    demo.description = "Simulate the default programme into DIR/inputs and process it into DIR/products."
    demo.add_argument("--dir", type=Path, default=Path("demo_output"), help="working directory (default demo_output)")
    schedulers.scheduler_args(demo)
    contrast.add_parser(sub, common)
    campaign.add_parser(sub, common)
    associate.add_parser(sub, common)
    dashboard.add_parser(sub, common)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("coron3_dask")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from coron3_dask import pipeline

    config = options.config_from(args)
    if getattr(args, "contrast", False):
        contrast.check_args(args)
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
        if getattr(args, "contrast", False):
            sys.stdout.flush()
            contrast.run_contrast(args, inputs, config, args.output_dir, client)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from coron3_dask.simulate import simulate_programme

    sim = simulate_programme(
        args.out_dir,
        preset=args.preset,
        n_science_ints=args.science_ints,
        n_ref_ints=args.ref_ints,
        n_dither=args.dither,
        seed=args.seed,
        jitter_px=args.jitter,
    )
    from coron3_dask import files

    truth = files.read_json(sim.truth_path)
    print(
        f"Simulated programme in {sim.directory}: association {sim.asn_path.name}, "
        f"{len(sim.science_files)} science + {len(sim.psf_files)} PSF exposures, truth in {sim.truth_path.name}\n"
        f"For the contrast step: --psf-model {sim.psf_model_path} --host-flux {truth['host_flux_image_units']:.6g} "
        + " ".join(f"--companion {c['separation_arcsec']:g},{c['position_angle_deg']:g}" for c in truth["companions"])
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
    args = _parser().parse_args(campaign.status_argv(options.strun_steps(sys.argv[1:] if argv is None else argv)))
    _configure_logging(args.verbose)
    handlers = {
        "run": _run,
        "campaign": campaign.handle,
        campaign.STATUS_COMMAND: campaign.handle_status,
        "simulate": _simulate,
        "demo": _demo,
        "associate": associate.handle,
        "contrast": contrast.handle,
        "dashboard": dashboard.handle,
    }
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
