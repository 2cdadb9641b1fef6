"""coron3_dask: JWST stage-3 coronagraphic processing (calwebb_coron3) as a Dask/xarray job."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
