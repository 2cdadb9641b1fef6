"""align_refs: bad-pixel replacement and Fourier least-squares alignment of the references."""

from __future__ import annotations

import numpy as np
import xarray as xr

from coron3_dask import schema
from coron3_dask.kernels import align as kernel
from coron3_dask.kernels import median_replace
from coron3_dask.kernels.shift import shift_stack

__all__ = ["PARAMS", "align_refs", "apply_shifts", "replace_bad_pixels"]

#: names of the fitted parameters on the ``param`` dimension of ``shifts``
PARAMS = ("sx", "sy", "beta")
#: references aligned per task: enough to amortise the per-target set-up of the fit, few
#: enough that a task's references and outputs stay small (float32 bytes per array)
REF_BLOCK_BYTES = 64 * 2**20


def replace_bad_pixels(cube: xr.Dataset, *, box: int, bad_bits: int, zero_bits: int) -> xr.DataArray:
    """Median-replace bad pixels in every frame of a cube (jwst ``median_replace_img``).

    Parameters
    ----------
    cube : xr.Dataset
        ``sci`` (float32) and ``dq`` (uint32) on ``(integration|ref, y, x)``.
    box : int
        Full width of the median box (``median_box_length``).
    bad_bits : int
        DQ bits that mark a pixel bad (NaNs are always bad).
    zero_bits : int
        Bad pixels carrying any of these bits are set to 0 (MIRI NON_SCIENCE), else 0.

    Returns
    -------
    xr.DataArray
        The replaced ``sci``, float32, same dims and chunks; one kernel call per frame.
    """
    if box < 0:
        raise ValueError(f"median_box_length must be >= 0, got {box}")
    frame = list(schema.FRAME_DIMS)
    return xr.apply_ufunc(
        median_replace.median_replace_one,
        cube["sci"],
        cube["dq"],
        input_core_dims=[frame, frame],
        output_core_dims=[frame],
        kwargs={"box": box, "bad_bits": bad_bits, "zero_bits": zero_bits},
        vectorize=True,
        dask="parallelized",
        output_dtypes=[np.float32],
    )


