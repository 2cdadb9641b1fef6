"""Scheduler choice for the CLI: ``--scheduler`` / ``--scheduler-file`` and the distributed compute.

Part of the ``cli`` layer, the only one that chooses a scheduler or imports ``distributed``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from coron3_dask.cli import clusters, security
from coron3_dask.config import ConfigError
from coron3_dask.progress import StageBoard, stage_of

__all__ = ["SCHEDULERS", "check_scheduler", "distributed_compute", "scheduler", "scheduler_args"]

SCHEDULERS = ("local-threads", "local", "threads", "processes", "synchronous")
#: distributed settings for the in-process cluster: per-task bookkeeping (the statistical
#: profiler, work stealing between workers) costs about a millisecond of GIL time
#: per task, and one worker has nobody to steal from
_IN_PROCESS = {
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.work-stealing": False,
    # the dashboard listens on loopback only: link to it there (the default names the host's address)
    "distributed.dashboard.link": "http://127.0.0.1:{port}/status",
}
_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def scheduler_args(parser: argparse.ArgumentParser) -> None:
    """Add the execution options (scheduler, workers, progress) to a sub-command's parser."""
    group = parser.add_argument_group("execution")
    group.add_argument(
        "--scheduler",
        default="local-threads",
        metavar="SPEC",
        help=(
            "local-threads (default: a Dask cluster in this process, threads sharing memory, with the "
            "dashboard), local (LocalCluster of worker processes), threads, processes, synchronous, "
            "or tcp://host:port"
        ),
    )
    group.add_argument("--scheduler-file", type=Path, help="connect to the cluster described by this file")
    group.add_argument(
        "--workers",
        type=int,
        help=(
            "local: worker processes (default: cores); local-threads: threads (default: cores + 1); "
            "--cluster: Dask workers, as jobs of the configured processes each (default: one job)"
        ),
    )
    group.add_argument(
        "--threads-per-worker", type=int, default=1, help="local: threads per worker process (default 1)"
    )
    group.add_argument("--memory-limit", default="auto", help="local: memory limit per worker (default auto)")
    group.add_argument("--performance-report", type=Path, help="save Dask's performance report (HTML)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    security.tls_args(group)
    clusters.cluster_args(group)


@contextlib.contextmanager
def scheduler(args: argparse.Namespace) -> Iterator[Any]:
    """Enter the requested scheduler; yield the distributed Client, or None for local ones."""
    spec = args.scheduler
    if getattr(args, "cluster", None):
        from distributed import Client, performance_report

        with clusters.start_cluster(args) as cluster, Client(cluster) as client:
            clusters.wait_for_workers(client, cluster, args)
            report = args.performance_report
            with performance_report(filename=str(report)) if report else contextlib.nullcontext():
                yield client
        return
    if args.scheduler_file or spec.startswith(("tcp://", "tls://", "ucx://")) or spec in ("local", "local-threads"):
        from distributed import Client, LocalCluster, performance_report

        with contextlib.ExitStack() as stack:
            tls = security.client_security(args)
            if tls is not None and (spec in ("local", "local-threads") and not args.scheduler_file):
                raise ConfigError(
                    "--tls-* options are for connecting to a cluster (tls://host:port or --scheduler-file)"
                )
            if args.scheduler_file:
                client = stack.enter_context(Client(scheduler_file=str(args.scheduler_file), security=tls))
            elif spec == "local-threads":
                client = stack.enter_context(Client(_in_process_cluster(stack, args.workers)))
            elif spec == "local":
                n = args.workers or os.cpu_count() or 1
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=n,
                        threads_per_worker=args.threads_per_worker,
                        memory_limit=args.memory_limit,
                        processes=True,
                        dashboard_address="127.0.0.1:0",
                        host="127.0.0.1",
                    )
                )
                client = stack.enter_context(Client(cluster))
            else:
                client = stack.enter_context(Client(spec, security=tls))
            if args.performance_report:
                stack.enter_context(performance_report(filename=str(args.performance_report)))
            yield client
        return
    if args.performance_report:
        raise ConfigError(
            "--performance-report needs a distributed scheduler (local-threads, local, tcp://... or --scheduler-file)"
        )
    import dask

    # BLAS pinned to one thread per dask thread (distributed's nanny does the same for its
    # workers): no oversubscription, and results independent of the scheduler chosen
    os.environ.update({name: "1" for name in _BLAS_ENV})  # inherited by 'processes' workers
    with dask.config.set(scheduler=spec, num_workers=args.workers), threadpool_limits(1):
        yield None


