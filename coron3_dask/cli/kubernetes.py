"""A Dask cluster on Kubernetes through the Dask Kubernetes operator (``--cluster kubernetes``).

The cluster is described by Dask configuration, as dask-kubernetes itself is configured: the
``kubernetes`` section holds dask-kubernetes's own keys (``name``, ``image``, ``count.start``,
``resources``, ``env``, ``worker-command``, ``scheduler-service-type``), and the
``coron3-dask.kubernetes`` section what ``make_cluster_spec`` cannot express (the scheduler's
command and resources, the pods' security context, the workers' volumes and mounts).
``deploy/kubernetes/dask-kubernetes.yaml`` is that configuration; ``deploy/kubernetes/daskcluster.yaml``
is the spec it yields, written out for ``kubectl apply``.

dask-kubernetes is an optional dependency (``pip install 'coron3_dask[kubernetes]'``), imported
only when a spec is built or a cluster started.
"""

from __future__ import annotations

import argparse
import copy
import getpass
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coron3_dask.config import ConfigError

__all__ = ["cluster_spec", "parse_adapt", "read_config", "start_cluster"]

#: dask-kubernetes's default image: it lacks coron3_dask, so workers could not run our tasks
_DEFAULT_IMAGE = "ghcr.io/dask/dask:latest"
_INSTALL = "pip install 'coron3_dask[kubernetes]'"


def _operator() -> Any:
    """Import ``dask_kubernetes.operator`` or say in one line how to install it."""
    try:
        import dask_kubernetes.operator as operator
    except ImportError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--cluster kubernetes needs dask-kubernetes: {_INSTALL} ({reason})") from None
    return operator


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Dask configuration file (YAML), e.g. ``deploy/kubernetes/dask-kubernetes.yaml``.

    Parameters
    ----------
    path : str or os.PathLike
        The YAML file.

    Returns
    -------
    dict
        Its configuration, keys as written (``dask.config.collect``, without environment variables).
    """
    import dask.config

    if not Path(path).is_file():
        raise ConfigError(f"Dask configuration {path} not found")
    config: dict[str, Any] = dask.config.collect(paths=[str(path)], env={})
    return config


def _get(key: str, config: dict[str, Any], default: Any = None) -> Any:
    import dask.config

    return copy.deepcopy(dask.config.get(key, default, config=config))


def cluster_spec(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the ``DaskCluster`` resource for coron3_dask from Dask configuration.

    Parameters
    ----------
    config : dict, optional
        Dask configuration with a ``kubernetes`` section (dask-kubernetes's keys) and an optional
        ``coron3-dask.kubernetes`` section, e.g. :func:`read_config` of
        ``deploy/kubernetes/dask-kubernetes.yaml``. It is merged over dask-kubernetes's defaults.
        Default: the current Dask configuration (``~/.config/dask/``, ``/etc/dask/``,
        ``DASK_CONFIG``, ``DASK_KUBERNETES__...`` variables).

    Returns
    -------
    dict
        A ``kubernetes.dask.org/v1`` ``DaskCluster``: ``make_cluster_spec(name, image, n_workers,
        resources, env, worker_command, scheduler_service_type)``, then the scheduler's command and
        resources, the pods' security context and the workers' volumes and mounts.

    Raises
    ------
    ConfigError
        dask-kubernetes is not installed, or the image is dask-kubernetes's default (which lacks
        coron3_dask: the configuration was not loaded).
    """
    import dask.config

    operator = _operator()  # registers dask-kubernetes's defaults in dask.config
    merged = dask.config.merge(dask.config.config, config or {})
    image = _get("kubernetes.image", merged)
    if image == _DEFAULT_IMAGE:
        raise ConfigError(
            f"kubernetes.image is dask-kubernetes's default {image}, which lacks coron3_dask: load "
            "deploy/kubernetes/dask-kubernetes.yaml (--cluster-config, a copy in ~/.config/dask/, or DASK_CONFIG) "
            "or set DASK_KUBERNETES__IMAGE"
        )
    name = str(_get("kubernetes.name", merged)).format(user=getpass.getuser(), uuid=uuid.uuid4().hex[:10])
    spec: dict[str, Any] = operator.make_cluster_spec(
        name=name,
        image=image,
        n_workers=_get("kubernetes.count.start", merged),
        resources=_get("kubernetes.resources", merged),
        env=_get("kubernetes.env", merged),
        worker_command=_get("kubernetes.worker-command", merged),
        scheduler_service_type=_get("kubernetes.scheduler-service-type", merged),
    )
    ours: dict[str, Any] = _get("coron3-dask.kubernetes", merged, {})
    scheduler_pod, worker_pod = spec["spec"]["scheduler"]["spec"], spec["spec"]["worker"]["spec"]
    scheduler, worker = scheduler_pod["containers"][0], worker_pod["containers"][0]
    if "scheduler-command" in ours:  # replaces make_cluster_spec's "dask-scheduler"
        scheduler["args"] = ours["scheduler-command"].split() + scheduler["args"][1:]
    if "scheduler-resources" in ours:
        scheduler["resources"] = ours["scheduler-resources"]
    if "security-context" in ours:
        scheduler_pod["securityContext"] = ours["security-context"]
        worker_pod["securityContext"] = copy.deepcopy(ours["security-context"])
    if "worker-volumes" in ours:
        worker_pod["volumes"] = ours["worker-volumes"]
    if "worker-volume-mounts" in ours:
        worker["volumeMounts"] = ours["worker-volume-mounts"]
    return spec


