"""Read a finished run's combined image and write the contrast step's products.

Products (``{product}`` is the association's product name):

* ``{product}_contrast.ecsv``: one row per (truncation, separation): ``separation_px``,
  ``separation_arcsec``, ``n_apertures``, ``noise``, ``threshold``, ``raw_contrast``,
  ``throughput``, ``contrast`` (calibrated); the meta block holds the settings, the host flux,
  the injected fakes, the detections and the companions, and the provenance.
* ``{product}_snr.fits``: the S/N map, SCI ``(mode, y, x)`` on the i2d grid (its WCS), with a
  KLMODES table of the truncations.
* ``{product}_contrast.png``: the calibrated (solid) and raw (dashed) curves per truncation.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from coron3_dask.files.fits_read import InputError, header_dict
from coron3_dask.files.fits_stream import Extension, write_fits, write_text

__all__ = ["read_combined", "read_psf_model", "write_contrast_table", "write_snr_map"]


def read_combined(path: str | Path) -> tuple[np.ndarray, tuple[int, ...], dict[str, Any], dict[str, Any]]:
    """Read a combined KL-mode cube or an i2d: planes ``(mode, y, x)``, truncations, SCI and PRIMARY headers.

    Parameters
    ----------
    path : path
        ``{product}_klmodes.fits`` (planes and a KLMODES table) or ``{product}_i2d.fits`` (one plane).

    Returns
    -------
    planes, truncations, sci_header, primary_header

    Raises
    ------
    InputError
        Missing file or extension, or no finite pixel.
    """
    path = Path(path)
    try:
        with fits.open(path) as hdul:
            data = np.asarray(hdul["SCI"].data, dtype=np.float64)
            sci, primary = header_dict(hdul["SCI"].header), header_dict(hdul[0].header)
            truncations = tuple(int(k) for k in hdul["KLMODES"].data["truncation"]) if "KLMODES" in hdul else ()
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the combined image: {exc}") from None
    planes = data if data.ndim == 3 else data[None]
    if not np.isfinite(planes).any():
        raise InputError(f"{path}: the combined image has no finite pixel")
    return planes, truncations, sci, primary


def read_psf_model(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an off-axis PSF model: the first image HDU and its header cards over the primary's.

    Raises
    ------
    InputError
        Missing file, no image, non-finite values or a non-positive sum.
    """
    path = Path(path)
    try:
        with fits.open(path) as hdul:
            hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
            data, header = (
                np.asarray(hdu.data, dtype=np.float64),
                {**header_dict(hdul[0].header), **header_dict(hdu.header)},
            )
    except (OSError, StopIteration) as exc:
        raise InputError(f"{path}: cannot read a 2-D PSF model: {exc or 'no image HDU'}") from None
    if not np.isfinite(data).all() or data.sum() <= 0:
        raise InputError(f"{path}: the PSF model must be finite with a positive sum")
    if data.shape[0] % 2 == 0 or data.shape[1] % 2 == 0:
        raise InputError(f"{path}: the PSF model must have odd sides (centred on its central pixel), got {data.shape}")
    return data, header


def write_contrast_table(path: str | Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> Path:
    """Write the contrast curve as an ECSV table (atomically), ``meta`` in its header."""
    table = Table(rows=list(rows), names=list(rows[0])) if rows else Table()
    table.meta.update(meta)
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    return write_text(path, buffer.getvalue())


def write_snr_map(
    path: str | Path,
    snr: np.ndarray,
    truncations: Sequence[int],
    sci_header: Mapping[str, Any],
    primary: Mapping[str, Any],
) -> Path:
    """Write the S/N map ``(mode, y, x)`` with the combined image's WCS and a KLMODES table (atomically)."""
    table = np.zeros(len(truncations), dtype=[("mode", "i4"), ("truncation", "i4")])
    table["mode"], table["truncation"] = np.arange(len(truncations)), truncations
    wcs = {
        k: v
        for k, v in sci_header.items()
        if k[:5] in ("CRPIX", "CRVAL", "CTYPE", "CUNIT", "CDELT") or k[:2] in ("PC", "CD")
    }
    return write_fits(
        path,
        {**primary, "FILENAME": Path(path).name},
        [Extension("SCI", snr.astype(np.float32), {**wcs, "BUNIT": "S/N"}), Extension("KLMODES", table, table=True)],
    )
