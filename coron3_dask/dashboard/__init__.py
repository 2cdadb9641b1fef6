"""The campaign dashboard: a live web page, an HTML report and a text table of a campaign's state.

Everything here reads the campaign's state database (``OUT/campaign.sqlite``) and never writes
it: :class:`~coron3_dask.dashboard.server.DashboardServer` serves the live page and the files of
an output root, :func:`~coron3_dask.dashboard.report.write_report` writes
``OUT/campaign_report.html`` and :func:`~coron3_dask.dashboard.tables.status_table` formats the
table of ``coron3-dask campaign status``.  The server (tornado) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from coron3_dask.dashboard.report import write_report
from coron3_dask.dashboard.tables import status_table

if TYPE_CHECKING:
    from coron3_dask.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "status_table", "write_report"]


def __getattr__(name: str) -> Any:
    """Load :class:`DashboardServer` (and tornado) on first access (PEP 562)."""
    if name == "DashboardServer":
        return importlib.import_module("coron3_dask.dashboard.server").DashboardServer
    raise AttributeError(f"module 'coron3_dask.dashboard' has no attribute {name!r}")
