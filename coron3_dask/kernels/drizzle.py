"""Drizzle one integration onto the output grid as associative partial sums.

Fruchter & Hook (2002, PASP 114, 144) drizzle, evaluated by the ``drizzle`` C library
(``drizzle.resample.Drizzle``, 2.2 API), with the inputs jwst 3.0.0 ``ResampleStep`` gives it
(spec sections 8.1, 8.4, 8.5).  jwst keeps one stateful ``Drizzle`` accumulator for all
images (a running weighted mean).  Here each integration is drizzled alone onto a fresh
grid and turned into sums that add: ``num = sum(dow * d)`` and ``wht = sum(dow)`` for the
science, ``S = sum(v * w**2)`` and ``W = sum(w)`` for each variance plane, and an OR-ed
context bitmap.  :func:`combine` adds two partials (associative and commutative, so Dask
can tree-reduce them) and :func:`finalize` does the one division.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from drizzle.resample import Drizzle
from numpy.typing import NDArray

__all__ = ["VARIANCE_NAMES", "Partial", "combine", "drizzle_partial", "drizzle_weight", "fill_value", "finalize"]

#: variance planes, in the order of ``Partial.var_num`` / ``Partial.var_wht``
VARIANCE_NAMES: tuple[str, str, str] = ("var_rnoise", "var_flat", "var_poisson")

#: ``finalize`` result, in order
FinalArrays = tuple[
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.int32],
]

_CTX_BITS = 32


@dataclass(frozen=True, slots=True)
class Partial:
    """Additive drizzle sums of one or more input images on the output grid.

    Attributes
    ----------
    num : ndarray, (y, x) float64
        ``sum(dow * d)``: drizzled science times its drizzle weight.
    wht : ndarray, (y, x) float64
        ``sum(dow)``: drizzle weight.
    con : ndarray, (plane, y, x) int32
        Context: bit ``k % 32`` of plane ``k // 32`` set where image ``k`` contributed.
    var_num : ndarray, (3, y, x) float64
        ``sum(v_k * w_k**2)`` per variance plane (order :data:`VARIANCE_NAMES`).
    var_wht : ndarray, (3, y, x) float64
        ``sum(w_k)`` per variance plane.
    """

    num: NDArray[np.float64]
    wht: NDArray[np.float64]
    con: NDArray[np.int32]
    var_num: NDArray[np.float64]
    var_wht: NDArray[np.float64]


def fill_value(fillval: str | float | None) -> float:
    """Numeric output value for pixels without input (drizzle's ``fillval`` rules).

    Parameters
    ----------
    fillval : str, float or None
        ``"NAN"``, ``"INDEF"``, ``""`` or None give NaN; otherwise a number (or its string).

    Returns
    -------
    float
    """
    if fillval is None:
        return float("nan")
    text = str(fillval).strip()
    if text.upper() in ("", "INDEF", "NAN"):
        return float("nan")
    return float(text)


def _present(array: NDArray[np.floating] | None, shape: tuple[int, ...]) -> bool:
    """Tell whether an optional plane is usable: present and of the science shape (as jwst requires)."""
    return array is not None and array.size > 0 and array.shape == shape


def drizzle_weight(
    dq: NDArray[np.unsignedinteger],
    var_rnoise: NDArray[np.floating] | None,
    invalid: NDArray[np.bool_],
    *,
    weight_type: str,
    exptime: float,
    bad_bits: int,
) -> NDArray[np.float32]:
    """Per-pixel input weight (stcal ``build_driz_weight``).

    Parameters
    ----------
    dq : ndarray of uint, (y, x)
        Data-quality flags.
    var_rnoise : ndarray, (y, x), or None
        Read-noise variance (``ivm`` weighting); None or mis-shaped means weight 1.
    invalid : ndarray of bool, (y, x)
        Pixels NaN in any plane (jwst ``match_nans_and_flags`` turns them DO_NOT_USE).
    weight_type : {"ivm", "exptime"}
        ``ivm``: ``1 / var_rnoise`` (non-finite -> 0); ``exptime``: ``exptime``.
    exptime : float
        Measurement (or effective exposure) time for ``exptime`` weighting.
    bad_bits : int
        A pixel is used only if ``dq & bad_bits == 0``.

    Returns
    -------
    ndarray, (y, x) float32
        Zero at excluded pixels.
    """
    good = ((np.asarray(dq) & np.uint32(bad_bits)) == 0) & ~invalid
    if weight_type == "ivm":
        if _present(var_rnoise, good.shape):
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / np.asarray(var_rnoise)
            inv[~np.isfinite(inv)] = 0
        else:
            inv = np.ones(good.shape, dtype=np.float32)
        weight = inv * good
    elif weight_type == "exptime":
        weight = np.float32(exptime) * good
    else:
        raise ValueError(f"weight_type must be 'ivm' or 'exptime', got {weight_type!r}")
    return np.asarray(weight, dtype=np.float32)


def _drizzle(
    data: NDArray[np.float32],
    weight: NDArray[np.float32],
    pixmap: NDArray[np.float64],
    bounds: dict[str, int | None],
    *,
    out_shape: tuple[int, int],
    kernel: str,
    pixfrac: float,
    pixel_scale_ratio: float,
    fillval: str,
    ctx: tuple[int, int] | None,
) -> Drizzle:
    """One ``Drizzle.add_image`` onto a fresh grid with jwst's fixed arguments."""
    if ctx is None:
        driz = Drizzle(kernel=kernel, fillval=fillval, out_shape=out_shape, disable_ctx=True)
    else:
        driz = Drizzle(kernel=kernel, fillval=fillval, out_shape=out_shape, begin_ctx_id=ctx[0], max_ctx_id=ctx[1])
    # in_units="cps": exptime only feeds drizzle's bookkeeping; it must be > 0
    driz.add_image(
        data,
        exptime=1.0,
        pixmap=pixmap,
        iscale=1.0,
        pixel_scale_ratio=pixel_scale_ratio,
        weight_map=weight,
        wht_scale=1.0,
        pixfrac=pixfrac,
        in_units="cps",
        **bounds,
    )
    return driz


def drizzle_partial(
    sci: NDArray[np.floating],
    dq: NDArray[np.unsignedinteger],
    var_rnoise: NDArray[np.floating] | None,
    var_flat: NDArray[np.floating] | None,
    var_poisson: NDArray[np.floating] | None,
    pixmap: NDArray[np.float64],
    *,
    out_shape: tuple[int, int],
    image_index: int,
    n_images: int,
    pixfrac: float = 1.0,
    kernel: str = "square",
    weight_type: str = "ivm",
    exptime: float = 1.0,
    bad_bits: int,
    pixel_scale_ratio: float = 1.0,
    err: NDArray[np.floating] | None = None,
    sky_level: float = 0.0,
    bounds: tuple[int, int, int, int] | None = None,
) -> Partial:
    """Drizzle one integration and return its additive partial sums.

    Parameters
    ----------
    sci : ndarray, (y, x)
        Science image (surface brightness; drizzled as "cps", no exposure scaling).
    dq : ndarray of uint32, (y, x)
        Data-quality flags.
    var_rnoise, var_flat, var_poisson : ndarray, (y, x), or None
        Variance planes; a missing plane contributes nothing to its output variance.
    pixmap : ndarray, (y, x, 2) float64
        Output (x, y) of every input pixel centre; NaN where undefined.
    out_shape : (ny, nx)
        Output grid shape.
    image_index : int
        Feeding position of this image among all inputs (its context bit).
    n_images : int
        Total number of input images (sets the number of context planes).
    pixfrac : float
        Drop size in input pixels.
    kernel : {"square", "gaussian", "point", "turbo", "lanczos2", "lanczos3"}
        Drizzle kernel.
    weight_type : {"ivm", "exptime"}
        Input weighting, see :func:`drizzle_weight`.
    exptime : float
        ``TMEASURE`` (or ``EFFEXPTM``) of the exposure; used by ``exptime`` weighting.
    bad_bits : int
        DQ bits that exclude a pixel (jwst: DO_NOT_USE | NON_SCIENCE).
    pixel_scale_ratio : float
        Output / input pixel scale (kernel size of the non-square kernels).
    err : ndarray, (y, x), optional
        Error plane: only its NaNs matter (they exclude the pixel, as in jwst).
    sky_level : float
        Subtracted from ``sci`` before drizzling (jwst: un-subtracted ``BKGLEVEL``).
    bounds : (xmin, xmax, ymin, ymax), optional
        Inclusive 0-based input pixel range to use (from a gWCS bounding box).

    Returns
    -------
    Partial
        Sums for this image alone; combine with :func:`combine`.

    Notes
    -----
    Input harmonisation (jwst ``match_nans_and_flags``): a pixel NaN in SCI, ERR or any
    variance plane is excluded like a DQ-flagged one (weight 0).  The science is drizzled
    with the weight map, giving this image's weighted mean ``d_k`` and weight ``W_k``;
    ``num = d_k * W_k`` is its ``sum(dow * d)``.  Each variance plane ``V`` is handled as in
    stcal ``resample_variance_arrays``: ``sqrt(V)`` is drizzled with the same weight map
    (fill NaN) and squared to ``v``; the plane weight is ``w = 1 / v(rnoise)`` where that
    is finite and positive (``exptime``: ``exptime``), and ``v * w**2``, ``w`` are kept
    where ``v >= 0``, finite, and ``w > 0``.
    """
    data = np.asarray(sci, dtype=np.float32)
    shape = data.shape
    planes = dict(zip(VARIANCE_NAMES, (var_rnoise, var_flat, var_poisson), strict=True))
    invalid = np.isnan(data)
    for plane in (err, var_rnoise, var_flat, var_poisson):
        if _present(plane, shape):
            invalid |= np.isnan(plane)  # type: ignore[arg-type]
    weight = drizzle_weight(dq, var_rnoise, invalid, weight_type=weight_type, exptime=exptime, bad_bits=bad_bits)
    if sky_level:
        data = data - np.float32(sky_level)
    box: dict[str, int | None] = dict(zip(("xmin", "xmax", "ymin", "ymax"), bounds or (None,) * 4, strict=True))

    def run(image: NDArray[np.float32], fillval: str, ctx: tuple[int, int] | None) -> Drizzle:
        return _drizzle(
            image,
            weight,
            pixmap,
            box,
            out_shape=out_shape,
            kernel=kernel,
            pixfrac=pixfrac,
            pixel_scale_ratio=pixel_scale_ratio,
            fillval=fillval,
            ctx=ctx,
        )

    driz = run(data, "0", (image_index, n_images - 1))
    wht = driz.out_wht.astype(np.float64)
    num = np.where(wht != 0, driz.out_img.astype(np.float64) * wht, 0.0)
    con = np.asarray(driz.out_ctx, dtype=np.int32)
    n_planes = (n_images - 1) // _CTX_BITS + 1
    if con.shape[0] != n_planes:
        con = np.concatenate([con, np.zeros((n_planes - con.shape[0], *out_shape), np.int32)])[:n_planes]

    drizzled: dict[str, NDArray[np.float32]] = {}
    with np.errstate(invalid="ignore"):
        for name, var in planes.items():
            if _present(var, shape):
                root = np.sqrt(np.asarray(var, dtype=np.float32))
                drizzled[name] = run(root, "NAN", None).out_img ** 2
    if weight_type == "ivm":
        omega = np.zeros(out_shape, dtype=np.float64)
        rn = drizzled.get("var_rnoise")
        if rn is not None:
            ok = (rn > 0) & np.isfinite(rn)
            omega[ok] = np.reciprocal(rn[ok])
    else:
        omega = np.full(out_shape, float(exptime), dtype=np.float64)
    var_num = np.zeros((len(VARIANCE_NAMES), *out_shape), dtype=np.float64)
    var_wht = np.zeros_like(var_num)
    for k, name in enumerate(VARIANCE_NAMES):
        v = drizzled.get(name)
        if v is None:
            continue
        with np.errstate(invalid="ignore"):
            use = (v >= 0) & np.isfinite(v) & (omega > 0)
        var_num[k][use] = v[use] * omega[use] * omega[use]
        var_wht[k][use] = omega[use]
    return Partial(num=num, wht=wht, con=con, var_num=var_num, var_wht=var_wht)


def combine(a: Partial, b: Partial) -> Partial:
    """Sum two partials (associative and commutative up to float64 round-off; context exact).

    Parameters
    ----------
    a, b : Partial
        Partials on the same output grid.

    Returns
    -------
    Partial
    """
    return Partial(
        num=a.num + b.num,
        wht=a.wht + b.wht,
        con=a.con | b.con,
        var_num=a.var_num + b.var_num,
        var_wht=a.var_wht + b.var_wht,
    )


def finalize(partial: Partial, *, fillval: str | float | None = "NAN", pixel_scale_ratio: float = 1.0) -> FinalArrays:
    """Turn summed partials into the resampled products (the one division).

    Parameters
    ----------
    partial : Partial
        Sum over all input images.
    fillval : str, float or None
        Science value where no input contributed (see :func:`fill_value`).
    pixel_scale_ratio : float
        Output / input pixel scale; variances are divided by its square (jwst, imaging).

    Returns
    -------
    sci, wht, err, var_rnoise, var_flat, var_poisson : ndarray, (y, x) float32
        ``sci = num / wht`` (``fillval`` where ``wht == 0``), ``VAR = S / W**2 / ratio**2``
        (NaN where ``W == 0``), ``err = sqrt(nansum(VAR_*))`` (NaN where all are NaN).
    con : ndarray, (plane, y, x) int32
        Context bitmap.

    Notes
    -----
    jwst's accumulator computes the same ratio as a running float32 mean,
    ``out <- (out * W + dow * d) / (W + dow)``; the results differ at float32 round-off.
    """
    fill = np.float32(fill_value(fillval))
    with np.errstate(divide="ignore", invalid="ignore"):
        sci = np.where(partial.wht != 0, partial.num / partial.wht, fill).astype(np.float32)
        scaling = 1.0 / pixel_scale_ratio**2
        variances = [
            np.where(
                partial.var_wht[k] > 0, partial.var_num[k] * scaling / partial.var_wht[k] / partial.var_wht[k], np.nan
            ).astype(np.float32)
            for k in range(len(VARIANCE_NAMES))
        ]
    stack = np.stack(variances)
    err = np.sqrt(np.nansum(stack, axis=0)).astype(np.float32)
    err[np.all(np.isnan(stack), axis=0)] = np.nan
    var_rnoise, var_flat, var_poisson = variances
    return (
        sci,
        partial.wht.astype(np.float32),
        err,
        var_rnoise,
        var_flat,
        var_poisson,
        partial.con.astype(np.int32, copy=True),
    )
