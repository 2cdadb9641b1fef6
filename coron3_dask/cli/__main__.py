"""``python -m coron3_dask.cli``: the ``coron3-dask`` command."""

from coron3_dask.cli import entry

entry()
