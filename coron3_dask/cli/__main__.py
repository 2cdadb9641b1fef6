"""``python -m coron3_dask.cli``: the ``coron3-dask`` command."""

import sys

from coron3_dask.cli import main

sys.exit(main())
