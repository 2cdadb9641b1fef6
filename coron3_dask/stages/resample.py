"""resample: drizzle every science integration onto one sky grid (the i2d product).

The output grid is header math done at graph-build time; pixels stay lazy.  The graph has
one pixel-map task per exposure, one :func:`~coron3_dask.kernels.drizzle.drizzle_partial`
task per integration, a balanced binary tree of
:func:`~coron3_dask.kernels.drizzle.combine` tasks and a single
:func:`~coron3_dask.kernels.drizzle.finalize` task (style rule R9: associative partials,
tree reduction, one division).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed
from numpy.typing import NDArray

from coron3_dask import dq, schema
from coron3_dask import wcs as wcs_utils
from coron3_dask.config import ResampleParams
from coron3_dask.kernels import drizzle as drizzle_kernel

__all__ = ["resample"]

PLANE = "plane"
_GROUP_KEYS = ("PROGRAM", "OBSERVTN", "VISIT", "VISITGRP", "SEQ_ID", "ACT_ID", "EXPOSURE")
_OUTPUTS: tuple[tuple[str, type], ...] = (
    ("sci", np.float32),
    ("wht", np.float32),
    ("err", np.float32),
    ("var_rnoise", np.float32),
    ("var_flat", np.float32),
    ("var_poisson", np.float32),
    ("con", np.int32),
)


def _card(ds: xr.Dataset, key: str) -> Any:
    """Read a keyword from the PRIMARY header, else the SCI header; None when absent."""
    for name in ("primary_header", "sci_header"):
        header = ds.attrs.get(name) or {}
        if header.get(key) is not None:
            value = header[key]
            return value[0] if isinstance(value, tuple) else value
    return None


def _group_id(ds: xr.Dataset, fallback: str) -> str:
    """Build jwst's ``group_id``: ``jw{PROGRAM}{OBSERVTN}{VISIT}_{VISITGRP}{SEQ_ID}{ACT_ID}_{EXPOSURE}``."""
    values = [_card(ds, k) for k in _GROUP_KEYS]
    if any(v is None for v in values):
        return fallback
    program, obs, visit, visitgrp, seq, act, exposure = (str(v) for v in values)
    return f"jw{program}{obs}{visit}_{visitgrp}{seq}{act}_{exposure}"


def _wcs_source(ds: xr.Dataset) -> Any:
    """Return what a task needs to rebuild the exposure's WCS: its gWCS if usable, else its SCI header."""
    chosen = wcs_utils.exposure_wcs(ds.attrs)
    return chosen if wcs_utils.is_gwcs(chosen) else dict(ds.attrs["sci_header"])


def _build_wcs(source: Any) -> Any:
    return wcs_utils.wcs_from_header(source) if isinstance(source, Mapping) else source


def _exposure_pixmap(source: Any, shape: tuple[int, int], out_header: Mapping[str, Any]) -> NDArray[np.float64]:
    """Task: pixel map of one exposure onto the output grid."""
    return wcs_utils.pixmap(_build_wcs(source), shape, wcs_utils.wcs_from_header(out_header))


