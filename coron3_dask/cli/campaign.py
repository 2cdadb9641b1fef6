"""``coron3-dask campaign`` and ``coron3-dask campaign status``: many associations on one cluster.

Exit status: 0 every association done (or current), 1 some failed, 3 the cluster was lost,
130/143 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from coron3_dask.cli import options, schedulers
from coron3_dask.config import ConfigError

__all__ = ["STATUS_COMMAND", "add_parser", "handle", "handle_status"]

#: ``campaign status OUT`` is parsed as this hidden command (``campaign`` takes ASN paths)
STATUS_COMMAND = "campaign-status"
EXIT_LOST = 3
_DEFAULT_DASHBOARD = "127.0.0.1:8788"
#: how long the campaign's dashboard stays up after the end: a page polls every second
_LINGER_S = 2.5


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``campaign`` and the hidden ``campaign-status`` sub-commands."""
    camp = sub.add_parser(
        "campaign",
        parents=[common],
        help="process many associations concurrently on one cluster, resumable (also: campaign status OUT)",
        description=(
            "Process many associations, each into OUTPUT_ROOT/<product name>/, up to --max-concurrent at once on "
            "one cluster. State is kept in OUTPUT_ROOT/campaign.sqlite: rerunning the same command resumes (done "
            "associations whose inputs and parameters are unchanged are skipped). `coron3-dask campaign status "
            "OUTPUT_ROOT` prints the table. Exit status: 0 all done, 1 some failed, 3 cluster lost, 130/143 stopped."
        ),
    )
    camp.add_argument("asn", nargs="*", help="ASN files, directories (searched for *_asn.json) or glob patterns")
    camp.add_argument("--list", type=Path, help="text file of association paths, one per line")
    camp.add_argument("-o", "--output-root", type=Path, required=True, help="root directory of the outputs")
    options.processing_args(camp)
    group = camp.add_argument_group("campaign")
    group.add_argument("--force", action="store_true", help="reprocess associations that are already done")
    group.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="associations in flight at once (default: workers + 1, at least 2; 1 on local schedulers)",
    )
    group.add_argument(
        "--retries", type=int, default=1, help="further attempts after a failure that is not bad input (default 1)"
    )
    group.add_argument(
        "--no-worker-timeout",
        type=float,
        metavar="S",
        help="stop (as for a lost scheduler) when no worker has been connected for S seconds "
        "(default 900; 0 waits for ever, the default with --cluster, whose jobs may wait in a queue)",
    )
    group.add_argument(
        "--dashboard",
        nargs="?",
        const=_DEFAULT_DASHBOARD,
        metavar="HOST:PORT",
        help=f"serve the live campaign dashboard (default address {_DEFAULT_DASHBOARD}; port 0: any free port)",
    )
    schedulers.scheduler_args(camp)

    status = sub.add_parser(STATUS_COMMAND, parents=[common])
    status.add_argument("output_root", type=Path)
    status.add_argument("--json", action="store_true", help="print the state as JSON")


def status_argv(argv: list[str]) -> list[str]:
    """Rewrite ``campaign status OUT`` as the hidden ``campaign-status OUT`` (``./status`` is an ASN path)."""
    words = [i for i, a in enumerate(argv) if not a.startswith("-")]
    if len(words) >= 2 and argv[words[0]] == "campaign" and argv[words[0] + 1 : words[0] + 2] == ["status"]:
        i = words[0]
        return [*argv[:i], STATUS_COMMAND, *argv[i + 2 :]]
    return argv


def handle_status(args: argparse.Namespace) -> int:
    """Print a campaign's state (a table, or JSON)."""
    from coron3_dask.dashboard.tables import status_table
    from coron3_dask.files.campaign_db import DB_NAME, CampaignDB

    with CampaignDB(args.output_root / DB_NAME, readonly=True) as db:
        snapshot = db.snapshot()
    print(json.dumps(snapshot, indent=2) if args.json else status_table(snapshot))
    return 0


