"""Campaigns: many associations processed on one cluster, resumable after failures."""

from __future__ import annotations

from coron3_dask.campaign.runner import AssociationOutcome, read_list, run_campaign

__all__ = ["AssociationOutcome", "read_list", "run_campaign"]