def _bounds(wcs: Any, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Input pixel range from a gWCS bounding box (stcal ``resample_range``); None for FITS WCSs."""
    bbox = getattr(wcs, "bounding_box", None) if wcs_utils.is_gwcs(wcs) else None
    if bbox is None:
        return None
    try:
        (x1, x2), (y1, y2) = bbox.bounding_box(order="F")
    except AttributeError:
        (x1, x2), (y1, y2) = tuple(bbox)
    xmin, ymin = max(0, int(x1 + 0.5)), max(0, int(y1 + 0.5))
    return (xmin, max(xmin, min(shape[1] - 1, int(x2 + 0.5))), ymin, max(ymin, min(shape[0] - 1, int(y2 + 0.5))))


def _frames(ds: xr.Dataset, name: str) -> list[Delayed] | list[None]:
    """One delayed (1, y, x) block per integration of a variable (None per frame if absent)."""
    n = ds.sizes[schema.INTEGRATION]
    if name not in ds:
        return [None] * n
    array = ds[name].transpose(*schema.CUBE_DIMS).chunk({schema.INTEGRATION: 1, schema.Y: -1, schema.X: -1}).data
    return list(array.to_delayed(optimize_graph=False).ravel())


def _drizzle_frame(
    sci: NDArray[Any],
    dq_frame: NDArray[Any] | None,
    var_rnoise: NDArray[Any] | None,
    var_flat: NDArray[Any] | None,
    var_poisson: NDArray[Any] | None,
    err: NDArray[Any] | None,
    pixmap: NDArray[np.float64],
    **kwargs: Any,
) -> drizzle_kernel.Partial:
    """Task: squeeze the integration axis of each block and call the kernel."""

    def frame(block: NDArray[Any] | None) -> NDArray[Any] | None:
        return None if block is None else block[0]

    image = sci[0]
    flags = frame(dq_frame)
    return drizzle_kernel.drizzle_partial(
        image,
        np.zeros(image.shape, np.uint32) if flags is None else flags,
        frame(var_rnoise),
        frame(var_flat),
        frame(var_poisson),
        pixmap,
        err=frame(err),
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


def _exposure_times(exposures: Sequence[xr.Dataset]) -> dict[str, Any]:
    """Sum exposure times once per group_id, min start, max end (jwst ``update_time``, ``finalize_time_info``)."""
    seen: set[str] = set()
    effexptm = duration = 0.0
    tmeasure: float | None = 0.0
    starts: list[float] = []
    ends: list[float] = []
    for i, ds in enumerate(exposures):
        group = _group_id(ds, fallback=str(ds.attrs.get("filename") or i))
        if group in seen:
            continue
        seen.add(group)
        if (value := _card(ds, "EFFEXPTM")) is not None:
            effexptm += float(value)
        measured = _card(ds, "TMEASURE")
        tmeasure = None if measured is None or tmeasure is None else tmeasure + float(measured)
        if (value := _card(ds, "DURATION")) is not None:
            duration += float(value)
        if (value := _card(ds, "EXPSTART")) is not None:
            starts.append(float(value))
        if (value := _card(ds, "EXPEND")) is not None:
            ends.append(float(value))
    return {
        "NDRIZ": len(seen),
        "EFFEXPTM": effexptm,
        "TMEASURE": tmeasure,
        "DURATION": duration,
        "EXPSTART": min(starts) if starts else None,
        "EXPEND": max(ends) if ends else None,
    }


def resample(
    exposures: Sequence[xr.Dataset],
    *,
    pixfrac: float = 1.0,
    kernel: str = "square",
    fillval: str = "NAN",
    weight_type: str = "ivm",
    pixel_scale_ratio: float = 1.0,
    pixel_scale: float | None = None,
    rotation: float | None = None,
    output_shape: tuple[int, int] | None = None,
    crpix: tuple[float, float] | None = None,
    crval: tuple[float, float] | None = None,
) -> xr.Dataset:
    """Drizzle all integrations of all science exposures onto one output grid.

    Parameters
    ----------
    exposures : sequence of xr.Dataset
        psfsub exposures in ASN order, dims ``(integration, y, x)``: ``sci`` float32,
        ``dq`` uint32, optional ``var_rnoise``, ``var_flat``, ``var_poisson``, ``err``;
        attrs ``sci_header`` (FITS TAN WCS, ``S_REGION``, ``RA_REF``, ``DEC_REF``,
        ``ROLL_REF``, ``V3I_YANG``, ``VPARITY``, ``BUNIT``), ``primary_header``
        (``EFFEXPTM``, ``TMEASURE``, ``DURATION``, ``EXPSTART``, ``EXPEND``, group-id
        keys), ``filename`` and optionally ``asdf_wcs`` (a gWCS, used when gwcs is installed).
    pixfrac : float
        Drop size in input pixels.
    kernel : {"square", "gaussian", "point", "turbo", "lanczos2", "lanczos3"}
        Drizzle kernel.
    fillval : str
        Output science value where nothing contributed (``"NAN"`` or a number).
    weight_type : {"ivm", "exptime"}
        ``ivm``: 1/VAR_RNOISE per pixel; ``exptime``: TMEASURE (or EFFEXPTM).
    pixel_scale_ratio : float
        Output / input pixel scale (ignored when ``pixel_scale`` is given).
    pixel_scale : float, optional
        Absolute output pixel scale in arcsec.
    rotation : float, optional
        Position angle of the output y axis in degrees (None: first input's orientation).
    output_shape : (nx, ny), optional
        Output size.
    crpix : (x, y), optional
        0-based output pixel of ``crval``.
    crval : (ra, dec), optional
        Output reference position in degrees.

    Returns
    -------
    xr.Dataset
        Lazy.  ``sci``, ``err``, ``wht``, ``var_rnoise``, ``var_poisson``, ``var_flat``
        (float32, ``(y, x)``) and ``con`` (int32, ``(plane, y, x)``, ceil(N/32) planes,
        image k -> bit k % 32 of plane k // 32 in feeding order).  attrs: ``wcs_header``,
        ``NDRIZ``, ``PIXFRAC``, ``RESWHT``, ``PXSCLRT``, ``KERNEL``, ``FILLVAL``,
        ``EFFEXPTM``, ``TMEASURE``, ``DURATION``, ``EXPSTART``, ``EXPEND``, ``PIXAR_SR``,
        ``PIXAR_A2``, ``S_REGION``, ``BUNIT``, ``n_inputs``, and the same cards grouped for
        the writer as ``exposure_cards`` (PRIMARY) and ``sci_cards`` (SCI, plus
        ``XPOSURE``/``TELAPSE``).

    Raises
    ------
    ValueError
        No exposures, invalid parameters, or ``exptime`` weighting without exposure times.

    Notes
    -----
    jwst 3.0.0 ``ResampleStep`` as run by calwebb_coron3 (spec section 8): grid from
    :func:`coron3_dask.wcs.output_grid`, pixels with DQ & (DO_NOT_USE | NON_SCIENCE) or
    NaN in any plane excluded, Fruchter & Hook (2002) drizzle through the ``drizzle``
    library per integration, variances propagated per spec section 8.5.  The per-integration
    results are summed as associative partials and divided once, so SCI and WHT differ from
    jwst's running float32 mean at round-off level only.  ``area`` is not used (jwst applies
    no intensity scaling to imaging data); ``err`` only marks invalid pixels, the output ERR
    comes from the variances.  Building the graph reads headers only; nothing is computed.
    """
    ResampleParams(
        pixfrac=pixfrac,
        kernel=kernel,
        fillval=fillval,
        weight_type=weight_type,
        pixel_scale_ratio=pixel_scale_ratio,
        pixel_scale=pixel_scale,
        rotation=rotation,
        output_shape=output_shape,
        crpix=crpix,
        crval=crval,
    )
    if not exposures:
        raise ValueError("resample needs at least one science exposure")
    headers = [dict(ds.attrs["sci_header"]) for ds in exposures]
    shapes = [(int(ds.sizes[schema.Y]), int(ds.sizes[schema.X])) for ds in exposures]
    sources = [_wcs_source(ds) for ds in exposures]
    wcss = [_build_wcs(s) for s in sources]
    n_ints = [int(ds.sizes[schema.INTEGRATION]) for ds in exposures]
    # every integration of an exposure shares its footprint: one entry per exposure suffices
    out_wcs, out_shape = wcs_utils.output_grid(
        headers,
        shapes,
        wcs_list=wcss,
        rotation=rotation,
        pixel_scale_ratio=pixel_scale_ratio,
        pixel_scale=pixel_scale,
        output_shape=output_shape,
        crpix=crpix,
        crval=crval,
    )
    if pixel_scale is None:
        ratio = float(pixel_scale_ratio)
    else:
        ratio = pixel_scale / 3600.0 / wcs_utils.mean_pixel_scale(wcss[0], shapes[0])
    out_header = wcs_utils.output_header(out_wcs)
    n_images = sum(n_ints)

    drizzle_frame = dask.delayed(_drizzle_frame, pure=True)
    partials: list[Delayed] = []
    index = 0
    for ds, source, wcs, shape in zip(exposures, sources, wcss, shapes, strict=True):
        tmeasure, effexptm = _card(ds, "TMEASURE"), _card(ds, "EFFEXPTM")
        exptime = tmeasure if tmeasure is not None else effexptm
        if weight_type == "exptime" and (exptime is None or float(exptime) <= 0):
            name = ds.attrs.get("filename", "exposure")
            raise ValueError(f"{name}: exptime weighting needs TMEASURE or EFFEXPTM > 0")
        level, subtracted = _card(ds, "BKGLEVEL"), _card(ds, "BKGSUB")
        pix = dask.delayed(_exposure_pixmap, pure=True)(source, shape, out_header)
        kwargs = {
            "out_shape": out_shape,
            "n_images": n_images,
            "pixfrac": pixfrac,
            "kernel": kernel,
            "weight_type": weight_type,
            "exptime": float(exptime) if exptime is not None else 1.0,
            "bad_bits": dq.RESAMPLE_BAD_BITS,
            "pixel_scale_ratio": ratio,
            "sky_level": float(level) if level is not None and not subtracted else 0.0,
            "bounds": _bounds(wcs, shape),
        }
        blocks = zip(*(_frames(ds, name) for name in ("sci", "dq", *drizzle_kernel.VARIANCE_NAMES, "err")), strict=True)
        for sci, flags, rn, flat, pois, err in blocks:
            partials.append(drizzle_frame(sci, flags, rn, flat, pois, err, pix, image_index=index, **kwargs))
            index += 1

    final = dask.delayed(drizzle_kernel.finalize, nout=len(_OUTPUTS), pure=True)(
        _tree(partials), fillval=fillval, pixel_scale_ratio=ratio
    )
    n_planes = (n_images - 1) // 32 + 1
    data_vars: dict[str, Any] = {}
    for (name, dtype), item in zip(_OUTPUTS, final, strict=True):
        if name == "con":
            data_vars[name] = ((PLANE, schema.Y, schema.X), da.from_delayed(item, (n_planes, *out_shape), dtype=dtype))
        else:
            data_vars[name] = (schema.FRAME_DIMS, da.from_delayed(item, out_shape, dtype=dtype))
    order = ("sci", "err", "wht", "var_rnoise", "var_poisson", "var_flat", "con")
    return xr.Dataset(
        {k: data_vars[k] for k in order},
        attrs=_attributes(
            exposures,
            headers,
            shapes,
            wcss,
            out_wcs,
            out_shape,
            out_header,
            ratio=ratio,
            n_images=n_images,
            pixfrac=pixfrac,
            kernel=kernel,
            fillval=fillval,
            weight_type=weight_type,
        ),
    )


def _attributes(
    exposures: Sequence[xr.Dataset],
    headers: Sequence[Mapping[str, Any]],
    shapes: Sequence[tuple[int, int]],
    wcss: Sequence[Any],
    out_wcs: Any,
    out_shape: tuple[int, int],
    out_header: dict[str, Any],
    *,
    ratio: float,
    n_images: int,
    pixfrac: float,
    kernel: str,
    fillval: str,
    weight_type: str,
) -> dict[str, Any]:
    """Output metadata (jwst ``update_output_model`` / ``update_fits_wcsinfo``)."""
    times = _exposure_times(exposures)
    scale_arcsec = float(out_header["CDELT1"]) * 3600.0
    pixar_a2 = scale_arcsec**2
    # one footprint per input image, as jwst lists them (the union's vertex order depends on it)
    polygons = [
        p
        for ds, h, s, w in zip(exposures, headers, shapes, wcss, strict=True)
        for _ in range(ds.sizes[schema.INTEGRATION])
        for p in wcs_utils.footprints(h, s, w)
    ]
    s_region = wcs_utils.output_sregion(polygons, out_wcs, out_shape)
    primary = {
        "NDRIZ": times["NDRIZ"],
        "PIXFRAC": float(pixfrac),
        "RESWHT": weight_type,
        "PXSCLRT": ratio,
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
        "BUNIT": headers[0].get("BUNIT", "MJy/sr"),
        "n_inputs": n_images,
        "wcs_header": out_header,
        "exposure_cards": {k: v for k, v in primary.items() if v is not None},
        "sci_cards": {k: v for k, v in sci.items() if v is not None},
    }
