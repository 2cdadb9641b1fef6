"""Campaigns: many associations processed concurrently on one cluster, state in SQLite, resumable."""

from __future__ import annotations

from coron3_dask.campaign.attempt import Executor, Outcome, Settings
from coron3_dask.campaign.runner import Campaign, CampaignLockedError, CampaignResult
from coron3_dask.files.records import read_list

__all__ = ["Campaign", "CampaignLockedError", "CampaignResult", "Executor", "Outcome", "Settings", "read_list"]
