"""Build the graph of KLIP beyond the official pipeline: optimisation regions, truncations, ADI.

The official configuration (full-frame RDI, one truncation) never comes here: ``pipeline.build``
runs jwst's algorithm unchanged.  Otherwise each science exposure is PSF-subtracted by
:func:`~coron3_dask.stages.klip.klip_regions` with a library made of the aligned PSF references
(``rdi``), the other rolls' integrations aligned to each science integration the same way
(``adi``: self-references), or both, region by region around the star.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from coron3_dask import schema
from coron3_dask.config import KlipParams
from coron3_dask.files import InputError, metadata
from coron3_dask.stages.align_refs import align_refs, apply_shifts
from coron3_dask.stages.klip import klip_regions, optimisation_regions, reference_use
from coron3_dask.wcs.input_wcs import exposure_wcs, radec_to_pixel

__all__ = ["Subtracted", "roll_angle", "star_position", "subtract"]

log = logging.getLogger(__name__)


def star_position(attrs: dict[str, Any]) -> tuple[float, float]:
    """Pixel position (x, y), 0-based, of the target star (TARG_RA/TARG_DEC through the exposure's WCS).

    Parameters
    ----------
    attrs : dict
        Exposure attributes (headers, optionally the gWCS).

    Returns
    -------
    (float, float)

    Raises
    ------
    InputError
        The exposure has no TARG_RA/TARG_DEC (naming the file).
    """
    ra, dec = metadata.card(attrs, "TARG_RA"), metadata.card(attrs, "TARG_DEC")
    if ra is None or dec is None:
        raise InputError(f"{attrs.get('filename', '?')}: no TARG_RA/TARG_DEC: the star position is unknown")
    x, y = radec_to_pixel(exposure_wcs(attrs), float(ra), float(dec))
    return float(x), float(y)


def roll_angle(attrs: dict[str, Any]) -> float:
    """Telescope roll of an exposure in degrees (ROLL_REF, else PA_V3).

    Raises
    ------
    InputError
        Neither keyword is present (naming the file).
    """
    for key in ("ROLL_REF", "PA_V3"):
        value = metadata.card(attrs, key)
        if value is not None:
            return float(value)
    raise InputError(f"{attrs.get('filename', '?')}: no ROLL_REF or PA_V3: the roll angle (needed by ADI) is unknown")


@dataclass
class Subtracted:
    """One science exposure's KLIP by region: the KL-mode cube and what it was made from."""

    #: ``sci``/``err`` on (integration, mode, y, x), ``truncation`` on ``mode``
    modes: xr.Dataset
    #: pixels no region processed (inside the IWA, beyond the OWA, or too few references)
    unprocessed: np.ndarray
    #: header cards describing the reduction
    cards: dict[str, Any]


def _self_library(
    e: int,
    targets: Sequence[xr.DataArray],
    science: Sequence[xr.Dataset],
    mask: xr.DataArray,
    align: Any,
    fakes: Sequence[xr.DataArray] | None,
) -> tuple[xr.DataArray, np.ndarray]:
    """Return the other exposures' integrations aligned to exposure ``e``'s, and their roll offsets.

    With ``fakes`` (fake companions alone, per exposure), the fits are made on the data without them
    and the fakes are moved by the same shifts: fakes never move the alignment, as a faint companion does not.
    """
    others = [j for j in range(len(targets)) if j != e]
    cube = xr.concat(
        [targets[j].reset_coords(drop=True).rename({schema.INTEGRATION: schema.REF}) for j in others], schema.REF
    )
    err = xr.concat(
        [science[j]["err"].reset_coords(drop=True).rename({schema.INTEGRATION: schema.REF}) for j in others], schema.REF
    )
    rolls = np.concatenate(
        [np.full(targets[j].sizes[schema.INTEGRATION], roll_angle(science[j].attrs)) for j in others]
    )
    aligned = align_refs(targets[e], cube, err, mask, align_to=align.align_to, jwst_compat=align.jwst_compat)
    library = aligned["sci"]
    if fakes is not None:
        alone = xr.concat(
            [fakes[j].reset_coords(drop=True).rename({schema.INTEGRATION: schema.REF}) for j in others], schema.REF
        )
        library = library + apply_shifts(alone, aligned["shifts"])
    return library, rolls - roll_angle(science[e].attrs)


def subtract(
    targets: Sequence[xr.DataArray],
    rdi: Sequence[xr.DataArray],
    science: Sequence[xr.Dataset],
    mask: xr.DataArray,
    params: KlipParams,
    align: Any,
    *,
    fakes: Sequence[xr.DataArray] | None = None,
) -> list[Subtracted]:
    """KLIP every science exposure by optimisation region with the configured library.

    Parameters
    ----------
    targets : sequence of xr.DataArray, (integration, y, x)
        Median-replaced science cubes, ASN order.
    rdi : sequence of xr.DataArray, (integration|1, ref, y, x)
        The PSF references aligned to each exposure.
    science : sequence of xr.Dataset
        The (outlier-flagged) science exposures: ``err`` and header attributes.
    mask : xr.DataArray, (y, x)
        PSFMASK weights (the self-references are aligned with them, as the PSF references).
    params : KlipParams
        Truncations, regions, library mode, ADI exclusion.
    align : AlignRefsParams
        Alignment mode of the self-references (that of the PSF references).
    fakes : sequence of xr.DataArray, optional
        Fake companions alone, ``(integration, y, x)`` per exposure (injection-recovery): added to
        the science integrations and to the self-references after alignment.

    Returns
    -------
    list of Subtracted

    Raises
    ------
    ValueError
        ADI with a single science exposure, or no region with two usable references.
    """
    adi, use_rdi = "adi" in params.mode, "rdi" in params.mode
    if adi and len(targets) < 2:
        raise ValueError(f"klip.mode={params.mode} needs at least two science exposures (rolls), got {len(targets)}")
    out = []
    for e, target in enumerate(targets):
        shape = (target.sizes[schema.Y], target.sizes[schema.X])
        center = star_position(science[e].attrs)
        masks, radii = optimisation_regions(shape, center, params)
        n_rdi = rdi[e].sizes[schema.REF] if use_rdi else 0
        parts, deltas = ([rdi[e]] if use_rdi else []), np.zeros(n_rdi)
        if adi:
            library, delta = _self_library(e, targets, science, mask, align, fakes)
            parts.append(library)
            deltas = np.concatenate([deltas, delta])
        self_ref = np.arange(len(deltas)) >= n_rdi
        use = reference_use(radii, deltas, self_ref, params)
        library = xr.concat([p.reset_coords(drop=True) for p in parts], schema.REF) if len(parts) > 1 else parts[0]
        subject = target if fakes is None else target + fakes[e]
        try:
            modes = klip_regions(subject, library, masks, use, numbasis=params.numbasis)
        except ValueError as exc:
            raise ValueError(f"{science[e].attrs.get('filename', '?')}: {exc}") from None
        largest = int(use.sum(axis=1).max())
        if max(params.numbasis) > largest and fakes is None:  # said once, not again per injection set
            log.warning(
                "%s: klip.truncate %s exceeds the largest region library (%d frames): those planes use %d modes",
                science[e].attrs.get("filename", "?"),
                [k for k in params.numbasis if k > largest],
                largest,
                largest,
            )
        starved = [r for r in range(len(masks)) if use[r].sum() < 2]
        if starved and fakes is None:
            log.warning(
                "%s: %d of %d regions have fewer than 2 usable references and are left NaN",
                science[e].attrs.get("filename", "?"),
                len(starved),
                len(masks),
            )
        unprocessed = np.asarray(~masks.any(axis=0))
        for r in starved:
            unprocessed |= masks[r]
        cards = {
            "KLMODE": (params.mode.upper(), "KLIP reference library"),
            "KLANNULI": (params.annuli, "KLIP annuli"),
            "KLSUBSEC": (params.subsections, "KLIP subsections per annulus"),
            "KLSPACE": (params.annuli_spacing, "KLIP annuli spacing"),
            "KLIWA": (params.iwa, "KLIP inner working angle (px)"),
            "KLOWA": (-1.0 if params.owa is None else params.owa, "KLIP outer working angle px (-1: none)"),
            "KLMOVE": (params.movement, "ADI minimum movement (px)"),
            "KLMINROT": (params.minrot, "ADI minimum roll difference (deg)"),
            "KLNRDI": (int(n_rdi), "PSF references in the library"),
            "KLNADI": (
                int(len(deltas) - n_rdi),
                "self-references in the library",
            ),
            "KLNLIB": (largest, "frames in the largest region library"),
            "KLSTARX": (round(center[0], 4), "star x, 0-based px (regions)"),
            "KLSTARY": (round(center[1], 4), "star y, 0-based px (regions)"),
        }
        out.append(Subtracted(modes, unprocessed, cards))
    return out
