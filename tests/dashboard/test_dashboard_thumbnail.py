"""Thumbnails of i2d products: a real simulated i2d, NaN-only images, many threads at once."""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import pytest
from astropy.io import fits

import coron3_dask
from coron3_dask.analysis.thumbnail import render_thumbnail, stretch
from coron3_dask.files import InputError


def png_pixels(path):
    """(width, height, RGBA array) of a non-interlaced 8-bit RGBA PNG, decoded with zlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour == 6, header
    raw = zlib.decompress(idat)
    stride, rows, previous = width * 4, [], bytearray(width * 4)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up, corner = previous[i], previous[i - 4] if i >= 4 else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pred = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, np.frombuffer(b"".join(rows), np.uint8).reshape(height, width, 4)


@pytest.fixture(scope="module")
def i2d(tmp_path_factory):
    sim = coron3_dask.simulate_programme(
        tmp_path_factory.mktemp("thumb_sim"), n_science_ints=2, n_ref_ints=2, n_dither=1
    )
    out = tmp_path_factory.mktemp("thumb_products")
    with dask.config.set(scheduler="synchronous"):
        coron3_dask.run(coron3_dask.open_inputs(sim.asn_path, psfmask=sim.psfmask_path), coron3_dask.load_config(), out)
    return next(out.glob("*_i2d.fits"))


def test_thumbnail_of_a_real_i2d(i2d, tmp_path):
    png = render_thumbnail(i2d, tmp_path / "thumbs" / "a.png")
    assert png == tmp_path / "thumbs" / "a.png"
    width, height, pixels = png_pixels(png)
    ny, nx = fits.getdata(i2d, "SCI").shape
    assert max(width, height) == 160
    assert width / height == pytest.approx(nx / ny, rel=0.05)
    assert png.stat().st_size < 40_000
    assert pixels[..., :3].std() > 10  # an image, not a flat field
    assert not [p for p in png.parent.iterdir() if p.name.endswith(".partial")]


def test_size_and_concurrent_rendering(i2d, tmp_path):
    with ThreadPoolExecutor(6) as pool:
        paths = list(pool.map(lambda k: render_thumbnail(i2d, tmp_path / f"t{k}.png", size_px=64), range(12)))
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths)  # threads do not disturb each other
    assert max(png_pixels(paths[0])[:2]) == 64


def test_nan_only_and_cube_images(tmp_path):
    nan = tmp_path / "nan_i2d.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.full((20, 30), np.nan, np.float32), name="SCI")]).writeto(nan)
    width, height, pixels = png_pixels(render_thumbnail(nan, tmp_path / "nan.png", size_px=30))
    assert (width, height) == (30, 20) and pixels[..., :3].std() == 0  # the "bad" colour everywhere
    cube = np.random.default_rng(1).normal(size=(3, 10, 10)).astype(np.float32)
    cube[:, 0, 0] = np.nan
    path = tmp_path / "cube_i2d.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, name="SCI")]).writeto(path)
    assert png_pixels(render_thumbnail(path, tmp_path / "cube.png", size_px=20))[:2] == (20, 20)


def test_errors(tmp_path):
    with pytest.raises(InputError):
        render_thumbnail(tmp_path / "missing_i2d.fits", tmp_path / "x.png")
    with pytest.raises(ValueError, match="size_px"):
        render_thumbnail(tmp_path / "missing_i2d.fits", tmp_path / "x.png", size_px=2)
    assert not (tmp_path / "x.png").exists()


def test_stretch():
    image = np.arange(100.0).reshape(10, 10)
    image[0, 0] = np.nan
    out = stretch(image, percentiles=(0, 100))
    assert np.isnan(out[0, 0]) and np.nanmin(out) == 0.0 and np.nanmax(out) == 1.0
    assert np.all(np.diff(out.ravel()[1:]) >= 0)  # monotonic
    assert out[5, 0] > 0.5  # asinh lifts the middle of the range
    default = stretch(image)  # from the median up: the lower half is background
    assert np.all(default.ravel()[1:50] == 0.0) and np.nanmax(default) == 1.0
    assert np.all(stretch(np.full((3, 3), 7.0)) == 0.0)
    assert np.isnan(stretch(np.full((2, 2), np.inf))).all()
