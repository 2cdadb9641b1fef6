"""Header and exposure bookkeeping: the cards products carry about their inputs.

jwst's ``group_id`` of an exposure, the i2d exposure-time sums (``update_time`` /
``finalize_time_info``), each exposure's drizzle weighting inputs (exposure time, sky level)
and the i2d attributes jwst's ``update_output_model`` / ``update_fits_wcsinfo`` write.
Plain dictionaries in, plain dictionaries out: the writers turn them into header cards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coron3_dask.schema import card_value

__all__ = [
    "card",
    "drizzle_weighting",
    "exposure_times",
    "group_id",
    "i2d_attributes",
    "mark_step",
    "shift_summary",
]

_GROUP_KEYS = ("PROGRAM", "OBSERVTN", "VISIT", "VISITGRP", "SEQ_ID", "ACT_ID", "EXPOSURE")


def card(attrs: Mapping[str, Any], key: str) -> Any:
    """Return a keyword from an exposure's PRIMARY header, else its SCI header; None when absent.

    Parameters
    ----------
    attrs : mapping
        Exposure attributes with ``primary_header`` and ``sci_header`` dicts.
    key : str
        Keyword.

    Returns
    -------
    object
        The value alone (a ``(value, comment)`` pair is unwrapped), or None.
    """
    for name in ("primary_header", "sci_header"):
        header = attrs.get(name) or {}
        if header.get(key) is not None:
            return card_value(header[key])
    return None


def mark_step(attrs: Mapping[str, Any], step: str, status: str = "COMPLETE") -> dict[str, str]:
    """Return the ``steps`` record of a product: its input's record plus ``step: status`` (``S_*`` keywords).

    Parameters
    ----------
    attrs : mapping
        The input's attributes (its ``steps`` record, if any, is kept).
    step : str
        Step alias (``"klip"``).
    status : str
        ``"COMPLETE"`` or ``"SKIPPED"``.

    Returns
    -------
    dict
        A new mapping; ``attrs`` is not modified.
    """
    return {**attrs.get("steps", {}), step: status}


def group_id(attrs: Mapping[str, Any], fallback: str) -> str:
    """Jwst's ``group_id``: ``jw{PROGRAM}{OBSERVTN}{VISIT}_{VISITGRP}{SEQ_ID}{ACT_ID}_{EXPOSURE}``.

    Parameters
    ----------
    attrs : mapping
        Exposure attributes.
    fallback : str
        Returned when a keyword is missing.

    Returns
    -------
    str
    """
    values = [card(attrs, k) for k in _GROUP_KEYS]
    if any(v is None for v in values):
        return fallback
    program, obs, visit, visitgrp, seq, act, exposure = (str(v) for v in values)
    return f"jw{program}{obs}{visit}_{visitgrp}{seq}{act}_{exposure}"


def exposure_times(exposures: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum exposure times once per group_id, min start, max end (jwst ``update_time``, ``finalize_time_info``).

    Parameters
    ----------
    exposures : sequence of mapping
        Exposure attributes in ASN order.

    Returns
    -------
    dict
        ``NDRIZ``, ``EFFEXPTM``, ``TMEASURE`` (None if any exposure lacks it), ``DURATION``,
        ``EXPSTART``, ``EXPEND``.
    """
    seen: set[str] = set()
    effexptm = duration = 0.0
    tmeasure: float | None = 0.0
    starts: list[float] = []
    ends: list[float] = []
    for i, attrs in enumerate(exposures):
        group = group_id(attrs, fallback=str(attrs.get("filename") or i))
        if group in seen:
            continue
        seen.add(group)
        if (value := card(attrs, "EFFEXPTM")) is not None:
            effexptm += float(value)
        measured = card(attrs, "TMEASURE")
        tmeasure = None if measured is None or tmeasure is None else tmeasure + float(measured)
        if (value := card(attrs, "DURATION")) is not None:
            duration += float(value)
        if (value := card(attrs, "EXPSTART")) is not None:
            starts.append(float(value))
        if (value := card(attrs, "EXPEND")) is not None:
            ends.append(float(value))
    return {
        "NDRIZ": len(seen),
        "EFFEXPTM": effexptm,
        "TMEASURE": tmeasure,
        "DURATION": duration,
        "EXPSTART": min(starts) if starts else None,
        "EXPEND": max(ends) if ends else None,
    }


