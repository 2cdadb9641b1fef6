"""usable: per-integration counts of usable pixels, the input to the run's no-garbage guard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from coron3_dask import schema
from coron3_dask.kernels import usable as kernel

__all__ = ["UsableCheck", "after_guard", "count_usable", "usable_check", "usable_guard"]


def _count_block(sci: np.ndarray, dq: np.ndarray, weights: np.ndarray, *, bad_bits: int) -> np.ndarray:
    """Kernel call on a block with any leading (loop) dimensions."""
    frame = sci.shape[-2:]
    flat_sci, flat_dq, mask = sci.reshape(-1, *frame), dq.reshape(-1, *frame), weights.reshape(frame)
    counts = kernel.count_usable(flat_sci, flat_dq, bad_bits=bad_bits, weights=mask)
    return counts.reshape(sci.shape[:-2])


def count_usable(cube: xr.Dataset, *, bad_bits: int, weights: xr.DataArray | None = None) -> xr.DataArray:
    """Count each frame's usable pixels: finite ``sci``, no ``bad_bits`` in ``dq``, positive weight.

    Parameters
    ----------
    cube : xr.Dataset
        ``sci`` (float32) and ``dq`` (uint32) on ``(integration|ref, y, x)``.
    bad_bits : int
        DQ bits that make a pixel unusable.
    weights : xr.DataArray, (y, x), optional
        Weight map (the PSFMASK); only pixels with a positive weight count.

    Returns
    -------
    xr.DataArray
        int64 on the cube's leading dimension, lazy; one task per chunk.
    """
    frame = list(schema.FRAME_DIMS)
    ny, nx = (cube.sizes[d] for d in frame)
    mask = weights if weights is not None else xr.DataArray(np.ones((ny, nx), np.float32), dims=frame)
    whole = {d: -1 for d in frame}
    return xr.apply_ufunc(
        _count_block,
        cube["sci"].reset_coords(drop=True).chunk(whole),
        cube["dq"].reset_coords(drop=True).chunk(whole),
        mask.reset_coords(drop=True).chunk(whole),
        input_core_dims=[frame, frame, frame],
        kwargs={"bad_bits": bad_bits},
        dask="parallelized",
        output_dtypes=[np.int64],
    )


def _join_counts(*blocks: np.ndarray) -> np.ndarray:
    """Task: one group's per-chunk counts as one array (named for the progress map, not "concatenate")."""
    return np.concatenate(blocks)


@dataclass(frozen=True)
class UsableCheck:
    """One group's lazy usable-pixel counts, the label of each integration and what zero means."""

    counts: Delayed
    labels: list[tuple[str, int]]
    problem: str


def usable_check(cube: xr.Dataset, *, bad_bits: int, weights: xr.DataArray | None = None, problem: str) -> UsableCheck:
    """Count a cube's usable pixels per integration, lazily, for :func:`usable_guard`.

    Parameters
    ----------
    cube : xr.Dataset
        ``sci`` and ``dq`` with ``source`` and ``int_number`` coordinates on the leading dimension.
    bad_bits : int
        DQ bits that make a pixel unusable.
    weights : xr.DataArray, optional
        Weight map (the PSFMASK); only pixels with a positive weight count.
    problem : str
        What an integration without a usable pixel means, for the error message.

    Returns
    -------
    UsableCheck
        Built from the cube's unoptimised blocks, so it shares their read and flag tasks.
    """
    blocks = count_usable(cube, bad_bits=bad_bits, weights=weights).data.to_delayed(optimize_graph=False)
    # blocks passed positionally: a list of Delayed would make dask materialise their whole graph
    counts = dask.delayed(_join_counts, pure=True)(*blocks.ravel().tolist())
    coords = cube.coords  # in-memory provenance labels, not pixels
    labels = list(zip(coords["source"].data.tolist(), coords["int_number"].data.tolist(), strict=True))
    return UsableCheck(counts, labels, problem)


def usable_guard(checks: Sequence[UsableCheck]) -> Delayed:
    """One task that fails the run when an integration of these groups has no usable pixel.

    Parameters
    ----------
    checks : sequence of UsableCheck
        From :func:`usable_check`.

    Returns
    -------
    Delayed
        Computes to True, or raises :class:`~coron3_dask.kernels.usable.UnusableDataError`
        naming every file and integration of these groups without a usable pixel.
    """
    return dask.delayed(kernel.require_usable, pure=True)(
        [c.counts for c in checks], [c.labels for c in checks], [c.problem for c in checks]
    )


def _after_guard(block: np.ndarray, passed: bool) -> np.ndarray:
    """Task: the block itself, once the guard has passed (its only job is the dependency)."""
    return block


def after_guard(array: xr.DataArray, guard: Delayed) -> xr.DataArray:
    """Return the same lazy array, each block released only after ``guard`` has passed.

    Parameters
    ----------
    array : xr.DataArray
        Dask-backed array (e.g. the median-replaced science cube or reference stack).
    guard : Delayed
        From :func:`usable_guard`.

    Returns
    -------
    xr.DataArray
        Same values, dims, coordinates and chunks; no copy.  Gating the inputs of alignment and
        KLIP means a run whose guard fails does none of that work and reports the guard's error,
        not whatever a kernel makes of an all-bad frame.
    """
    data = array.data
    index = tuple(range(data.ndim))
    token = da.from_delayed(guard, shape=(), dtype=bool)
    gated = da.blockwise(_after_guard, index, data, index, token, (), dtype=data.dtype, meta=data._meta)
    return array.copy(data=gated)
