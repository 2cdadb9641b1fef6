"""klip_regions: regions as independent tasks, truncations from one basis, the ADI reference selection."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from coron3_dask.config import load_config
from coron3_dask.kernels import klip as kernel
from coron3_dask.stages.klip import klip, klip_regions, optimisation_regions, reference_use

SHAPE = (48, 56)
CENTER = (27.3, 22.6)


def _data(n_int=3, n_ref=8, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(SHAPE)
    r = np.hypot(xx - CENTER[0], yy - CENTER[1])
    psf = 100 * np.exp(-r / 6.0)
    modes = rng.normal(size=(4, *SHAPE))
    refs = (
        psf + np.tensordot(rng.normal(size=(n_int, n_ref, 4)), modes, axes=1) + rng.normal(size=(n_int, n_ref, *SHAPE))
    )
    target = psf + np.tensordot(rng.normal(size=(n_int, 4)), modes, axes=1) + rng.normal(size=(n_int, *SHAPE))
    return (
        xr.DataArray(target.astype(np.float32), dims=("integration", "y", "x")),
        xr.DataArray(refs.astype(np.float32), dims=("integration", "ref", "y", "x")),
    )


def _params(**kw):
    return load_config(overrides=[f"klip.{k}={v}" for k, v in kw.items()]).klip


def test_whole_frame_region_equals_the_official_klip_bit_for_bit():
    target, library = _data()
    regions = np.ones((1, *SHAPE), dtype=bool)
    out = klip_regions(target, library, regions, np.ones((1, 8), bool), numbasis=(3, 8, 20))
    with dask.config.set(scheduler="sync"):
        out = out.compute()
        for m, k in enumerate((3, 8, 20)):
            official = klip(target, library, truncate=k).compute()
            assert np.array_equal(out["sci"][:, m].values, official["sci"].values)
            assert np.array_equal(out["err"][:, m].values, official["err"].values)
    assert list(out["truncation"].values) == [3, 8, 20]


def test_each_region_is_klip_on_its_own_pixels_and_a_task_of_its_own():
    target, library = _data()
    params = _params(annuli=3, subsections=2, iwa=4)
    masks, _radii = optimisation_regions(SHAPE, CENTER, params)
    assert masks.shape == (6, *SHAPE) and np.all(masks.sum(axis=0) <= 1)  # disjoint
    yy, xx = np.indices(SHAPE)
    assert not masks.any(axis=0)[np.hypot(xx - CENTER[0], yy - CENTER[1]) < 4].any()  # IWA left out
    out = klip_regions(target, library, masks, np.ones((6, 8), bool), numbasis=(2, 5))
    blocks = [
        k for k in out["sci"].data.__dask_graph__() if "regions_block" in str(k[0] if isinstance(k, tuple) else k)
    ]
    assert len({k[1:3] for k in blocks}) == 3 * 6  # one task per (integration, region)
    out = out.compute(scheduler="sync")
    for r in range(6):
        sel = masks[r]
        expected, _ = kernel.klip_modes(target.values[1][sel], library.values[1][:, sel], numbasis=(2, 5))
        np.testing.assert_array_equal(out["sci"].values[1][:, sel], expected)
    assert np.isnan(out["sci"].values[:, :, ~masks.any(axis=0)]).all()


def test_adi_selection_excludes_self_references_that_moved_too_little():
    params = _params(annuli=4, iwa=2, owa=26, movement=3)
    _masks, radii = optimisation_regions(SHAPE, CENTER, params)
    delta = np.array([0, 0, 0, 10, 10, 10])  # three PSF references, three frames of a roll 10 deg away
    use = reference_use(radii, delta, np.array([False] * 3 + [True] * 3), params)
    assert use[:, :3].all()  # PSF references always
    moved = 2 * radii * np.sin(np.radians(5))
    np.testing.assert_array_equal(use[:, 3], moved >= 3)
    assert not use[0, 3] and use[-1, 3]  # the innermost annulus barely moves, the outermost does
    minrot = reference_use(radii, delta, np.array([False] * 3 + [True] * 3), _params(movement=0, minrot=15))
    assert not minrot[:, 3:].any()


def test_a_region_without_two_references_is_nan_and_none_at_all_is_refused():
    target, library = _data(n_ref=4)
    masks, _ = optimisation_regions(SHAPE, CENTER, _params(annuli=2))
    use = np.ones((2, 4), bool)
    use[0, 1:] = False
    out = klip_regions(target, library, masks, use, numbasis=(2,)).compute(scheduler="sync")
    assert np.isnan(out["sci"].values[:, :, masks[0]]).all()
    assert np.isfinite(out["sci"].values[:, :, masks[1]]).all()
    with pytest.raises(ValueError, match="no optimisation region has two usable references"):
        klip_regions(target, library, masks, np.zeros((2, 4), bool), numbasis=(2,))


def test_shared_reference_set_broadcasts_to_every_integration():
    target, library = _data()
    masks = np.ones((1, *SHAPE), bool)
    shared = klip_regions(target, library[:1], masks, np.ones((1, 8), bool), numbasis=(4,)).compute(scheduler="sync")
    for i in range(3):
        expected, _ = kernel.klip_modes(target.values[i], library.values[0], numbasis=(4,))
        np.testing.assert_array_equal(shared["sci"].values[i], expected)
