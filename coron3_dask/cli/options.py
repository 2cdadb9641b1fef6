"""Options shared by the sub-commands that process associations (``run``, ``campaign``, ``demo``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from coron3_dask.cli import schedulers
from coron3_dask.config import Coron3Config, load_config

__all__ = ["STEPS", "config_from", "processing_args", "strun_steps"]

STEPS = "--steps."  # strun's parameter overrides: --steps.klip.truncate=10


def processing_args(parser: argparse.ArgumentParser) -> None:
    """Add the processing options (PSFMASK, CRDS path, parameters, compat) to a sub-command's parser."""
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
    # strun's --steps.STEP.PARAM[=]VALUE, rewritten by strun_steps() into --steps=STEP.PARAM=VALUE
    group.add_argument("--steps", dest="overrides", action="append", type=STEPS.__add__, help=argparse.SUPPRESS)
    group.add_argument(
        "--jwst-compat",
        action="store_true",
        help="behave exactly like jwst 3.0.0: align_refs.align_to=first, align_refs.jwst_compat=true",
    )
    group.add_argument("--no-save-psfalign", action="store_true", help="do not write psfalign products")


def strun_steps(argv: Sequence[str]) -> list[str]:
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
        if not token.startswith(STEPS):
            out.append(token)
            continue
        key, sep, value = token.removeprefix(STEPS).partition("=")
        if not sep and i < len(argv) and not argv[i].startswith("--"):
            sep, value = "=", argv[i]
            i += 1
        out.append(f"--steps={key}{sep}{value}")
    return out


def config_from(args: argparse.Namespace) -> Coron3Config:
    """Resolve the configuration: defaults < --config file < --jwst-compat < --set/--steps.*; check the scheduler."""
    overrides = list(args.overrides)
    if args.jwst_compat:
        overrides = ["align_refs.align_to=first", "align_refs.jwst_compat=true", *overrides]
    if args.no_save_psfalign:
        overrides.append("save_psfalign=false")
    config = load_config(args.config, overrides)
    schedulers.check_scheduler(args)
    return config