def drizzle_weighting(attrs: Mapping[str, Any], weight_type: str) -> tuple[float, float]:
    """Return an exposure's drizzle inputs from its headers: exposure time and the sky level still in the data.

    Parameters
    ----------
    attrs : mapping
        Exposure attributes.
    weight_type : {"ivm", "exptime"}
        Resample weighting.

    Returns
    -------
    exptime : float
        ``TMEASURE`` (else ``EFFEXPTM``; 1.0 when neither is present and not needed).
    sky_level : float
        ``BKGLEVEL`` when the background was measured but not subtracted (``BKGSUB`` false), else 0.

    Raises
    ------
    ValueError
        ``exptime`` weighting of an exposure without a positive exposure time, naming the file.
    """
    tmeasure, effexptm = card(attrs, "TMEASURE"), card(attrs, "EFFEXPTM")
    exptime = tmeasure if tmeasure is not None else effexptm
    if weight_type == "exptime" and (exptime is None or float(exptime) <= 0):
        raise ValueError(f"{attrs.get('filename', 'exposure')}: exptime weighting needs TMEASURE or EFFEXPTM > 0")
    level, subtracted = card(attrs, "BKGLEVEL"), card(attrs, "BKGSUB")
    sky = float(level) if level is not None and not subtracted else 0.0
    return (float(exptime) if exptime is not None else 1.0), sky


def i2d_attributes(
    exposures: Sequence[Mapping[str, Any]],
    n_ints: Sequence[int],
    wcs_header: Mapping[str, Any],
    *,
    pixel_scale_ratio: float,
    s_region: str | None,
    pixfrac: float,
    kernel: str,
    fillval: str,
    weight_type: str,
) -> dict[str, Any]:
    """Output metadata of an i2d (jwst ``update_output_model`` / ``update_fits_wcsinfo``).

    Parameters
    ----------
    exposures : sequence of mapping
        Exposure attributes in ASN order.
    n_ints : sequence of int
        Integrations of each exposure (each one a drizzled image).
    wcs_header : mapping
        The output grid's WCS cards (``CDELT1`` gives the pixel area).
    pixel_scale_ratio : float
        Output / input pixel scale.
    s_region : str or None
        The output footprint (:func:`coron3_dask.wcs.resample_grid.grid_sregion`).
    pixfrac, kernel, fillval, weight_type
        The resample parameters.

    Returns
    -------
    dict
        ``NDRIZ``, ``PIXFRAC``, ``RESWHT``, ``PXSCLRT``, ``KERNEL``, ``FILLVAL``,
        ``EFFEXPTM``, ``TMEASURE``, ``DURATION``, ``EXPSTART``, ``EXPEND``, ``PIXAR_SR``,
        ``PIXAR_A2``, ``S_REGION``, ``BUNIT``, ``n_inputs``, ``wcs_header``, and the same
        cards grouped for the writer as ``exposure_cards`` (PRIMARY) and ``sci_cards`` (SCI,
        plus ``XPOSURE``/``TELAPSE``).
    """
    times = exposure_times(exposures)
    scale_arcsec = float(wcs_header["CDELT1"]) * 3600.0
    pixar_a2 = scale_arcsec**2
    primary = {
        "NDRIZ": times["NDRIZ"],
        "PIXFRAC": float(pixfrac),
        "RESWHT": weight_type,
        "PXSCLRT": pixel_scale_ratio,
        "EFFEXPTM": times["EFFEXPTM"],
        "TMEASURE": times["TMEASURE"],
        "DURATION": times["DURATION"],
        "EXPSTART": times["EXPSTART"],
        "EXPEND": times["EXPEND"],
    }
    sci = {
        "PIXAR_SR": float(pixar_a2 / np.rad2deg(3600.0) ** 2),
        "PIXAR_A2": pixar_a2,
        "S_REGION": s_region,
        "XPOSURE": times["EFFEXPTM"],
        "TELAPSE": times["DURATION"],
    }
    return {
        **primary,
        "KERNEL": kernel,
        "FILLVAL": fillval,
        "PIXAR_SR": sci["PIXAR_SR"],
        "PIXAR_A2": pixar_a2,
        "S_REGION": s_region,
        "BUNIT": exposures[0]["sci_header"].get("BUNIT", "MJy/sr"),
        "n_inputs": sum(n_ints),
        "wcs_header": dict(wcs_header),
        "exposure_cards": {k: v for k, v in primary.items() if v is not None},
        "sci_cards": {k: v for k, v in sci.items() if v is not None},
    }


def shift_summary(params: np.ndarray) -> dict[str, float]:
    """Summarise fitted ``(sx, sy, beta)`` for the run record: count, median and max |shift|, median beta.

    Parameters
    ----------
    params : ndarray, (..., 3)
        Fitted parameters, e.g. ``(integration, ref, 3)``.

    Returns
    -------
    dict
        ``n``, ``median_px``, ``max_px``, ``beta_median``.
    """
    sx, sy, beta = params.reshape(-1, 3).T
    r = np.hypot(sx, sy)
    return {
        "n": int(r.size),
        "median_px": float(np.median(r)),
        "max_px": float(r.max()),
        "beta_median": float(np.median(beta)),
    }