def _align_blocks(
    target: np.ndarray, refs: np.ndarray, ref_err: np.ndarray, mask: np.ndarray, *, jwst_compat: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align a block of references to each frame of a block of science integrations.

    The blocks arrive with the loop dimensions (integration, ref) first, broadcast with
    size-1 axes; the result has shape ``(n_int, n_ref, ...)``.  For the stage's chunking
    (one integration per block) the kernel's arrays are returned as views: unlike
    ``np.vectorize`` (``apply_ufunc(vectorize=True)``) nothing is copied into a
    preallocated output, so the aligned references exist once in memory.
    """
    frame = target.shape[-2:]
    frames = target.reshape(-1, *frame)
    r, e, m = refs.reshape(-1, *frame), ref_err.reshape(-1, *frame), mask.reshape(frame)
    align_one = kernel.align_one_jwst if jwst_compat else kernel.align_one  # the mode picks the kernel
    results = [align_one(f, r, e, m) for f in frames]
    if len(results) == 1:
        return tuple(a[None] for a in results[0])  # type: ignore[return-value]
    return tuple(np.stack(parts) for parts in zip(*results, strict=True))  # type: ignore[return-value]


def align_refs(
    target: xr.DataArray,
    refs: xr.DataArray,
    ref_err: xr.DataArray,
    mask: xr.DataArray,
    *,
    align_to: str = "each",
    jwst_compat: bool = False,
) -> xr.Dataset:
    """Align every reference frame to the science integrations.

    Parameters
    ----------
    target : xr.DataArray, (integration, y, x) float32
        Median-replaced science cube.
    refs : xr.DataArray, (ref, y, x) float32
        Median-replaced PSF stack.
    ref_err : xr.DataArray, (ref, y, x) float32
        PSF-stack ERR (not replaced, as in jwst).
    mask : xr.DataArray, (y, x) float32
        PSFMASK weights (1 = full weight).
    align_to : {"each", "first"}
        ``"each"``: one fit per (integration, ref) pair.  ``"first"``: fits against
        integration 0 only (jwst >= 1.16); the output's integration axis has size 1.
    jwst_compat : bool
        Use :func:`~coron3_dask.kernels.align.align_one_jwst`, which reproduces jwst 3.0.0's
        single-precision MINPACK fit exactly (spec 6.5), instead of
        :func:`~coron3_dask.kernels.align.align_one`.

    Returns
    -------
    xr.Dataset
        ``sci`` and ``err`` (float32) on ``(integration, ref, y, x)`` in every mode (size 1
        along ``integration`` for ``first``: one set shared by every integration), and
        ``shifts`` (float64) on ``(integration, ref, param)`` with ``param = sx, sy, beta``: the
        science frame shifted by ``(sx, sy)`` and scaled by ``beta`` matches the reference;
        the aligned reference is the reference shifted by ``(-sx, -sy)``.

    Raises
    ------
    ValueError
        Unknown ``align_to`` or mask shape differing from the frames.

    Notes
    -----
    Each (integration, reference block) pair is one task; blocks hold about
    ``REF_BLOCK_BYTES`` of references (e.g. 160 frames of 320x320, 40 of 640x640), so no
    task ever holds the whole reference stack, however many reference integrations there are.
    """
    if align_to not in ("each", "first"):
        raise ValueError(f"align_to must be 'each' or 'first', got {align_to!r}")
    frame = list(schema.FRAME_DIMS)
    if mask.shape != tuple(target.sizes[d] for d in frame):
        raise ValueError(
            f"PSFMASK shape {mask.shape} differs from the science frame shape {tuple(target.sizes[d] for d in frame)}"
        )
    if align_to == "first":
        target = target.isel({schema.INTEGRATION: slice(0, 1)})
    whole_frames = {d: -1 for d in frame}
    ref_block = max(1, REF_BLOCK_BYTES // (4 * refs.sizes[schema.Y] * refs.sizes[schema.X]))
    stack = [schema.REF, *frame]
    # "ref" is a loop dimension, like "integration"; coordinates are dropped on the way in
    # (the same names live on both, and xarray would compute them to compare) and the ref
    # ones re-attached after
    sci, err, shifts = xr.apply_ufunc(
        _align_blocks,
        target.reset_coords(drop=True).chunk({schema.INTEGRATION: 1, **whole_frames}),
        refs.reset_coords(drop=True).chunk({schema.REF: ref_block, **whole_frames}),
        ref_err.reset_coords(drop=True).chunk({schema.REF: ref_block, **whole_frames}),
        mask.reset_coords(drop=True).chunk(whole_frames),
        input_core_dims=[frame, frame, frame, frame],
        output_core_dims=[frame, frame, ["param"]],
        kwargs={"jwst_compat": jwst_compat},
        dask="parallelized",
        output_dtypes=[np.float32, np.float32, np.float64],
        dask_gufunc_kwargs={"output_sizes": {"param": len(PARAMS)}},
    )
    dims = (schema.INTEGRATION, *stack)
    out = xr.Dataset(
        {
            "sci": sci.transpose(*dims),
            "err": err.transpose(*dims),
            "shifts": shifts.transpose(schema.INTEGRATION, schema.REF, "param"),
        }
    )
    ref_coords = {k: c for k, c in refs.coords.items() if c.dims == (schema.REF,)}
    return out.assign_coords({"param": list(PARAMS), **ref_coords})


def _shift_blocks(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Task: shift a block of frames by the negated fitted shifts of one integration's fits."""
    frame = frames.shape[-2:]
    n_int = shifts.shape[0]
    flat, params = frames.reshape(-1, *frame), shifts.reshape(n_int, -1, shifts.shape[-1])
    out = [shift_stack(flat, -p[:, 0], -p[:, 1]) for p in params]
    return np.stack(out).reshape(n_int, *frames.shape[-3:])


def apply_shifts(frames: xr.DataArray, shifts: xr.DataArray) -> xr.DataArray:
    """Move frames as ``align_refs`` moved the references it fitted (the same shifts, no new fit).

    Parameters
    ----------
    frames : xr.DataArray, (ref, y, x)
        Images on the references' detector frames (e.g. fake companions alone).
    shifts : xr.DataArray, (integration, ref, param)
        ``align_refs``'s fitted ``(sx, sy, beta)``.

    Returns
    -------
    xr.DataArray, (integration, ref, y, x) float32
        Each frame shifted by ``(-sx, -sy)`` of each integration's fit (``beta`` is not applied,
        as in ``align_refs``).
    """
    frame = list(schema.FRAME_DIMS)
    out = xr.apply_ufunc(
        _shift_blocks,
        frames.reset_coords(drop=True).chunk({schema.REF: -1, **{d: -1 for d in frame}}),
        shifts.reset_coords(drop=True).chunk({schema.INTEGRATION: 1, schema.REF: -1, "param": -1}),
        input_core_dims=[[schema.REF, *frame], [schema.REF, "param"]],
        output_core_dims=[[schema.REF, *frame]],
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    return out.transpose(schema.INTEGRATION, schema.REF, *frame)
