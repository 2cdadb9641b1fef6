"""Helpers shared by several test modules (not fixtures: plain functions)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import numpy as np
import pytest


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """``cli.main`` configures the package logger and may export BLAS variables: undo both."""
    logger = logging.getLogger("coron3_dask")
    handlers, level, environ = logger.handlers[:], logger.level, dict(os.environ)
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        os.environ.clear()
        os.environ.update(environ)


def gwcs_from_header(h, shape):
    """gWCS equivalent to a TAN header: Shift | Affine(PC) | Scale | Pix2Sky_TAN | RotateNative2Celestial."""
    gwcs = pytest.importorskip("gwcs")
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as m
    from gwcs import coordinate_frames as cf

    pc = np.array([[h["PC1_1"], h["PC1_2"]], [h["PC2_1"], h["PC2_2"]]])
    transform = (m.Shift(-(h["CRPIX1"] - 1)) & m.Shift(-(h["CRPIX2"] - 1)) | m.AffineTransformation2D(matrix=pc)
                 | m.Scale(h["CDELT1"]) & m.Scale(h["CDELT2"]) | m.Pix2Sky_TAN()
                 | m.RotateNative2Celestial(h["CRVAL1"], h["CRVAL2"], 180))
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    w = gwcs.WCS([(detector, transform), (sky, None)])
    ny, nx = shape
    w.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    w.pixel_shape = (nx, ny)
    return w
