"""usable: per-integration counts of usable pixels, the input to the run's no-garbage guard."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from coron3_dask import schema
from coron3_dask.kernels import usable as kernel

__all__ = ["count_usable", "usable_guard"]


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


def _join_counts(blocks: list[np.ndarray]) -> np.ndarray:
    """Task: one group's per-chunk counts as one array (named for the progress map, not "concatenate")."""
    return np.concatenate(blocks)


def usable_guard(checks: Sequence[tuple[xr.Dataset, xr.DataArray | None, str]], *, bad_bits: int) -> Delayed:
    """One task that fails the run when any integration has no usable pixel.

    Parameters
    ----------
    checks : sequence of (xr.Dataset, xr.DataArray or None, str)
        Per group: the cube (with ``source`` and ``int_number`` coordinates on its leading
        dimension), its weight map or None, and what an empty integration means.
    bad_bits : int
        DQ bits that make a pixel unusable.

    Returns
    -------
    Delayed
        Computes to True, or raises :class:`~coron3_dask.kernels.usable.UnusableDataError`
        naming every file and integration without a usable pixel.  Built from the cubes'
        unoptimised blocks, so it shares their read and flag tasks instead of repeating them.
    """
    counts, labels, problems = [], [], []
    for cube, weights, problem in checks:
        blocks = count_usable(cube, bad_bits=bad_bits, weights=weights).data.to_delayed(optimize_graph=False)
        counts.append(dask.delayed(_join_counts, pure=True)(blocks.ravel().tolist()))
        labels.append(list(zip(cube["source"].values.tolist(), cube["int_number"].values.tolist(), strict=True)))
        problems.append(problem)
    return dask.delayed(kernel.require_usable, pure=True)(counts, labels, problems)
