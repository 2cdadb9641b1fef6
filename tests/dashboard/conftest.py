"""Fixtures of the dashboard tests."""

from __future__ import annotations

import pytest
from campaign_state import make_campaign


@pytest.fixture
def campaign(tmp_path):
    camp = make_campaign(tmp_path / "out")
    yield camp
    camp.close()
