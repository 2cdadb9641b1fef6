"""``--cluster slurm|pbs|kubernetes``: Dask workers as batch jobs (dask-jobqueue) or pods.

Part of the ``cli`` layer.  The batch settings are Dask configuration, read the Dask way: the
``jobqueue.slurm`` / ``jobqueue.pbs`` sections of the user's Dask config (e.g.
``~/.config/dask/jobqueue.yaml``), or of ``--cluster-config FILE`` (``deploy/hpc/jobqueue.yaml``
is an example), with single keys overridden by ``--cluster-option KEY=VALUE``.  The Dask scheduler
runs in this process; the workers are jobs that connect back to it, so this process must run
where jobs may be submitted and be reachable from the compute nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from coron3_dask.config import ConfigError

__all__ = [
    "CLUSTERS",
    "check_cluster",
    "cluster_args",
    "load_config",
    "parse_adapt",
    "parse_option",
    "start_cluster",
    "wait_for_workers",
]

CLUSTERS = ("slurm", "pbs", "kubernetes")
#: dask-jobqueue's cluster class for each batch system
_JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}
#: config keys whose keyword argument has another name
_KEYWORDS = {"name": "job_name"}
#: how long to wait for the first worker job to connect before saying so (it keeps waiting)
_PATIENCE_S = 60.0


def cluster_args(group: argparse._ArgumentGroup) -> None:
    """Add ``--cluster``, ``--adapt``, ``--cluster-config`` and ``--cluster-option`` to an argument group."""
    group.add_argument(
        "--cluster",
        choices=CLUSTERS,
        help=(
            "start the Dask workers as SLURM or PBS jobs (dask-jobqueue) or Kubernetes pods, with the scheduler "
            "in this process: --workers N of them, or --adapt MIN:MAX"
        ),
    )
    group.add_argument(
        "--adapt",
        type=parse_adapt,
        metavar="MIN:MAX",
        help="--cluster: scale the workers between MIN and MAX with the load (instead of --workers)",
    )
    group.add_argument(
        "--cluster-config",
        type=Path,
        metavar="FILE",
        help="--cluster: Dask config YAML with jobqueue.slurm / jobqueue.pbs sections (default: your Dask config)",
    )
    group.add_argument(
        "--cluster-option",
        type=parse_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--cluster: override one key of the cluster's section (repeatable), e.g. queue=debug walltime=00:30:00",
    )


def parse_adapt(text: str) -> tuple[int, int]:
    """Parse ``--adapt MIN:MAX`` into two worker counts.

    Examples
    --------
    >>> parse_adapt("0:8")
    (0, 8)
    """
    low, sep, high = text.partition(":")
    try:
        bounds = int(low), int(high)
    except ValueError:
        bounds = -1, -1
    if not sep or bounds[0] < 0 or bounds[1] < max(bounds[0], 1):
        raise argparse.ArgumentTypeError(f"expected MIN:MAX with 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return bounds


def parse_option(text: str) -> tuple[str, Any]:
    """Parse ``--cluster-option KEY=VALUE``: the key as a keyword (``-`` becomes ``_``), the value as YAML.

    Keys are those of the config section; its ``name`` (the job name) is the keyword ``job_name``.
    A value with a colon stays a string (YAML 1.1 would read ``00:30:00`` as a number of seconds).

    Examples
    --------
    >>> parse_option("walltime=00:30:00")
    ('walltime', '00:30:00')
    >>> parse_option("job-extra-directives=[--exclusive]")
    ('job_extra_directives', ['--exclusive'])
    >>> parse_option("cores=4")
    ('cores', 4)
    >>> parse_option("name=coron3-worker")
    ('job_name', 'coron3-worker')
    """
    key, sep, raw = text.partition("=")
    key = _KEYWORDS.get(key.strip(), key.strip().replace("-", "_"))
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML ({exc})") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and ":" in raw:
        value = raw.strip()
    return key, value


def load_config(path: Path) -> dict[str, Any]:
    """Read a Dask config YAML file as dotted keys for ``dask.config.set`` (leaves only: defaults stay).

    ``{"jobqueue": {"slurm": {"cores": 2}}}`` becomes ``{"jobqueue.slurm.cores": 2}``, so that a
    file naming a few keys changes those keys and keeps every other default of the section.
    """
    import dask.config

    try:  # Dask's own reader: the file is read as ``dask`` reads ~/.config/dask/*.yaml
        found = list(dask.config.collect_yaml([str(path)]))
    except ValueError as exc:  # malformed: the message names the file; one line of it
        raise ConfigError(f"--cluster-config {path}: {' '.join(str(exc).split())}") from None
    if not found:
        raise ConfigError(f"--cluster-config {path}: not found or not readable")
    data = found[0] or {}
    return dict(_flatten(data))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:  # an empty mapping is a value: {} clears the key
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def check_cluster(args: argparse.Namespace) -> None:
    """Refuse inconsistent ``--cluster`` options before any work starts."""
    cluster = getattr(args, "cluster", None)
    if cluster is None:
        used = [flag for flag, value in (("--adapt", args.adapt), ("--cluster-config", args.cluster_config),
                                         ("--cluster-option", args.cluster_option)) if value]  # fmt: skip
        if used:
            raise ConfigError(f"{', '.join(used)} need --cluster slurm|pbs|kubernetes")
        return
    if args.scheduler_file or args.scheduler != "local-threads":
        raise ConfigError("--cluster starts its own scheduler: it does not go with --scheduler or --scheduler-file")
    if args.adapt and args.workers is not None:
        raise ConfigError("--cluster: give --workers N (a fixed number) or --adapt MIN:MAX, not both")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.cluster_config and not args.cluster_config.is_file():
        raise ConfigError(f"--cluster-config {args.cluster_config} not found")


@contextlib.contextmanager
def start_cluster(args: argparse.Namespace) -> Iterator[Any]:
    """Start the ``--cluster`` and scale it; yield it, and close it (cancelling its jobs) on exit.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: ``cluster``, ``workers``, ``adapt``, ``cluster_config``,
        ``cluster_option``.

    Yields
    ------
    distributed.deploy.Cluster
        A dask-jobqueue ``SLURMCluster``/``PBSCluster`` or a dask-kubernetes ``KubeCluster``,
        already asked for ``--workers`` (default: one job) or adapting between ``--adapt`` bounds.
    """
    import dask

    with contextlib.ExitStack() as stack:
        if args.cluster_config:
            stack.enter_context(dask.config.set(load_config(args.cluster_config)))
        if args.cluster == "kubernetes":  # written beside this module; imported only when asked for
            kubernetes = importlib.import_module("coron3_dask.cli.kubernetes")
            cluster = stack.enter_context(kubernetes.start_cluster(args))
        else:
            cls = getattr(_jobqueue(args.cluster), _JOBQUEUE[args.cluster])
            cluster = stack.enter_context(cls(**dict(args.cluster_option)))
        if args.adapt:
            cluster.adapt(minimum=args.adapt[0], maximum=args.adapt[1])
        elif args.cluster == "kubernetes" or args.workers:
            cluster.scale(args.workers or 1)
        else:
            cluster.scale(jobs=1)
        print(f"{args.cluster}: {_describe(cluster, args)}; dashboard {cluster.dashboard_link}", file=sys.stderr)
        yield cluster


def wait_for_workers(client: Any, cluster: Any, args: argparse.Namespace) -> float:
    """Wait until the first workers asked for are connected; print the jobs and how long it took.

    Returns the seconds from submission to connection (0 for ``--adapt 0:MAX``: nothing to wait for).
    A batch queue may hold the jobs for a long time: the wait is unbounded, with a line every minute.
    """
    want = args.adapt[0] if args.adapt else args.workers or _workers_per_job(cluster)
    start = time.monotonic()
    while want:
        try:
            client.wait_for_workers(want, timeout=_PATIENCE_S)
            break
        except TimeoutError:
            print(f"{args.cluster}: still waiting for {want} worker(s) ({_jobs(cluster)})", file=sys.stderr)
    seconds = time.monotonic() - start
    if want:
        print(f"{args.cluster}: {want} worker(s) connected after {seconds:.1f} s ({_jobs(cluster)})", file=sys.stderr)
    return seconds


def _jobqueue(kind: str) -> Any:
    try:
        return importlib.import_module("dask_jobqueue")
    except ImportError:
        raise ConfigError(f"--cluster {kind} needs dask-jobqueue: pip install 'coron3_dask[{kind}]'") from None


def _workers_per_job(cluster: Any) -> int:
    """Worker processes in one batch job (1 for a Kubernetes cluster)."""
    job = getattr(cluster, "_dummy_job", None)
    return max(1, int(getattr(job, "worker_processes", 1) or 1))


def _jobs(cluster: Any) -> str:
    """Name the job ids (batch systems) or worker names of the cluster, for a line on the terminal."""
    ids = [str(getattr(w, "job_id", None) or name) for name, w in getattr(cluster, "workers", {}).items()]
    return f"jobs {', '.join(ids)}" if ids else "no jobs yet"


def _describe(cluster: Any, args: argparse.Namespace) -> str:
    if args.adapt:
        size = f"adapting between {args.adapt[0]} and {args.adapt[1]} workers"
    else:
        size = f"asked for {args.workers} worker(s)" if args.workers else "asked for one job"
    name = getattr(getattr(cluster, "_dummy_job", None), "job_name", None)
    return size + (f" (job name {name})" if name else "")
