"""Campaign fixtures: many small simulated associations with distinct product names, a real cluster."""

from __future__ import annotations

import pytest
from campaign_helpers import Cluster, make_programmes


@pytest.fixture(scope="session")
def few(tmp_path_factory):
    """Three associations."""
    return make_programmes(tmp_path_factory.mktemp("campaign_few"), 3, seed=20)


@pytest.fixture(scope="session")
def ten(tmp_path_factory):
    """Ten associations (the fault tests' campaign)."""
    return make_programmes(tmp_path_factory.mktemp("campaign_ten"), 10, seed=40)


@pytest.fixture
def real_cluster(tmp_path):
    cluster = Cluster(tmp_path / "cluster_work")
    yield cluster
    cluster.close()
