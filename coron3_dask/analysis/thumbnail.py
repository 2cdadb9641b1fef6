"""A small PNG of an i2d product, for the campaign dashboard and report.

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global
figure manager), so several threads can draw at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coron3_dask import files

__all__ = ["render_thumbnail", "stretch"]

#: asinh softening: larger brings faint structure up further
_ASINH_SOFTENING = 10.0
_DPI = 100
#: colours in the thumbnail's colour map (fewer compress better)
_LEVELS = 64


def stretch(image: np.ndarray, *, percentiles: tuple[float, float] = (50.0, 99.9)) -> np.ndarray:
    """Map an image to [0, 1] with a percentile clip and an asinh stretch; NaN stays NaN.

    Parameters
    ----------
    image : ndarray, (y, x)
        Any real image; non-finite pixels are ignored for the limits.
    percentiles : (float, float)
        Lower and upper clip, in per cent of the finite pixels.  The default starts at the
        median (the residual background of a PSF-subtracted image), so noise stays dark and
        companions bright.

    Returns
    -------
    ndarray, (y, x) float64
        ``asinh(a * t) / asinh(a)`` of the clipped, rescaled ``t``; all-zero when the image is
        constant, all-NaN when no pixel is finite.

    Examples
    --------
    >>> stretch(np.array([[0.0, 1.0], [np.nan, 2.0]]), percentiles=(0, 100)).round(3)
    array([[0.   , 0.771],
           [  nan, 1.   ]])
    """
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    out = np.full(values.shape, np.nan)
    if not finite.any():
        return out
    lo, hi = np.percentile(values[finite], percentiles)
    scale = hi - lo if hi > lo else 1.0
    t = np.clip((values[finite] - lo) / scale, 0.0, 1.0)
    out[finite] = np.arcsinh(_ASINH_SOFTENING * t) / np.arcsinh(_ASINH_SOFTENING)
    return out


def render_thumbnail(i2d_path: str | Path, png_path: str | Path, size_px: int = 160) -> Path:
    """Draw the SCI image of an i2d product as a small PNG (no axes), written atomically.

    Parameters
    ----------
    i2d_path : path
        An ``_i2d.fits`` product (a cube is averaged over its leading axes, NaN-safe).
    png_path : path
        The PNG to write (its directory is created).
    size_px : int
        Length of the longer side in pixels; the image keeps its aspect ratio.

    Returns
    -------
    Path
        ``png_path``.

    Raises
    ------
    InputError
        The product or its SCI extension cannot be read.
    ValueError
        ``size_px`` below 8, or SCI is not an image.
    """
    if size_px < 8:
        raise ValueError(f"size_px must be at least 8, got {size_px}")
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data, _ = files.read_image(i2d_path, "SCI")
    if data.ndim < 2:
        raise ValueError(f"{i2d_path}: SCI has {data.ndim} dimensions, expected an image")
    image = _collapse(data)
    ny, nx = image.shape
    scale = size_px / max(ny, nx)
    image = _bin(image, max(1, int(1 / scale)))  # average, not sample: less noise, smaller file
    width, height = max(1, round(nx * scale)), max(1, round(ny * scale))
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    cmap = colormaps["inferno"].resampled(_LEVELS).with_extremes(bad="#303030")
    axes.imshow(
        np.ma.masked_invalid(stretch(image)),
        origin="lower",
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        aspect="auto",
    )
    return files.save_figure(figure, png_path, dpi=_DPI, format="png", metadata={"Software": None})


def _collapse(data: np.ndarray) -> np.ndarray:
    """Average a cube over its leading axes where any value is finite (no all-NaN warning)."""
    if data.ndim == 2:
        return np.asarray(data, dtype=np.float64)
    flat = np.asarray(data, dtype=np.float64).reshape(-1, *data.shape[-2:])
    finite = np.isfinite(flat)
    count = finite.sum(axis=0)
    total = np.where(finite, flat, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks, NaN-safe (a block with no finite pixel is NaN)."""
    if factor <= 1:
        return image
    ny, nx = image.shape
    padded = np.pad(image, ((0, -ny % factor), (0, -nx % factor)), constant_values=np.nan)
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