def handle(args: argparse.Namespace) -> int:
    """Run a campaign (see the module notes for the exit status)."""
    from coron3_dask import files
    from coron3_dask.analysis.thumbnail import render_thumbnail
    from coron3_dask.campaign import Campaign, Settings
    from coron3_dask.cli.executors import ClusterExecutor, LocalExecutor
    from coron3_dask.dashboard.report import write_report
    from coron3_dask.dashboard.tables import status_table

    config = options.config_from(args)
    associations = files.records.find_associations(args.asn) if args.asn else []
    associations += files.read_list(args.list) if args.list else []
    if not associations:
        raise ConfigError("campaign: no associations given (pass ASN files, directories, globs or --list FILE)")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError("--max-concurrent must be at least 1")
    root = files.ensure_dir(args.output_root, "--output-root")
    settings = Settings(root, config, args.psfmask, args.crds_path, args.force, thumbnail=render_thumbnail)
    with schedulers.scheduler(args) as client, _dashboard(root, args.dashboard) as dashboard_url:
        timeout = args.no_worker_timeout if args.no_worker_timeout is not None else (0 if args.cluster else 900)
        executor = ClusterExecutor(client, no_worker_timeout=timeout) if client is not None else LocalExecutor()
        concurrent = args.max_concurrent
        if client is not None:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        elif (concurrent or 1) > 1:
            print(
                f"coron3-dask: --scheduler {args.scheduler} runs one association at a time (use a Dask cluster, "
                "e.g. the default local-threads, for --max-concurrent)",
                file=sys.stderr,
            )
            concurrent = 1
        campaign = Campaign(associations, settings, executor, max_concurrent=concurrent, retries=args.retries)
        print(
            f"Campaign: {len(campaign.associations)} associations, up to {campaign.max_concurrent} at once, "
            f"state in {root / 'campaign.sqlite'}",
            file=sys.stderr,
        )
        try:
            with _signals(campaign) as received, _progress_line(root, args.no_progress):
                result = campaign.run(
                    command=shlex.join(["coron3-dask", *sys.argv[1:]]),
                    cluster=str(getattr(args, "cluster", None) or args.scheduler_file or args.scheduler),
                    on_outcome=_report,
                    on_session=lambda db, session: db.update_session(session, dashboard=dashboard_url or None),
                )
        finally:
            executor.close()
            if campaign.stopping:  # the client's connection ends mid-conversation: its reconnection
                # attempts and closed-comm reports are expected then, not news
                for name in ("distributed.client", "distributed.batched"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
    from coron3_dask.files.campaign_db import CampaignDB

    with CampaignDB(result.database, readonly=True) as db:
        snapshot = db.snapshot()
    report = write_report(root)
    print(status_table(snapshot))
    print(f"Report: {report}\nState: {result.database}")
    if result.ending == "lost":
        print(
            f"coron3-dask: campaign stopped: {result.message}; rerun the same command against a running "
            "cluster to resume",
            file=sys.stderr,
        )
        return EXIT_LOST
    if result.ending == "incomplete":
        print(
            "coron3-dask: some associations were interrupted and are pending; rerun the same command", file=sys.stderr
        )
        return 1
    if result.ending == "stopped":
        print("coron3-dask: campaign stopped before the end; rerun the same command to resume", file=sys.stderr)
        return 128 + (received[-1] if received else signal.SIGINT)
    return 1 if snapshot["counts"]["failed"] else 0


def _report(outcome: Any) -> None:
    detail = outcome.error or f"{len(outcome.products)} products"
    print(
        f"{outcome.status:>7}  {outcome.product_name or outcome.asn}  ({outcome.wall_seconds:.1f} s) {detail}",
        file=sys.stderr,
    )


@contextlib.contextmanager
def _progress_line(root: Path, off: bool, interval: float = 1.0) -> Iterator[None]:
    """Redraw a campaign-wide progress line (counts, throughput, ETA) from the database."""
    import threading

    from coron3_dask.dashboard.tables import progress_line
    from coron3_dask.files.campaign_db import DB_NAME, CampaignDB

    stop = threading.Event()
    tty = sys.stderr.isatty()

    def draw() -> None:
        last, every = 0.0, interval if tty else 10 * interval
        while not stop.wait(interval):
            if not (root / DB_NAME).exists() or time.monotonic() - last < every:
                continue
            last = time.monotonic()
            with contextlib.suppress(Exception), CampaignDB(root / DB_NAME, readonly=True) as db:
                snapshot = db.snapshot()
                # a snapshot of N associations costs ~0.1 ms each: redraw less often for big campaigns
                every = max(every, snapshot["total"] / 1000 * interval)
                line = progress_line(snapshot)
                sys.stderr.write(f"\r\x1b[K{line}" if tty else f"{line}\n")
                sys.stderr.flush()

    thread = None if off else threading.Thread(target=draw, name="coron3-campaign-progress", daemon=True)
    if thread is not None:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread is not None:
            thread.join()
            if tty:
                sys.stderr.write("\n")


@contextlib.contextmanager
def _signals(campaign: Any) -> Iterator[list[int]]:
    """SIGINT/SIGTERM: the first stops submitting, the second cancels what is in flight."""
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        first = len(received) == 1
        if first:  # the flags first: a message that fails to print (a reentrant write) must not lose the stop
            campaign.request_stop()
        else:
            campaign.cancel()
        name = signal.Signals(signum).name
        message = (
            f"\ncoron3-dask: {name}: finishing the associations in flight, submitting no more (signal again to "
            "cancel them)\n"
            if first
            else f"\ncoron3-dask: {name}: cancelling the associations in flight\n"
        )
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), message.encode())

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _dashboard(root: Path, address: str | None) -> Iterator[str]:
    if not address:
        yield ""
        return
    from coron3_dask.dashboard.server import DashboardServer

    host, _, port = address.rpartition(":")
    try:
        server = DashboardServer(root, host=host or "127.0.0.1", port=int(port))
        server.start()
    except ValueError:
        raise ConfigError(f"--dashboard {address!r}: expected HOST:PORT") from None
    except OSError as exc:
        raise ConfigError(f"--dashboard {address}: cannot listen there: {exc.strerror or exc}") from None
    print(f"Campaign dashboard: {server.url}", file=sys.stderr)
    try:
        yield server.url
        time.sleep(_LINGER_S)  # an open page polls once more and shows the final state
    finally:
        server.stop()
    print(f"Campaign dashboard stopped; `coron3-dask dashboard {root}` serves it again", file=sys.stderr)