def parse_adapt(spec: str) -> tuple[int, int]:
    """Parse ``--adapt MIN:MAX`` into worker counts.

    Parameters
    ----------
    spec : str
        ``"MIN:MAX"``, e.g. ``"2:32"``.

    Returns
    -------
    tuple of int
        ``(minimum, maximum)``.

    Examples
    --------
    >>> parse_adapt("2:32")
    (2, 32)
    """
    low, sep, high = spec.partition(":")
    if sep and low.strip().isdigit() and high.strip().isdigit() and int(low) <= int(high):
        return int(low), int(high)
    raise ConfigError(f"--adapt {spec!r}: expected MIN:MAX worker counts with MIN <= MAX, e.g. 2:32")


def _bounds(adapt: Sequence[int] | None) -> tuple[int, int] | None:
    """``--adapt`` already parsed by the command line (``(MIN, MAX)``), checked."""
    if not adapt:
        return None
    low, high = adapt
    if not 0 <= low <= high:
        raise ConfigError(f"--adapt {low}:{high}: expected MIN:MAX worker counts with 0 <= MIN <= MAX")
    return int(low), int(high)


def start_cluster(args: argparse.Namespace) -> Any:
    """Start (or connect to) the configured ``DaskCluster`` and size it from the command line.

    Parameters
    ----------
    args : argparse.Namespace
        ``args.workers`` (int or None): a fixed number of workers; ``args.adapt`` (``"MIN:MAX"``, the
        parsed ``(MIN, MAX)``, or None): let the operator's autoscaler keep between MIN and MAX
        workers (takes precedence).
        Neither: the configuration's ``kubernetes.count.start``.

    Returns
    -------
    dask_kubernetes.operator.KubeCluster
        The cluster; use it as a context manager (closing it deletes the ``DaskCluster`` when
        ``kubernetes.shutdown-on-close`` is true, dask-kubernetes's default).

    Raises
    ------
    ConfigError
        dask-kubernetes is not installed, the configuration is not loaded, or ``--adapt`` is malformed.
    """
    adapt = getattr(args, "adapt", None)
    bounds = parse_adapt(adapt) if isinstance(adapt, str) else _bounds(adapt)
    operator = _operator()
    cluster = operator.KubeCluster(custom_cluster_spec=cluster_spec())
    if bounds is not None:
        cluster.adapt(minimum=bounds[0], maximum=bounds[1])
    elif getattr(args, "workers", None):
        cluster.scale(args.workers)
    return cluster
