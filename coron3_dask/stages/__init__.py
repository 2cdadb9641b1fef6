"""Thin xarray/Dask wrappers around the kernels: declared dims and dtypes, no math, no I/O."""
