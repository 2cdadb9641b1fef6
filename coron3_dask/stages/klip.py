"""klip: Karhunen-Loeve PSF subtraction of every science integration."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from coron3_dask import schema
from coron3_dask.kernels import klip as kernel
from coron3_dask.kernels import regions

__all__ = ["klip", "klip_regions", "optimisation_regions", "reference_use"]


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


def _regions_block(
    target: np.ndarray, library: np.ndarray, mask: np.ndarray, use: np.ndarray, *, numbasis: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Task: KLIP of one optimisation region of one integration, for every truncation.

    Blocks arrive with the loop dimensions (integration, region) first, size 1 each.  The
    result holds the region's pixels and zeros elsewhere (regions are summed afterwards);
    a region with fewer than two usable references is NaN (pyKLIP leaves it unprocessed).
    """
    frame = target.shape[-2:]
    t, m, chosen = target.reshape(frame), mask.reshape(frame), use.reshape(-1)
    frames = library.reshape(-1, *frame)
    sci = np.zeros((len(numbasis), *frame), dtype=np.float32)
    err = np.zeros_like(sci)
    if chosen.sum() < 2:
        sci[:, m] = err[:, m] = np.nan
    elif m.all():  # the whole frame: jwst's arithmetic on the frames themselves, bit for bit
        sci[:], err[:] = kernel.klip_modes(t, frames[chosen], numbasis=numbasis)
    else:  # the region's pixels of the chosen frames, copied once
        refs = frames.reshape(len(frames), -1)[np.ix_(chosen, m.reshape(-1))]
        sci[:, m], err[:, m] = kernel.klip_modes(t[m], refs, numbasis=numbasis)
    return sci[None, None], err[None, None]


def klip_regions(
    target: xr.DataArray,
    library: xr.DataArray,
    regions: np.ndarray,
    use: np.ndarray,
    *,
    numbasis: tuple[int, ...],
) -> xr.Dataset:
    """PSF-subtract each science integration region by region, for several truncations.

    Parameters
    ----------
    target : xr.DataArray, (integration, y, x) float32
        Median-replaced science cube.
    library : xr.DataArray, (integration, ref, y, x) float32
        Aligned reference library of each integration (PSF references and/or self-references),
        or a size-1 ``integration`` axis shared by every integration.
    regions : ndarray of bool, (region, y, x)
        Disjoint optimisation regions (``kernels.regions.region_masks``).
    use : ndarray of bool, (region, ref)
        Which library frames each region may use (the ADI movement criterion).
    numbasis : tuple of int
        Truncations.

    Returns
    -------
    xr.Dataset
        ``sci`` and ``err`` (float32) on ``(integration, mode, y, x)`` with ``truncation`` and
        ``modes_used`` (the truncation clipped to the largest region library) coordinates on
        ``mode``; NaN outside every region and in regions with fewer than two usable references.

    Raises
    ------
    ValueError
        No region with two usable references, or shapes that do not match (at build time).

    Notes
    -----
    Each (integration, region) pair is one task; the regions of an integration are then
    summed (each pixel belongs to one region).  The per-region arithmetic is that of
    :func:`~coron3_dask.kernels.klip.klip_modes`: over a single whole-frame region it gives the
    numbers of :func:`klip` for each truncation.
    """
    frame = list(schema.FRAME_DIMS)
    n_int, n_sets = target.sizes[schema.INTEGRATION], library.sizes[schema.INTEGRATION]
    if n_sets not in (1, n_int):
        raise ValueError(f"the reference library has {n_sets} integration sets; expected 1 or {n_int}")
    if regions.shape[1:] != tuple(target.sizes[d] for d in frame) or use.shape != (len(regions), library.sizes["ref"]):
        raise ValueError(f"region masks {regions.shape} / selection {use.shape} do not match the frames and library")
    if not (use.sum(axis=1) >= 2).any():
        raise ValueError(
            f"no optimisation region has two usable references (library of {use.shape[1]} frames; "
            "ADI self-references count only where they moved by klip.movement)"
        )
    if n_sets == 1 and n_int > 1:
        library = library.isel({schema.INTEGRATION: [0] * n_int})
    stack = [schema.REF, *frame]
    masks = xr.DataArray(regions, dims=["region", *frame]).chunk({"region": 1, **{d: -1 for d in frame}})
    selection = xr.DataArray(use, dims=["region", schema.REF]).chunk({"region": 1, schema.REF: -1})
    sci, err = xr.apply_ufunc(
        _regions_block,
        target.reset_coords(drop=True).chunk({schema.INTEGRATION: 1, **{d: -1 for d in frame}}),
        library.reset_coords(drop=True).chunk({schema.INTEGRATION: 1, **{d: -1 for d in stack}}),
        masks,
        selection,
        input_core_dims=[frame, stack, frame, [schema.REF]],
        output_core_dims=[["mode", *frame], ["mode", *frame]],
        kwargs={"numbasis": tuple(numbasis)},
        dask="parallelized",
        output_dtypes=[np.float32, np.float32],
        dask_gufunc_kwargs={"output_sizes": {"mode": len(numbasis)}},
    )
    covered = xr.DataArray(regions.any(axis=0), dims=frame)
    dims = (schema.INTEGRATION, "mode", *frame)
    out = xr.Dataset(
        {
            name: a.sum("region", skipna=False).where(covered).transpose(*dims).astype(np.float32)
            for name, a in (("sci", sci), ("err", err))
        }
    )
    used = [min(k, int(use.sum(axis=1).max())) for k in numbasis]  # KL modes a truncation can have
    return out.assign_coords({"truncation": ("mode", list(numbasis)), "modes_used": ("mode", used), **target.coords})


def optimisation_regions(
    shape: tuple[int, int], center: tuple[float, float], params: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Region masks of a frame and each region's mean radius (pyKLIP's ``avg_rad``).

    Parameters
    ----------
    shape : (int, int)
        Frame shape (y, x).
    center : (float, float)
        Star position (x, y).
    params : KlipParams
        ``annuli``, ``subsections``, ``annuli_spacing``, ``iwa``, ``owa``.

    Returns
    -------
    masks : ndarray of bool, (region, y, x)
    radii : ndarray, (region,)
    """
    radial, azimuthal = regions.region_bounds(
        shape,
        center,
        annuli=params.annuli,
        subsections=params.subsections,
        iwa=params.iwa,
        owa=params.owa,
        spacing=params.annuli_spacing,
    )
    masks = regions.region_masks(shape, center, radial, azimuthal)
    radii = np.repeat([(r0 + r1) / 2 for r0, r1 in radial], len(azimuthal))
    return masks, radii


def reference_use(radii: np.ndarray, delta_roll: np.ndarray, self_ref: np.ndarray, params: Any) -> np.ndarray:
    """Which library frames each region uses: every PSF reference; self-references that moved enough.

    Parameters
    ----------
    radii : ndarray, (region,)
        Mean radius of each region.
    delta_roll : ndarray, (ref,)
        Roll of each library frame minus the target's, degrees (0 for PSF references).
    self_ref : ndarray of bool, (ref,)
        True for self-references (ADI), False for PSF references (RDI).
    params : KlipParams
        ``movement`` and ``minrot``.

    Returns
    -------
    ndarray of bool, (region, ref)
    """
    use = np.ones((len(radii), len(delta_roll)), dtype=bool)
    for r, radius in enumerate(radii):
        moved = regions.moved_enough(radius, delta_roll[self_ref], min_movement=params.movement, minrot=params.minrot)
        use[r, self_ref] = moved
    return use
