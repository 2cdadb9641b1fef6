"""PNG preview of a run: each roll's PSF-subtracted image and the combined i2d.

Companions' true positions are marked when a simulation truth is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coron3_dask import files
from coron3_dask.files import records
from coron3_dask.wcs import wcs_from_header

__all__ = ["write_preview"]


def _stretch(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return -1.0, 1.0
    limit = float(np.percentile(np.abs(finite), 99.5)) or 1.0
    return -limit, limit


def write_preview(
    psfsub: Sequence[str | Path],
    i2d: str | Path | None,
    out_png: str | Path,
    *,
    truth: Mapping[str, Any] | None = None,
) -> Path:
    """Write a PNG: mean psfsub of each science exposure and the i2d, companions marked.

    Parameters
    ----------
    psfsub : sequence of path
        ``_psfsub`` products (one per roll).
    i2d : path or None
        ``_i2d`` product.
    out_png : path
        Output PNG file.
    truth : mapping, optional
        A simulated programme's ``truth.json``: companions' pixel positions per exposure
        and sky positions are circled.

    Returns
    -------
    Path
        ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, np.ndarray, list[tuple[float, float]]]] = []
    exposures = {e["file"].removesuffix("_calints.fits"): e for e in (truth or {}).get("exposures", [])}
    for path in psfsub:
        cube, _ = files.read_image(path)
        root = next((r for r in exposures if Path(path).name.startswith(r)), None)
        marks = [tuple(np.mean(c["xy_per_integration"], axis=0)) for c in exposures[root]["companions"]] if root else []
        roll = f", roll {exposures[root]['roll_ref_deg']:.1f} deg" if root else ""
        panels.append((f"{Path(path).name[:25]}... psfsub{roll}", np.nanmean(cube, axis=0), marks))
    if i2d is not None:
        image, header = files.read_image(i2d)
        wcs = wcs_from_header(header)
        marks = [
            tuple(np.asarray(wcs.world_to_pixel_values(c["ra"], c["dec"]), float))
            for c in (truth or {}).get("companions", [])
        ]
        panels.append(("i2d: all rolls drizzled (first roll's orientation)", image, marks))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (title, image, marks) in zip(axes[0], panels, strict=True):
        cx, cy = np.mean(marks, axis=0) if marks else (image.shape[1] / 2, image.shape[0] / 2)
        half = 70
        lo, hi = _stretch(image[max(0, int(cy) - half) : int(cy) + half, max(0, int(cx) - half) : int(cx) + half])
        ax.imshow(image, origin="lower", cmap="RdBu_r", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_xlim(cx - half, cx + half)
        ax.set_ylim(cy - half, cy + half)
        for x, y in marks:
            ax.add_patch(plt.Circle((x, y), 6, fill=False, color="lime", lw=1.5))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("coron3_dask: PSF-subtracted rolls and combined i2d (circles: true companion positions)", fontsize=10)
    fig.tight_layout()
    out = records.save_figure(fig, out_png, dpi=90, format="png")
    plt.close(fig)
    return out
