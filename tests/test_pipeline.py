"""Pipeline graph: building computes nothing, one compute runs every kernel exactly once."""

from __future__ import annotations

import dask
import pytest

from coron3_dask import pipeline
from coron3_dask.config import load_config
from coron3_dask.kernels import align, klip, median_replace, outliers
from coron3_dask.testing import raise_if_dask_computes


@pytest.fixture(scope="module")
def inputs(small_programme):
    return pipeline.open_inputs(small_programme.asn_path, psfmask=small_programme.psfmask_path)


@pytest.mark.parametrize("overrides", [[], ["align_refs.align_to=first"]])
def test_build_computes_nothing(inputs, overrides):
    with raise_if_dask_computes():
        products = pipeline.build(inputs, load_config(overrides=overrides))
    kinds = {kind for kind, _, _ in products.items()}
    assert kinds == {"crfints", "psfstack", "psfalign", "psfsub", "i2d"}


def test_one_compute_runs_each_kernel_once(inputs, small_programme, tmp_path, monkeypatch):
    calls = {"align_one": 0, "klip_one": 0, "median_replace_one": 0, "flag_exposure": 0}

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in [(align, "align_one"), (klip, "klip_one"), (median_replace, "median_replace_one"),
                         (outliers, "flag_exposure")]:
        counting(module, name)
    products = pipeline.build(inputs, load_config())
    ref_blocks = len(next(iter(products.psfalign.values()))["sci"].data.chunks[1])
    with raise_if_dask_computes(max_computes=1):
        pipeline.run(inputs, load_config(), tmp_path, products=products)
    n_sci = sum(ds.sizes["integration"] for ds in inputs.science)
    n_ref = sum(ds.sizes["integration"] for ds in inputs.psf)
    # alignment: one call per (science integration, block of references)
    assert calls == {"align_one": n_sci * ref_blocks, "klip_one": n_sci, "median_replace_one": n_sci + n_ref,
                     "flag_exposure": len(inputs.science) + len(inputs.psf)}


def test_products_are_identical_across_schedulers(inputs, tmp_path):
    """threads and synchronous runs write bit-identical pixel data."""
    import numpy as np
    from astropy.io import fits

    config = load_config(overrides=["resample.skip=true"])
    outs = {}
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler):
            result = pipeline.run(inputs, config, tmp_path / scheduler)
        outs[scheduler] = {p.name: p for p in result.paths}
    assert outs["synchronous"].keys() == outs["threads"].keys()
    for name, path in outs["synchronous"].items():
        with fits.open(path) as a, fits.open(outs["threads"][name]) as b:
            assert [h.name for h in a] == [h.name for h in b]
            for ha, hb in zip(a[1:], b[1:], strict=True):
                if ha.name != "C3D_PROV":
                    np.testing.assert_array_equal(ha.data, hb.data, err_msg=f"{name} {ha.name}")


def test_progress_stages_cover_every_kernel_task(inputs, tmp_path):
    """Every task that runs a kernel or writes a product is attributed to its stage."""
    from collections import Counter

    from dask.utils import key_split

    from coron3_dask.files import writers
    from coron3_dask.files.products import Provenance
    from coron3_dask.progress import STAGES, stage_of

    config = load_config()
    tasks, shifts, _ = writers.plan(pipeline.build(inputs, config), inputs, tmp_path, Provenance({}, []))
    graph = dict(dask.base.collections_to_expr([*tasks, *shifts.values()], optimize_graph=False).__dask_graph__())
    stages = Counter(stage_of(k) for k in graph)
    assert set(STAGES) <= set(stages)
    kernels = ("align", "klip", "flag_exposure", "median_replace", "drizzle", "write")
    unassigned = {key_split(k) for k in graph if stage_of(k) == "other" and any(n in key_split(k) for n in kernels)}
    assert not unassigned
