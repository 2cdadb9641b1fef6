"""The file layer: everything that reads or writes FITS and JSON on disk.

Inputs come in through :func:`read_association`, :func:`open_calints` and the PSFMASK lookup;
products go out through :mod:`coron3_dask.files.writers` (streamed block by block from the
workers) and :func:`write_fits` / :func:`write_text` (small whole files).  No other layer
opens or writes a file.
"""

from __future__ import annotations

from coron3_dask.files.association import Association, read_association
from coron3_dask.files.calints import check_same_frame, open_calints, open_exposures
from coron3_dask.files.fits_read import InputError, read_image
from coron3_dask.files.fits_stream import Extension, atomic_path, write_fits, write_text
from coron3_dask.files.psfmask import find_psfmask, lazy_psfmask, read_psfmask
from coron3_dask.files.records import ensure_dir, read_json, read_list, save_figure, write_json

__all__ = [
    "Association",
    "Extension",
    "InputError",
    "atomic_path",
    "check_same_frame",
    "ensure_dir",
    "find_psfmask",
    "lazy_psfmask",
    "open_calints",
    "open_exposures",
    "read_association",
    "read_image",
    "read_json",
    "read_list",
    "read_psfmask",
    "save_figure",
    "write_fits",
    "write_json",
    "write_text",
]
