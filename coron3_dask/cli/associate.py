"""``coron3-dask associate DIR... -o ASN_DIR``: group calints files into coron3 associations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "handle"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Declare the ``associate`` subcommand.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The main parser's subcommands.
    common : argparse.ArgumentParser
        Options every subcommand accepts (``-v``, ``--debug``).
    """
    parser = sub.add_parser(
        "associate",
        parents=[common],
        help="group _calints.fits files into coron3 associations (ASN JSON)",
        description=(
            "Group stage-2 coronagraphic exposures (_calints.fits) into coron3 associations from their primary "
            "headers, as jwst's Asn_Lv3NRCCoron / Asn_Lv3MIRCoron rules do, and write one ASN JSON each. "
            "Files that fit in no association are listed with the reason. Exit status 1 if none was formed."
        ),
    )
    parser.add_argument(
        "dirs", type=Path, nargs="+", metavar="PATH", help="directories (searched recursively) or calints files"
    )
    parser.add_argument(
        "-o", "--output-dir", type=Path, required=True, help="directory for the ASN files (member paths relative to it)"
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be written, write nothing")


def handle(args: argparse.Namespace) -> int:
    """Run ``associate``: one line per association (stdout), one per skipped file (stderr).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``dirs``, ``output_dir`` and ``dry_run``.

    Returns
    -------
    int
        0 when at least one association was written (or would be, with ``--dry-run``), else 1.
    """
    from coron3_dask.campaign.associate import associate

    result = associate(args.dirs, args.output_dir, dry_run=args.dry_run)
    verb = "would write" if args.dry_run else "wrote"
    for asn, path in zip(result.associations, result.paths, strict=True):
        print(f"{verb} {path}: {asn.product_name} ({len(asn.science)} science + {len(asn.psf)} psf members)")
    for skip in result.skipped:
        print(f"skipped {skip.path}: {skip.reason}", file=sys.stderr)
    if not result.associations:
        found = "no calints files found" if not result.skipped else f"{len(result.skipped)} files, all skipped"
        print(f"coron3-dask associate: no association formed ({found})", file=sys.stderr)
        return 1
    return 0
