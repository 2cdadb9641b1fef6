"""Where a campaign's graphs run: a distributed cluster (concurrent) or a local scheduler (serial).

Both give :class:`coron3_dask.campaign.runner.Campaign` the same small interface:
``compute(collections, label)`` (blocking, thread-safe; returns the results and the time each
worker spent on the graph), ``progress(label)``, ``cancel()``, ``lost()`` and ``slots``.
Part of the ``cli`` layer, the only one that imports ``distributed``.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import CancelledError
from typing import Any

import dask
from dask.callbacks import Callback

from coron3_dask.progress import STAGES, stage_of

__all__ = ["ClusterExecutor", "LocalExecutor", "current_step", "release"]

#: (worker, first start, last stop, task-seconds) per worker that ran part of a graph
Span = tuple[str, float, float, float]
_POLL_S = 1.0
_WAIT_S = 0.2


def release(futures: Sequence[Any]) -> None:
    """Drop a failed or cancelled graph's futures: the scheduler forgets its queued tasks.

    Used instead of ``Client.cancel``: cancelling futures of which one depends on another (a
    write task on a fitted-shift task) trips an assertion in distributed 2026.8's scheduler
    (``stimulus_cancel``: ``assert ts.who_wants`` on a dependent it has just cancelled), which
    then drops the client's connection.  Tasks already running finish either way.
    """
    for future in futures:
        future.release()


def _graph_keys(collections: Sequence[Any]) -> set[Any]:
    keys: set[Any] = set()
    for c in collections:
        keys.update(c.__dask_graph__().keys())
    return keys


def current_step(total: Counter[str], done: Counter[str]) -> str:
    """Name the step an association is in: the first pipeline step (reads aside) with tasks left.

    Examples
    --------
    >>> current_step(Counter(read=2, klip=3, write=4), Counter(read=2, klip=1))
    'klip'
    >>> current_step(Counter(read=2, write=1), Counter(read=2, write=1))
    'write'
    """
    order = [s for s in STAGES if s != "read"] + ["read", "other"]
    left = [s for s in order if total[s] > done[s]]
    return left[0] if left else "write"


class _Tally:
    """One graph's bookkeeping: step of each key, tasks per step, per-worker time spans."""

    def __init__(self, keys: set[Any]) -> None:
        self.steps = {k: stage_of(k) for k in keys}
        self.total = Counter(self.steps.values())
        self.done: Counter[str] = Counter()
        self.workers: dict[str, list[float]] = {}

    def record(self, key: Any, worker: str, start: float, stop: float, seconds: float) -> None:
        self.done[self.steps[key]] += 1
        span = self.workers.setdefault(worker, [start, stop, 0.0])
        span[0], span[1], span[2] = min(span[0], start), max(span[1], stop), span[2] + seconds

    def spans(self) -> list[Span]:
        return [(w, s[0], s[1], round(s[2], 4)) for w, s in sorted(self.workers.items())]

    def progress(self) -> tuple[str, int, int]:
        return current_step(self.total, self.done), sum(self.done.values()), sum(self.total.values())


def _task_stream_since(
    cursor: int, dask_scheduler: Any = None
) -> tuple[int, list[tuple[Any, str, float, float, float]], int]:
    """Task-stream records after ``cursor`` and the number of workers (run on the scheduler, read atomically)."""
    plugin = dask_scheduler._task_stream_plugin()
    first = plugin.index - len(plugin.buffer)
    out = []
    for rec in itertools.islice(plugin.buffer, max(0, cursor - first), None):
        computes = [s for s in rec["startstops"] if s["action"] == "compute"]
        if computes:
            start, stop = min(s["start"] for s in computes), max(s["stop"] for s in computes)
            out.append(
                (rec["key"], str(rec.get("worker", "?")), start, stop, sum(s["stop"] - s["start"] for s in computes))
            )
    return plugin.index, out, len(dask_scheduler.workers)


