"""Read a finished run's combined image; write the contrast step's products (table, S/N map, figure)."""

from __future__ import annotations

from pathlib import Path

from coron3_dask.analysis.contrast_plot import contrast_figure
from coron3_dask.config import Coron3Config
from coron3_dask.contrast.model import CombinedImage, ContrastResult
from coron3_dask.files import InputError, contrast_products, save_figure
from coron3_dask.files.products import Provenance, source_product_name

__all__ = ["read_combined", "write_products"]


def read_combined(run_dir: str | Path, product_name: str, config: Coron3Config) -> CombinedImage:
    """Read a finished run's combined image: its KL-mode cube, or its i2d for an official-configuration run.

    Parameters
    ----------
    run_dir : path
        The run's output directory.
    product_name : str
        The association's product name.
    config : Coron3Config
        The run's parameters (from its record): they tell which product is its combined image
        (a KL-mode cube left by an earlier run in another configuration is not it) and the
        truncation of an i2d.

    Returns
    -------
    CombinedImage

    Raises
    ------
    files.InputError
        The product is missing or cannot be read.
    """
    kind = config.suffix if config.klip.official else "klmodes"
    path = Path(run_dir) / source_product_name(product_name, kind)
    if not path.exists():
        raise InputError(f"{path}: no such product: run the pipeline first")
    planes, truncations, sci, primary = contrast_products.read_combined(path)
    return CombinedImage(planes, truncations or config.klip.numbasis[:1], sci, primary, kind)


def write_products(
    result: ContrastResult, out_dir: str | Path, product_name: str, image: CombinedImage, provenance: Provenance
) -> list[Path]:
    """Write the contrast table (ECSV), the S/N map (FITS) and the figure (PNG); return their paths."""
    out = Path(out_dir)
    companions = [
        {
            "truncation": image.truncations[m],
            "given_sep_arcsec": given[0],
            "given_pa_deg": given[1],
            "x": c.x,
            "y": c.y,
            "separation_arcsec": c.separation * result.meta["pixel_scale_arcsec"],
            "flux": contrast * result.meta["host_flux"],
            "snr": c.snr,
            "fpf": c.fpf,
            "contrast": contrast,
        }
        for m, given, c, contrast in result.companions
    ]
    detections = [
        {
            "truncation": image.truncations[m],
            "x": d.x,
            "y": d.y,
            "separation_px": d.separation,
            "snr": d.snr,
            "fpf": d.fpf,
        }
        for m, d in result.detections
    ]
    meta = {**result.meta, "companions": companions, "detections": detections, "provenance": provenance.to_dict()}
    paths = [
        contrast_products.write_contrast_table(out / f"{product_name}_contrast.ecsv", result.rows, meta),
        contrast_products.write_snr_map(
            out / f"{product_name}_snr.fits", result.snr, image.truncations, image.sci_header, image.primary_header
        ),
    ]
    figure = contrast_figure(result.rows, companions, title=product_name, sigma=result.meta["sigma"])
    paths.append(save_figure(figure, out / f"{product_name}_contrast.png", format="png"))
    return paths
