"""Test helpers shipped with the package (xarray-style): a scheduler that counts computes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import dask

__all__ = ["CountingScheduler", "raise_if_dask_computes"]


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