class ClusterExecutor:
    """Graphs submitted as futures to a distributed cluster, several associations at once.

    A background thread reads the scheduler's task stream once a second and attributes each
    finished task to its association (by key), giving live per-association progress and, at
    the end, the time each worker spent on it.

    Parameters
    ----------
    client : distributed.Client
        Connected client.
    no_worker_timeout : float, optional
        Seconds without any worker after which the cluster counts as lost (None: wait for ever, as
        for batch-queue clusters whose jobs may wait in the queue).
    """

    def __init__(self, client: Any, no_worker_timeout: float | None = None) -> None:
        self.client = client
        self.no_worker_timeout = no_worker_timeout
        self._no_workers_since: float | None = None
        self._address = str(client.scheduler.address)  # client.scheduler is None once the client closes
        self._tallies: dict[str, _Tally] = {}
        self._owner: dict[Any, str] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._cursor = self.client.run_on_scheduler(_task_stream_since, 1 << 62)[0]
        self._poll()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="coron3-task-stream", daemon=True)
        self._thread.start()

    @property
    def slots(self) -> int:
        """Default associations in flight: one per worker plus one, at least two."""
        return max(2, len(self.client.scheduler_info(n_workers=-1).get("workers", {})) + 1)

    @property
    def dashboard_link(self) -> str:
        """The Dask dashboard's URL."""
        return str(self.client.dashboard_link)

    def compute(self, collections: Sequence[Any], label: str) -> tuple[list[Any], list[Span]]:
        """Submit one association's collections as futures; wait for them; return results and spans."""
        if self._cancelled.is_set():  # an association that reaches its compute after the cancel
            raise CancelledError(f"{label}: the campaign was cancelled")
        tally = _Tally(_graph_keys(collections))
        with self._lock:
            self._tallies[label] = tally
            self._owner.update(dict.fromkeys(tally.steps, label))
        try:
            futures = self.client.compute(list(collections), optimize_graph=False)
            try:
                self._wait(futures, label)
                results = list(self.client.gather(futures))
            except BaseException:
                release(futures)
                raise
            with contextlib.suppress(Exception):  # the last tasks' records: only statistics are at stake
                self._poll()
            return results, tally.spans()
        finally:
            with self._lock:
                self._tallies.pop(label, None)
                for key in tally.steps:
                    self._owner.pop(key, None)

    def _wait(self, futures: list[Any], label: str) -> None:
        """Wait for every future; raise CancelledError as soon as the campaign is cancelled."""
        from distributed import wait

        while True:
            if self._cancelled.is_set():
                raise CancelledError(f"{label}: the campaign was cancelled")
            lost = self.lost()
            if lost:
                raise CancelledError(f"{label}: {lost}")
            try:
                wait(futures, timeout=_WAIT_S)
                return
            except TimeoutError:
                continue

    def progress(self, label: str) -> tuple[str, int, int] | None:
        """Return ``(current step, tasks done, tasks total)`` of a graph in flight, else None."""
        with self._lock:
            tally = self._tallies.get(label)
            return tally.progress() if tally else None

    def cancel(self) -> None:
        """Cancel every graph in flight and refuse new ones (their ``compute`` calls raise CancelledError).

        Each waiting ``compute`` releases its own futures (see :func:`release`).
        """
        self._cancelled.set()

    def lost(self) -> str | None:
        """Why the cluster can no longer be used (scheduler gone), or None while it is fine."""
        status = self.client.status
        if status not in ("running", "newly-created"):
            return f"lost the connection to the Dask scheduler {self._address} (client {status})"
        since, timeout = self._no_workers_since, self.no_worker_timeout
        if since is not None and timeout and time.monotonic() - since > timeout:
            return f"no Dask worker has been connected to {self._address} for {timeout:g} s"
        return None

    def close(self) -> None:
        """Stop the task-stream reader."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll_loop(self) -> None:
        while not self._stop.wait(_POLL_S):
            if self.lost() is None:
                try:
                    self._poll()
                except Exception:  # noqa: BLE001 - a missed poll only delays progress; the final poll is checked
                    pass

    def _poll(self) -> None:
        with self._poll_lock:
            index, records, workers = self.client.run_on_scheduler(_task_stream_since, self._cursor)
            self._cursor = index
            if workers:
                self._no_workers_since = None
            elif self._no_workers_since is None:
                self._no_workers_since = time.monotonic()
            with self._lock:
                for key, worker, start, stop, seconds in records:
                    label = self._owner.get(key)
                    if label is not None:
                        self._tallies[label].record(key, worker, start, stop, seconds)


class _Timing(Callback):
    """Per-task timings on a local scheduler."""

    def __init__(self, tally: _Tally, worker: str) -> None:
        super().__init__()
        self.tally, self.worker = tally, worker
        self.started: dict[Any, float] = {}

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        self.started[key] = time.time()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        start, stop = self.started.pop(key, time.time()), time.time()
        if key in self.tally.steps:
            self.tally.record(key, f"{self.worker}/{worker_id}", start, stop, stop - start)


class LocalExecutor:
    """Graphs run one association at a time on a local scheduler (threads, processes, synchronous)."""

    slots = 1
    dashboard_link = ""

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}
        self._cancelled = threading.Event()
        self._name = f"{socket.gethostname()}:{dask.config.get('scheduler', 'threads')}"

    def compute(self, collections: Sequence[Any], label: str) -> tuple[list[Any], list[Span]]:
        """Compute one association's collections in this process; return results and spans."""
        if self._cancelled.is_set():
            raise CancelledError(f"{label}: the campaign was cancelled")
        tally = self._tallies[label] = _Tally(_graph_keys(collections))
        try:
            with _Timing(tally, self._name):
                results = list(dask.compute(*collections, optimize_graph=False))
            return results, tally.spans()
        finally:
            self._tallies.pop(label, None)

    def progress(self, label: str) -> tuple[str, int, int] | None:
        """Return ``(current step, tasks done, tasks total)`` of the graph in flight, else None."""
        tally = self._tallies.get(label)
        return tally.progress() if tally else None

    def cancel(self) -> None:
        """Refuse new graphs; a local scheduler cannot be interrupted: the running association finishes."""
        self._cancelled.set()

    def lost(self) -> str | None:
        """Return None: a local scheduler is never lost."""
        return None

    def close(self) -> None:
        """Nothing to stop."""
