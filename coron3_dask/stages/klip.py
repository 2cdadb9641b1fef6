"""klip: Karhunen-Loeve PSF subtraction of every science integration."""

from __future__ import annotations

import numpy as np
import xarray as xr

from coron3_dask import schema
from coron3_dask.kernels import klip as kernel

__all__ = ["klip"]


def klip(target: xr.DataArray, aligned: xr.DataArray, *, truncate: int = 50) -> xr.Dataset:
    """PSF-subtract each science integration with KLIP.

    Parameters
    ----------
    target : xr.DataArray, (integration, y, x) float32
        Median-replaced science cube.
    aligned : xr.DataArray, (integration, ref, y, x) float32
        Aligned references, one set per science integration (the basis is computed per
        integration) or a size-1 ``integration`` axis (one set shared by every integration:
        the basis is computed once and applied to each; the same numbers).
    truncate : int
        Number of KL modes kept.

    Returns
    -------
    xr.Dataset
        ``sci`` and ``err`` (float32) on ``(integration, y, x)``.

    Raises
    ------
    ValueError
        Fewer than two references, a negative ``truncate`` or an ``integration`` axis of
        ``aligned`` that is neither 1 nor the target's (at build time); non-finite inputs
        raise when computed.

    Notes
    -----
    Soummer, Pueyo & Larkin (2012, ApJ 755, L28); jwst 3.0.0 ``klip`` (spec section 7).
    """
    if aligned.sizes[schema.REF] < 2:
        raise ValueError(f"KLIP needs at least 2 reference integrations, got {aligned.sizes[schema.REF]}")
    if truncate < 0:
        raise ValueError(f"klip truncate must be >= 0, got {truncate}")
    n_int, n_sets = target.sizes[schema.INTEGRATION], aligned.sizes[schema.INTEGRATION]
    if n_sets not in (1, n_int):
        raise ValueError(f"aligned references have {n_sets} integration sets; expected 1 or {n_int} (one per target)")
    frame = list(schema.FRAME_DIMS)
    stack = [schema.REF, *frame]
    coords = target.coords
    target = target.reset_coords(drop=True).chunk({schema.INTEGRATION: 1, **{d: -1 for d in frame}})
    aligned = aligned.reset_coords(drop=True)
    if n_sets > 1:  # one reference set per integration
        sci, err = xr.apply_ufunc(
            kernel.klip_one,
            target,
            aligned.chunk({schema.INTEGRATION: 1, **{d: -1 for d in stack}}),
            input_core_dims=[frame, stack],
            output_core_dims=[frame, frame],
            kwargs={"truncate": truncate},
            vectorize=True,
            dask="parallelized",
            output_dtypes=[np.float32, np.float32],
        )
    else:
        modes = min(truncate, aligned.sizes[schema.REF])
        npix = aligned.sizes[schema.Y] * aligned.sizes[schema.X]
        basis, err = xr.apply_ufunc(
            kernel.klip_model,
            aligned.isel({schema.INTEGRATION: 0}).chunk({d: -1 for d in stack}),
            input_core_dims=[stack],
            output_core_dims=[["mode", "pixel"], frame],
            kwargs={"truncate": truncate},
            dask="parallelized",
            output_dtypes=[np.float64, np.float32],
            dask_gufunc_kwargs={"output_sizes": {"mode": modes, "pixel": npix}},
        )
        sci = xr.apply_ufunc(
            kernel.klip_subtract,
            target,
            basis,
            input_core_dims=[frame, ["mode", "pixel"]],
            output_core_dims=[frame],
            vectorize=True,
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        err = err.expand_dims({schema.INTEGRATION: target.sizes[schema.INTEGRATION]}).chunk({schema.INTEGRATION: 1})
    dims = list(schema.CUBE_DIMS)
    return xr.Dataset({"sci": sci.transpose(*dims), "err": err.transpose(*dims)}).assign_coords(coords)
