"""Graph keys named after the pipeline steps: what the Dask dashboard shows is the pipeline's language.

``dask.utils.key_split`` of every key (the dashboard's task prefix: progress bars, task stream) is
a step name, ``distributed.utils.key_split_group`` (the task group) names step and association,
and renaming changes nothing else: same tasks, same products, byte for byte.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from dask.utils import funcname, key_split
from distributed.utils import key_split_group

import coron3_dask
from coron3_dask import pipeline
from coron3_dask.config import load_config
from coron3_dask.graph_names import association_slug, name_by_step
from coron3_dask.progress import STAGES, STEPS, stage_of

STEP_SET = set(STEPS)


def _graph(collections) -> dict:
    return dict(dask.base.collections_to_expr(list(collections), optimize_graph=False).__dask_graph__())


# -- the association's slug never extends the prefix ------------------------------------------


@pytest.mark.parametrize("label", [
    "jw01386-c1000_t001_nircam_f335m-maskrnd-sub320a335r",
    "maskrnd-jw01386",  # a purely alphabetic first word would extend the prefix
    "deadbeef-target",  # eight hex letters: key_split's own exception
    "target",
    "my target (v2)",
    "",
    "-leading-dash",
    "ünïcode-name",
    "0123abcd",
])
def test_slug_never_extends_the_step_prefix(label):
    slug = association_slug(label)
    for step in STEPS:
        name = f"{step}-{slug}-0a1b2c3d4e5f6a7b"
        assert key_split((name, 0, 1)) == step
        assert key_split((name,)) == step
        assert key_split(str((name, 0, 1))) == step  # as the dashboard may see a stringified key
        assert key_split_group((name, 0, 1)) == name
        assert key_split_group((name,)) == name
        assert key_split_group(str((name, 0))) == name
        assert stage_of((name, 3)) == step


# -- a small graph with plumbing ---------------------------------------------------------------


def read_block(block: np.ndarray) -> np.ndarray:
    return block + 1


def klip_block(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return block * weights


def write_sum(*blocks: np.ndarray) -> float:
    return float(sum(b.sum() for b in blocks))


def _toy():
    """read -> rechunk -> klip -> transpose -> write, and two constants (plumbing without producers)."""
    base = da.ones((4, 6), chunks=(2, 3))  # consumed by a read task
    weights = da.full((4, 6), 2.0, chunks=(4, 2))  # consumed by a klip task
    read = base.map_blocks(read_block)
    klipped = da.map_blocks(klip_block, read.rechunk((4, 2)), weights).T
    written = dask.delayed(write_sum, pure=True)(*klipped.to_delayed(optimize_graph=False).ravel().tolist())
    return [written, klipped, base, weights, read]


def test_toy_graph_is_renamed_by_step_and_computes_the_same():
    collections = _toy()
    renamed = name_by_step(collections, "jw00001-a3001_toy")
    assert [type(c) for c in renamed] == [type(c) for c in collections]
    for old, new in zip(collections[1:], renamed[1:], strict=True):
        assert (new.chunks, new.dtype, type(new._meta)) == (old.chunks, old.dtype, type(old._meta))
    assert [key_split(c.name) for c in renamed[1:]] == ["klip", "read", "klip", "read"]  # transpose, constants
    before, after = _graph(collections), _graph(renamed)
    assert len(after) == len(before)
    prefixes = Counter(key_split(k) for k in after)
    assert set(prefixes) == {"read", "klip", "write"} and prefixes["write"] == 1 and prefixes["klip"] == 9
    assert all(key_split_group(k).startswith(f"{key_split(k)}-jw00001-a3001_toy-") for k in after)
    klip_funcs = {funcname(n.func) for k, n in after.items() if key_split(k) == "klip"}
    assert klip_funcs == {"klip_block", "transpose", "full_like"}
    results = dask.compute(*renamed, optimize_graph=False, scheduler="sync")
    expected = dask.compute(*collections, optimize_graph=False, scheduler="sync")
    assert results[0] == expected[0] == 4 * 6 * 2 * 2
    for got, want in zip(results[1:], expected[1:], strict=True):
        np.testing.assert_array_equal(got, want)
    # each collection keeps exactly its own tasks
    for old, new in zip(collections, renamed, strict=True):
        assert len(_graph([new])) == len(_graph([old]))
    np.testing.assert_array_equal(renamed[1].compute(scheduler="sync", optimize_graph=False), expected[1])
    np.testing.assert_array_equal(renamed[1].compute(scheduler="sync"), expected[1])  # optimised too


def test_renaming_is_deterministic_and_idempotent():
    collections = _toy()
    once = _graph(name_by_step(collections, "asn-1"))
    assert list(once) == list(_graph(name_by_step(_toy(), "asn-1")))  # rebuilt: same keys
    assert list(once) == list(_graph(name_by_step(name_by_step(collections, "asn-1"), "asn-1")))
    assert set(once).isdisjoint(_graph(name_by_step(collections, "asn-2")))


def test_only_dask_collections_are_renamed():
    assert name_by_step([], "x") == []
    with pytest.raises(TypeError, match="Delayed and dask Array"):
        name_by_step([np.ones(3)], "x")


def test_callable_annotations_leave_the_graph_alone():
    with dask.annotate(priority=lambda key: 1):
        array = da.ones(4, chunks=2) + 1
    assert name_by_step([array], "x")[0] is array


# -- a pipeline run ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small programme: two science integrations, one reference exposure of two."""
    from coron3_dask.simulate import simulate_programme

    sim = simulate_programme(tmp_path_factory.mktemp("sim_names"), n_science_ints=2, n_ref_ints=2, n_dither=1)
    return coron3_dask.open_inputs(sim.asn_path, psfmask=sim.psfmask_path)


