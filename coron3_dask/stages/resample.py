"""resample: drizzle every science integration onto one sky grid (the i2d pixels).

One :func:`~coron3_dask.kernels.drizzle.drizzle_partial` task per integration, a balanced
tree of :func:`~coron3_dask.kernels.drizzle.combine` tasks and one
:func:`~coron3_dask.kernels.drizzle.finalize` (style rule R9).  The output grid and pixel
maps come from :mod:`coron3_dask.wcs.resample_grid`, the header bookkeeping from
:mod:`coron3_dask.files.metadata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed
from numpy.typing import NDArray

from coron3_dask import dq, schema
from coron3_dask.kernels import drizzle as drizzle_kernel

__all__ = ["OUTPUTS", "resample"]

PLANE = "plane"
#: output variables in ``finalize`` order, with their dtypes
OUTPUTS: tuple[tuple[str, type], ...] = (
    ("sci", np.float32),
    ("wht", np.float32),
    ("err", np.float32),
    ("var_rnoise", np.float32),
    ("var_flat", np.float32),
    ("var_poisson", np.float32),
    ("con", np.int32),
)
_ORDER = ("sci", "err", "wht", "var_rnoise", "var_poisson", "var_flat", "con")


def _frames(ds: xr.Dataset, name: str) -> list[tuple[Delayed, int]] | list[None]:
    """Per integration of a variable, ``(block, i)``: the delayed block holding it and its index there.

    The blocks are the variable's own chunks along ``integration`` (whole frames): no rechunk
    or copy task is added, and a block shared by several integrations is passed to each of
    their drizzle tasks (None per frame if the variable is absent).
    """
    n = ds.sizes[schema.INTEGRATION]
    if name not in ds:
        return [None] * n
    variable = ds[name].transpose(*schema.CUBE_DIMS)
    if variable.chunks is None or any(len(c) > 1 for c in variable.chunks[1:]):
        variable = variable.chunk({schema.Y: -1, schema.X: -1})
    blocks = variable.data.to_delayed(optimize_graph=False).ravel()
    sizes = variable.data.chunks[0]
    return [(block, i) for block, size in zip(blocks, sizes, strict=True) for i in range(size)]


def _drizzle_frame(
    *blocks: NDArray[Any] | None, index: tuple[int, ...], pixmap: NDArray[np.float64], **kwargs: Any
) -> drizzle_kernel.Partial:
    """Task: pick each (sci, dq, variances, err) frame ``index[k]`` of its block and call the kernel."""
    sci, flags, var_rnoise, var_flat, var_poisson, err = (
        None if b is None else b[i] for b, i in zip(blocks, index, strict=True)
    )
    if sci is None:
        raise ValueError("drizzle needs a science frame")
    return drizzle_kernel.drizzle_partial(
        sci,
        np.zeros(sci.shape, np.uint32) if flags is None else flags,
        var_rnoise,
        var_flat,
        var_poisson,
        pixmap,
        err=err,
        **kwargs,
    )


def _tree(partials: list[Delayed]) -> Delayed:
    """Balanced pairwise reduction of delayed partials with :func:`~coron3_dask.kernels.drizzle.combine`."""
    combine = dask.delayed(drizzle_kernel.combine, pure=True)
    level = partials
    while len(level) > 1:
        pairs = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def resample(
    exposures: Sequence[xr.Dataset],
    pixmaps: Sequence[Any],
    *,
    out_shape: tuple[int, int],
    pixel_scale_ratio: float,
    bounds: Sequence[tuple[int, int, int, int] | None],
    exptimes: Sequence[float],
    sky_levels: Sequence[float],
    pixfrac: float = 1.0,
    kernel: str = "square",
    fillval: str = "NAN",
    weight_type: str = "ivm",
) -> xr.Dataset:
    """Drizzle all integrations of all science exposures onto one output grid.

    Parameters
    ----------
    exposures : sequence of xr.Dataset
        psfsub exposures in ASN order, dims ``(integration, y, x)``: ``sci`` float32,
        ``dq`` uint32, optional ``var_rnoise``, ``var_flat``, ``var_poisson``, ``err``.
    pixmaps : sequence of Delayed
        Per exposure, its ``(ny, nx, 2)`` pixel map onto the output grid (one task each).
    out_shape : (ny, nx)
        Output grid shape.
    pixel_scale_ratio : float
        Output / input pixel scale.
    bounds : sequence
        Per exposure, the usable input pixel range ``(xmin, xmax, ymin, ymax)`` or None.
    exptimes, sky_levels : sequence of float
        Per exposure, the exposure time (``exptime`` weighting) and the sky level left in the data.
    pixfrac, kernel, fillval, weight_type
        The ``resample`` parameters (:class:`~coron3_dask.config.ResampleParams`).

    Returns
    -------
    xr.Dataset
        Lazy.  ``sci``, ``err``, ``wht``, ``var_rnoise``, ``var_poisson``, ``var_flat``
        (float32, ``(y, x)``) and ``con`` (int32, ``(plane, y, x)``, ceil(N/32) planes,
        image k -> bit k % 32 of plane k // 32 in feeding order).

    Raises
    ------
    ValueError
        No exposures, per-exposure sequences of other lengths, or ``pixfrac`` outside (0, 1].

    Notes
    -----
    jwst 3.0.0 ``ResampleStep`` as run by calwebb_coron3 (spec section 8); summing partials
    and dividing once, SCI and WHT differ from jwst's running float32 mean at round-off only.
    ``err`` only marks invalid pixels; the output ERR comes from the variances.
    """
    n = len(exposures)
    if not n:
        raise ValueError("resample needs at least one science exposure")
    if {len(pixmaps), len(bounds), len(exptimes), len(sky_levels)} != {n}:
        raise ValueError(f"resample needs one pixel map, bounds, exposure time and sky level per exposure ({n})")
    if not 0.0 < pixfrac <= 1.0:
        raise ValueError(f"resample pixfrac must be in (0, 1], got {pixfrac}")
    n_images = sum(int(ds.sizes[schema.INTEGRATION]) for ds in exposures)
    drizzle_frame = dask.delayed(_drizzle_frame, pure=True)
    common = {"out_shape": out_shape, "n_images": n_images, "pixfrac": pixfrac, "kernel": kernel}
    common |= {"weight_type": weight_type, "bad_bits": dq.RESAMPLE_BAD_BITS, "pixel_scale_ratio": pixel_scale_ratio}
    partials: list[Delayed] = []
    names = ("sci", "dq", *drizzle_kernel.VARIANCE_NAMES, "err")
    for ds, pixmap, bound, exptime, sky in zip(exposures, pixmaps, bounds, exptimes, sky_levels, strict=True):
        each = {"pixmap": pixmap, "exptime": exptime, "sky_level": sky, "bounds": bound, **common}
        for frames in zip(*(_frames(ds, name) for name in names), strict=True):
            # blocks positional (a tuple holding Delayed would make dask materialise their graph)
            blocks = [None if f is None else f[0] for f in frames]
            index = tuple(0 if f is None else f[1] for f in frames)
            partials.append(drizzle_frame(*blocks, index=index, image_index=len(partials), **each))
    final = dask.delayed(drizzle_kernel.finalize, nout=len(OUTPUTS), pure=True)(
        _tree(partials), fillval=fillval, pixel_scale_ratio=pixel_scale_ratio
    )
    n_planes = (n_images - 1) // 32 + 1
    data_vars: dict[str, Any] = {}
    for (name, dtype), item in zip(OUTPUTS, final, strict=True):
        if name == "con":
            data_vars[name] = ((PLANE, schema.Y, schema.X), da.from_delayed(item, (n_planes, *out_shape), dtype=dtype))
        else:
            data_vars[name] = (schema.FRAME_DIMS, da.from_delayed(item, out_shape, dtype=dtype))
    return xr.Dataset({k: data_vars[k] for k in _ORDER})
