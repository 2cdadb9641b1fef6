"""outlier_detection (coron mode) over one exposure as a lazy stage."""

from __future__ import annotations

import numpy as np
import xarray as xr

from coron3_dask import dq, schema
from coron3_dask.kernels import outliers as kernel

__all__ = ["flag_outliers"]


def flag_outliers(exposure: xr.Dataset, *, good_bits: int, maskpt: float, snr: float) -> xr.Dataset:
    """Flag outliers against the median of the exposure's own integrations.

    Parameters
    ----------
    exposure : xr.Dataset
        One calints exposure: ``sci``, ``err`` (float32), ``dq`` (uint32) and the
        ``var_*`` planes present, on ``(integration, y, x)``.
    good_bits : int
        Acceptable DQ bits, resolved from jwst's specification by the config
        (``OutlierParams.good_bits_mask``; ``"~DO_NOT_USE"`` is ``0xFFFFFFFE``).
    maskpt : float
        Weight-threshold fraction, in [0, 1].
    snr : float
        Detection threshold in units of ERR (the first ``snr`` value of jwst's string), > 0.

    Returns
    -------
    xr.Dataset
        Same variables, lazily updated: outliers carry DQ ``DO_NOT_USE|OUTLIER`` and every
        invalid pixel is NaN in SCI, ERR and VAR_*.  Other variables and attributes pass
        through.

    Notes
    -----
    The median needs every integration of a pixel, so the stage rechunks to one chunk per
    exposure (one task), matching jwst's per-exposure ``outlier_detection`` in coron mode
    (spec section 5).
    """
    if not 0.0 <= maskpt <= 1.0 or not snr > 0 or not 0 <= good_bits <= 0xFFFFFFFF:
        got = f"maskpt={maskpt}, snr={snr}, good_bits={good_bits}"
        raise ValueError(f"flag_outliers needs 0 <= maskpt <= 1, snr > 0 and 32-bit good_bits; got {got}")
    variances = [name for name in schema.VAR_NAMES if name in exposure]
    names = ["sci", "err", "dq", *variances]
    cube = list(schema.CUBE_DIMS)
    inputs = [exposure[name].chunk({d: -1 for d in cube}) for name in names]
    dtypes = [np.float32, np.float32, np.uint32] + [np.float32] * len(variances)
    results = xr.apply_ufunc(
        kernel.flag_exposure,
        *inputs,
        input_core_dims=[cube] * len(names),
        output_core_dims=[cube] * len(names),
        kwargs={
            "good_bits": good_bits,
            "maskpt": maskpt,
            "snr": snr,
            "flag_bits": dq.DO_NOT_USE | dq.OUTLIER,
            "do_not_use": dq.DO_NOT_USE,
        },
        dask="parallelized",
        output_dtypes=dtypes,
    )
    return exposure.assign(dict(zip(names, results, strict=True)))