def _recording(seen: list):
    def compute(*collections):
        seen.append(collections)
        return dask.compute(*collections, optimize_graph=False)

    return compute


def _arrays(paths) -> dict:
    out = {}
    for path in sorted(paths):
        with fits.open(path) as hdul:
            for hdu in hdul[1:]:
                if hdu.name != "C3D_PROV" and hdu.data is not None:
                    data = np.asarray(hdu.data)
                    out[Path(path).name, hdu.name] = (data.dtype.str, data.shape, data.tobytes())
    return out


def test_run_names_every_task_after_its_step_and_writes_the_same_bytes(inputs, tmp_path, monkeypatch):
    config = load_config()
    named, raw = [], []
    with dask.config.set(scheduler="synchronous"):
        result = pipeline.run(inputs, config, tmp_path / "named", compute=_recording(named))
        with monkeypatch.context() as m:
            m.setattr(pipeline, "name_by_step", lambda collections, label: list(collections))
            reference = pipeline.run(inputs, config, tmp_path / "raw", compute=_recording(raw))
    # byte-identical products
    got, want = _arrays(result.paths), _arrays(reference.paths)
    assert got.keys() == want.keys() and len({name for name, _ in got}) == len(result.paths) > 5
    for key, value in want.items():
        assert got[key] == value, key
    for name, params in reference.shifts.items():
        np.testing.assert_array_equal(result.shifts[name], params)
    # every key is named after a step and carries the association
    (collections,), ((raw_collections),) = named, raw
    assert [type(c) for c in collections] == [type(c) for c in raw_collections]
    graph, raw_graph = _graph(collections), _graph(raw_collections)
    assert len(graph) == len(raw_graph)
    prefixes = Counter(key_split(k) for k in graph)
    raw_stages = Counter(stage_of(k) for k in raw_graph)
    assert set(prefixes) <= STEP_SET and set(raw_stages) - {"other"} <= set(prefixes)
    assert set(STAGES) - {"stack_refs"} <= set(prefixes)  # one reference exposure: nothing to stack
    assert prefixes["check"] > 0  # the usable-data guard
    slug = association_slug(inputs.association.product_name)
    assert all(key_split_group(k).startswith(f"{key_split(k)}-{slug}-") for k in graph)
    assert all(stage_of(k) == key_split(k) for k in graph)
    # kernels keep their stage; plumbing found a step, never "other"
    assert raw_stages["other"] > 50, "the raw graph has plumbing to name"
    assert all(prefixes[s] >= raw_stages[s] for s in STEPS) and sum(prefixes.values()) == sum(raw_stages.values())
    for key, node in graph.items():
        func = getattr(node, "func", None)
        kernel = stage_of(funcname(func)) if func is not None else "other"
        assert kernel in ("other", key_split(key)), (key, funcname(func))


def test_renaming_is_cheap(inputs, tmp_path):
    from coron3_dask.files import writers
    from coron3_dask.files.products import Provenance

    tasks, shifts, _ = writers.plan(pipeline.build(inputs, load_config()), inputs, tmp_path, Provenance({}, []))
    collections = [*tasks, *shifts.values()]
    n = len(_graph(collections))
    name_by_step(collections, "warm-up")
    seconds = min(_timed(name_by_step, collections, "asn") for _ in range(5))
    assert seconds < 200e-6 * n, f"{seconds * 1e3:.1f} ms for {n} tasks"  # measured: 15-20 us a task


def _timed(func, *args) -> float:
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def _group_recorder(scheduler):
    """Scheduler plugin: the name of every task group the scheduler made (groups go once their tasks are forgotten)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class GroupRecorder(SchedulerPlugin):
        name = "record-task-groups"

        def __init__(self) -> None:
            self.names: set[str] = set()

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            task = scheduler.tasks.get(key)
            if task is not None:
                self.names.add(task.group.name)

    return GroupRecorder()


def test_distributed_dashboard_shows_only_step_prefixes(inputs, tmp_path):
    """An in-process cluster: the scheduler's task prefixes are the steps, its groups name the association."""
    from distributed import Client, LocalCluster

    from coron3_dask.cli.schedulers import distributed_compute
    from coron3_dask.progress import StageBoard

    seen: list = []
    stream = io.StringIO()
    board = StageBoard(stream, log_interval=0.0)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        groups = _group_recorder(cluster.scheduler)
        cluster.scheduler.add_plugin(groups)
        submit = distributed_compute(client, board)

        def compute(*collections):
            seen.append(collections)
            return submit(*collections)

        result = pipeline.run(inputs, load_config(), tmp_path, compute=compute)
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert result.paths
    graph = _graph(seen[0])
    assert set(prefixes) <= STEP_SET and set(prefixes) == {key_split(k) for k in graph}, prefixes
    slug = association_slug(inputs.association.product_name)
    assert len(groups.names) > 50  # one per original layer or delayed task
    assert all(g.startswith(tuple(f"{s}-{slug}-" for s in STEPS)) for g in groups.names), groups.names
    # the progress line counted every task under its stage
    counts = Counter(stage_of(k) for k in graph)
    assert dict(board.all) == dict(counts) and not sum(board.remaining.values())
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.startswith("[100.0%]")
    assert f"klip {counts['klip']}/{counts['klip']}" in line and f"align {counts['align_refs']}/" in line