def _in_process_cluster(stack: contextlib.ExitStack, threads: int | None) -> Any:
    """Start a one-worker LocalCluster in this process: tasks share memory, no block is copied.

    BLAS is pinned to one thread per Dask thread for the cluster's lifetime, as distributed's
    nanny does for worker processes.
    """
    import dask
    from distributed import LocalCluster

    stack.enter_context(dask.config.set(_IN_PROCESS))
    stack.enter_context(threadpool_limits(1))
    return stack.enter_context(
        LocalCluster(
            n_workers=1,
            # one thread more than cores: while a thread waits for the event loop to hand it its
            # next task, the extra one keeps the cores busy (measured: 5-8 % faster than cores)
            threads_per_worker=threads or (os.cpu_count() or 1) + 1,
            processes=False,
            dashboard_address="127.0.0.1:0",
        )
    )


def check_scheduler(args: argparse.Namespace) -> None:
    """Refuse an unknown ``--scheduler``, a missing ``--scheduler-file`` or bad ``--cluster`` options early."""
    clusters.check_cluster(args)
    if args.scheduler_file and not args.scheduler_file.is_file():
        raise ConfigError(
            f"--scheduler-file {args.scheduler_file} not found (start `dask scheduler --scheduler-file` first, "
            "on a filesystem this machine sees)"
        )
    spec = args.scheduler
    if not (args.scheduler_file or spec in SCHEDULERS or spec.startswith(("tcp://", "tls://", "ucx://"))):
        raise ConfigError(
            f"unknown scheduler {spec!r}: use local-threads, local, threads, processes, synchronous or tcp://host:port"
        )


#: seconds between progress-bar updates from the scheduler
_BAR_INTERVAL = 0.25


def distributed_compute(client: Any, board: StageBoard | None) -> Callable[..., Sequence[Any]]:
    """Submit the graph to the cluster (no client-side gathering of pixels), with progress."""
    import threading

    from distributed.diagnostics.progressbar import MultiProgressBar

    stopped = threading.Event()

    class _Bar(MultiProgressBar):
        def _draw_bar(self, remaining: dict[str, int], all: dict[str, int], **kwargs: Any) -> None:
            if board is not None:
                board.update(all, remaining)
                board.draw()

        def _draw_stop(self, **kwargs: Any) -> None:
            if board is not None and not stopped.is_set():
                stopped.set()
                board.draw(final=True)

    def compute(*collections: Any) -> Sequence[Any]:
        futures = client.compute(list(collections), optimize_graph=False)
        if board is not None:
            bar = _Bar(futures, client.scheduler.address, group_by=stage_of, complete=True, interval=_BAR_INTERVAL)
            client.loop.add_callback(bar.listen)
        try:
            results = list(client.gather(futures))
        except BaseException:
            from coron3_dask.cli.executors import release

            release(futures)  # the run is failing: its queued work is dropped
            raise
        if board is not None and not stopped.wait(1.0):
            # every task is done; the bar's last update may not have arrived before the (in-process)
            # scheduler closes: draw the final line from what is known
            stopped.set()
            board.update(board.all, {})
            board.draw(final=True)
            comm = getattr(bar, "comm", None)
            if comm is not None:
                client.loop.add_callback(comm.close)
        if board is not None:  # the scheduler's feed of the bar ends at its next tick (a closing in-process
            time.sleep(_BAR_INTERVAL + 0.05)  # cluster would cancel it mid-sleep and log a CancelledError)
        return results

    return compute
