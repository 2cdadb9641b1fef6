"""Test helpers shipped with the package (xarray-style): a scheduler that counts computes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import dask

__all__ = ["CountingScheduler", "RssSampler", "raise_if_dask_computes"]


class CountingScheduler:
    """A dask scheduler that counts how often it is called and fails past a limit.

    Parameters
    ----------
    max_computes : int
        Number of computes allowed before ``RuntimeError`` is raised.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Mapping[Any, Any], keys: Any, **kwargs: Any) -> Any:
        """Run the graph synchronously, counting the call."""
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"Too many computes: {self.total_computes} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Within the block, any dask compute beyond ``max_computes`` raises ``RuntimeError``."""
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


class RssSampler(threading.Thread):
    """Track the peak resident memory of this process and of every descendant process.

    Start it, run the work (e.g. a ``LocalCluster`` whose workers are child processes), stop
    it (or use it as a context manager); ``peaks`` maps pid to ``(command line tail, peak RSS
    in bytes)`` and ``peak`` is the peak of the summed RSS of the whole process tree.  Worker
    restarts show up as extra pids.

    Parameters
    ----------
    interval : float
        Seconds between samples.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.peak = 0
        self._stop_event = threading.Event()

    def sample(self) -> int:
        """Take one sample now; return the summed RSS (bytes) of the process tree."""
        import psutil

        me = psutil.Process()
        try:
            procs = [me, *me.children(recursive=True)]
        except psutil.Error:
            procs = [me]
        total = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                name = "client" if proc.pid == me.pid else " ".join(proc.cmdline())[-80:]
            except psutil.Error:
                continue
            total += rss
            old = self.peaks.get(proc.pid, (name, 0))
            self.peaks[proc.pid] = (old[0], max(old[1], rss))
        self.peak = max(self.peak, total)
        return total

    def run(self) -> None:
        """Sample until stopped."""
        self.sample()
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        """Stop sampling (after a last sample) and wait for the thread."""
        self._stop_event.set()
        self.join()
        self.sample()

    def __enter__(self) -> RssSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def worker_peaks(self) -> list[int]:
        """Peak RSS (bytes) of each dask worker process seen (spawned multiprocessing children)."""
        return sorted(peak for name, peak in self.peaks.values() if "spawn_main" in name)
