"""``coron3-dask dashboard OUT``: serve the live page of a campaign output root until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from coron3_dask.config import ConfigError

__all__ = ["DEFAULT_ADDRESS", "add_parser", "handle", "parse_address"]

DEFAULT_ADDRESS = "127.0.0.1:8788"
_LOOPBACK = ("127.", "localhost", "::1")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``dashboard`` sub-command."""
    dash = sub.add_parser(
        "dashboard",
        parents=[common],
        help="serve the live web page of a campaign (read-only)",
        description=(
            "Serve the live dashboard of a campaign output root: counts, progress, throughput and ETA, one row per "
            "association with its step, products and thumbnail, and the files below OUT. Read-only: it can run "
            "while the campaign runs, after it, or before it starts. Stop with Ctrl-C."
        ),
    )
    dash.add_argument("output_root", type=Path, metavar="OUT", help="the campaign's output root (-o of campaign)")
    dash.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_ADDRESS}; port 0: any free port). There is no authentication: "
        "listen on a non-loopback address only on a trusted network",
    )


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6, ``:PORT`` for loopback) as ``(host, port)``.

    Raises
    ------
    ConfigError
        Not of that form, or the port is outside 0..65535.
    """
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise ConfigError(f"--address {text!r}: expected HOST:PORT with a port in 0..65535")
    return host, number


def handle(args: argparse.Namespace) -> int:
    """Serve until interrupted; return 0."""
    from coron3_dask.dashboard.server import DashboardServer

    host, port = parse_address(args.address)
    server = DashboardServer(args.output_root, host=host, port=port)
    try:
        server.bind()
    except OSError as exc:
        raise ConfigError(f"--address {args.address}: cannot listen there: {exc.strerror or exc}") from None
    if not host.startswith(_LOOPBACK):
        print(f"coron3-dask: the dashboard listens on {host}, with no authentication", file=sys.stderr)
    if not (args.output_root / "campaign.sqlite").is_file():
        print(f"coron3-dask: no campaign in {args.output_root} yet; the page fills in when it starts", file=sys.stderr)
    print(f"Campaign dashboard: {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("coron3-dask: dashboard stopped", file=sys.stderr)
    return 0
