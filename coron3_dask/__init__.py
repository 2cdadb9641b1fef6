"""coron3_dask."""
