"""stack_refs: every reference-star integration into one (ref, y, x) stack."""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from coron3_dask import schema

__all__ = ["stack_refs"]


def stack_refs(psf_exposures: Sequence[xr.Dataset]) -> xr.Dataset:
    """Concatenate the (outlier-flagged) PSF exposures along the integration axis.

    Parameters
    ----------
    psf_exposures : sequence of xr.Dataset
        Each with ``sci``, ``err`` (float32) and ``dq`` (uint32) on
        ``(integration, y, x)``, in association order.

    Returns
    -------
    xr.Dataset
        ``sci``, ``err``, ``dq`` on ``(ref, y, x)``; coordinates ``source`` and
        ``int_number`` say where each plane came from.  Attributes are the first
        exposure's (jwst copies the first PSF's metadata).

    Raises
    ------
    ValueError
        No exposures, or frames of different shapes.

    Notes
    -----
    jwst ``stack_refs`` (spec section 4): planes are copied bit for bit; VAR_*, AREA and
    INT_TIMES are not carried.
    """
    if not psf_exposures:
        raise ValueError("stack_refs needs at least one PSF exposure")
    frames = {(ds.sizes[schema.Y], ds.sizes[schema.X]) for ds in psf_exposures}
    if len(frames) > 1:
        names = ", ".join(
            f"{ds.attrs.get('filename', '?')} {ds.sizes[schema.Y]}x{ds.sizes[schema.X]}" for ds in psf_exposures
        )
        raise ValueError(f"PSF exposures have different frame sizes: {names}")
    parts = [ds[["sci", "err", "dq"]] for ds in psf_exposures]
    stack = xr.concat(parts, dim=schema.INTEGRATION, combine_attrs="drop_conflicts")
    stack = stack.rename({schema.INTEGRATION: schema.REF})
    stack.attrs = dict(psf_exposures[0].attrs)
    return stack
