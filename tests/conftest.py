"""Shared fixtures: simulated programmes (session-scoped: simulating is the slow part)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
SHARED_CRDS = REPO.parent / "shared" / "data" / "crds"
FULL_SCALE = os.environ.get("COR3_FULL_SCALE", "") not in ("", "0")


@pytest.fixture(scope="session")
def small_programme(tmp_path_factory):
    """Default preset, 2 rolls x 3 integrations, 5-point dither x 2 integrations."""
    from coron3_dask.simulate import simulate_programme

    return simulate_programme(tmp_path_factory.mktemp("sim_small"), n_science_ints=3, n_ref_ints=2, seed=11)


@pytest.fixture(scope="session")
def crds_cache() -> Path:
    if not SHARED_CRDS.is_dir():
        pytest.skip(f"shared CRDS cache not found at {SHARED_CRDS}")
    return SHARED_CRDS


@pytest.fixture(scope="session", autouse=True)
def private_gwcs_cache(tmp_path_factory):
    """Every test (and every process it starts) uses its own gWCS cache, never the user's."""
    old = os.environ.get("CORON3_DASK_CACHE")
    os.environ["CORON3_DASK_CACHE"] = str(tmp_path_factory.mktemp("coron3_dask_cache"))
    yield
    if old is None:
        os.environ.pop("CORON3_DASK_CACHE", None)
    else:
        os.environ["CORON3_DASK_CACHE"] = old

