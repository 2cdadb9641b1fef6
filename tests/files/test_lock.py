"""One writer per output directory, private partial files, and write errors that name the file."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from dask.callbacks import Callback

from coron3_dask import cli, files, pipeline
from coron3_dask.config import load_config
from coron3_dask.files import fits_stream, lock, write_tasks, writers
from coron3_dask.files.fits_stream import ExtensionSpec, WriteError
from coron3_dask.files.lock import LOCK_NAME, OutputLock, OutputLockedError

ENOSPC_TEXT = f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
TOKEN_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{8})\.partial$")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------- the lock
def test_second_acquirer_is_refused_naming_directory_and_holder(tmp_path):
    with OutputLock(tmp_path, association="/data/x_asn.json") as held:
        assert held.held
        content = json.loads((tmp_path / LOCK_NAME).read_text())
        assert content["pid"] == os.getpid()
        assert content["host"] == socket.gethostname()
        assert content["association"] == "/data/x_asn.json"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", content["started"])
        t0 = time.monotonic()
        with pytest.raises(OutputLockedError) as info:
            OutputLock(tmp_path).acquire()
        assert time.monotonic() - t0 < 0.5, "refused at once, not after waiting"
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "/data/x_asn.json" in message and content["started"] in message
    assert isinstance(info.value, files.InputError)
    assert info.value.directory == tmp_path and info.value.holder == content
    again = pickle.loads(pickle.dumps(info.value))  # travels back from a worker / into a campaign record
    assert type(again) is OutputLockedError and str(again) == message


def test_release_frees_the_directory_and_removes_the_lock_file(tmp_path):
    first = OutputLock(tmp_path).acquire()
    first.release()
    assert not first.held
    assert not (tmp_path / LOCK_NAME).exists(), "a finished run leaves only its products"
    first.release()  # a no-op
    with OutputLock(tmp_path, association="b"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["association"] == "b"


def test_an_exception_releases_the_lock(tmp_path):
    with pytest.raises(KeyError), OutputLock(tmp_path):
        raise KeyError("boom")
    OutputLock(tmp_path).acquire().release()


def test_the_same_object_cannot_acquire_twice(tmp_path):
    with OutputLock(tmp_path) as held, pytest.raises(RuntimeError, match="already held"):
        held.acquire()


def test_threads_of_one_process_exclude_each_other(tmp_path):
    """flock belongs to the open file description: every acquire opens its own."""
    n = 8
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    held: list[OutputLock] = []

    def contend() -> None:
        barrier.wait()
        try:
            held.append(OutputLock(tmp_path).acquire())
            outcomes.append("won")
        except OutputLockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * (n - 1) + ["won"]
    held[0].release()


def test_a_release_racing_with_an_acquire_never_gives_two_holders(tmp_path, monkeypatch):
    """A run that opened the lock file just before the holder unlinked it must not hold a dead lock."""
    holder = OutputLock(tmp_path, association="first").acquire()
    real_open = os.open
    calls = []

    def open_then_holder_releases(path, flags, mode=0o777):
        fd = real_open(path, flags, mode)
        calls.append(path)
        if len(calls) == 1:
            holder.release()  # unlinks the file we just opened, then drops its lock
        return fd

    monkeypatch.setattr(lock.os, "open", open_then_holder_releases)
    second = OutputLock(tmp_path, association="second").acquire()
    monkeypatch.undo()
    assert len(calls) == 2, "the dead (unlinked) lock file was not noticed"
    assert json.loads((tmp_path / LOCK_NAME).read_text())["association"] == "second"
    with pytest.raises(OutputLockedError, match="association second"):
        OutputLock(tmp_path).acquire()
    second.release()


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from coron3_dask.files.lock import OutputLock
    held = OutputLock(sys.argv[1], association="held by child").acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_holder_cannot_leave_the_directory_locked(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=rf"pid {child.pid} on .*held by child"):
            OutputLock(tmp_path).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert (tmp_path / LOCK_NAME).exists(), "SIGKILL gives no chance to clean up"
    with OutputLock(tmp_path, association="after the crash"):  # the stale file is simply reused
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_an_unwritable_directory_names_the_lock_file(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(WriteError, match=rf"cannot create {re.escape(str(missing / LOCK_NAME))}: \[Errno"):
        OutputLock(missing).acquire()


# --------------------------------------------------------------------------- errors name the file
def test_write_block_on_a_full_device_names_the_file():
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with pytest.raises(WriteError) as info:
        fits_stream.write_block("/dev/full", 0, 0, np.ones((1, 64, 64), np.float32), np.float32)
    assert str(info.value) == f"cannot write /dev/full: {ENOSPC_TEXT}"
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert info.value.filename == "/dev/full"
    again = pickle.loads(pickle.dumps(info.value))  # raised on a worker, shown on the client
    assert type(again) is WriteError and str(again) == str(info.value)


def test_preallocate_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    real_open = open
    monkeypatch.setattr(fits_stream, "open", lambda path, mode: real_open("/dev/full", mode), raising=False)
    target = tmp_path / ".x_psfsub.fits.ab12cd34.partial"
    with pytest.raises(WriteError) as info:
        fits_stream.preallocate_fits(target, {}, [ExtensionSpec("DQ", (2, 64, 64), np.uint32)])
    assert str(info.value) == f"cannot write {target}: {ENOSPC_TEXT}"


def test_append_table_and_rename_errors_name_the_file(tmp_path, monkeypatch):
    path = tmp_path / "t.fits"
    fits_stream.preallocate_fits(path, {}, [ExtensionSpec("SCI", (1, 4, 4), np.float32)])
    table = np.zeros(2, dtype=[("a", "i4")])
    real_open = open
    monkeypatch.setattr(fits_stream, "open", lambda p, mode: real_open("/dev/full", "wb"), raising=False)
    with pytest.raises(WriteError, match=rf"^cannot write {re.escape(str(path))}: {re.escape(ENOSPC_TEXT)}$"):
        fits_stream.append_table(path, "T", table)
    monkeypatch.undo()

    def denied(self, target):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(Path, "replace", denied)
    with pytest.raises(WriteError) as info:
        write_tasks.finish(str(path), str(tmp_path / "final.fits"), (), 64, None, 64)
    assert str(info.value) == f"cannot rename {path} to {tmp_path / 'final.fits'}: [Errno {errno.EACCES}] " + (
        os.strerror(errno.EACCES)
    )


def test_atomic_text_write_on_a_full_disk_names_the_temporary_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", _enospc)
    with pytest.raises(WriteError) as info:
        files.write_text(tmp_path / "record.json", "{}")
    monkeypatch.undo()
    assert re.fullmatch(
        rf"cannot write {re.escape(str(tmp_path))}/\.record\.json\.\d+\.[0-9a-f]{{8}}\.partial: "
        + re.escape(ENOSPC_TEXT),
        str(info.value),
    ), str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_finish_never_renames_an_incomplete_file(tmp_path):
    path = tmp_path / "t.fits"
    fits_stream.preallocate_fits(path, {}, [ExtensionSpec("SCI", (2, 4, 4), np.float32)])
    with pytest.raises(RuntimeError, match="not renamed"):
        write_tasks.finish(str(path), str(tmp_path / "final.fits"), (), 128, None, 64)
    assert not (tmp_path / "final.fits").exists()


# --------------------------------------------------------------------------- private partial names
def _cube_extensions() -> dict:
    return {"SCI": (da.ones((3, 8, 8), dtype=np.float32, chunks=(1, 8, 8)), {})}


def test_stream_product_uses_the_run_token(tmp_path):
    task, partial = writers.stream_product(tmp_path / "a.fits", {}, _cube_extensions(), {}, run_token="0123abcd")
    assert partial == tmp_path / ".a.fits.0123abcd.partial" == writers.partial_name(tmp_path / "a.fits", "0123abcd")
    assert not partial.exists(), "planning writes nothing: the graph pre-allocates"
    (done,) = dask.compute(task, scheduler="synchronous")
    assert done == str(tmp_path / "a.fits") and not partial.exists()
    np.testing.assert_array_equal(fits.getdata(tmp_path / "a.fits", "SCI"), np.ones((3, 8, 8), np.float32))
    _, one = writers.stream_product(tmp_path / "b.fits", {}, _cube_extensions(), {})
    _, two = writers.stream_product(tmp_path / "b.fits", {}, _cube_extensions(), {})
    assert one != two, "without a token each call still gets a private name"
    assert TOKEN_PARTIAL.match(one.name) and TOKEN_PARTIAL.match(two.name)


def test_a_failed_preallocation_removes_its_partial(tmp_path, monkeypatch):
    real_open = open

    def half_then_full(path, mode):
        f = real_open(path, mode)
        f.write(b"x" * 100)
        f.flush()
        f.close()
        return real_open("/dev/full", mode)

    monkeypatch.setattr(fits_stream, "open", half_then_full, raising=False)
    task, _ = writers.stream_product(tmp_path / "a.fits", {}, _cube_extensions(), {}, run_token="0123abcd")
    with pytest.raises(WriteError, match=r"\.a\.fits\.0123abcd\.partial"):
        dask.compute(task, scheduler="synchronous")
    assert list(tmp_path.iterdir()) == []


def test_a_straggling_preallocation_after_cleanup_leaves_nothing(tmp_path):
    """A run's cleanup marks it abandoned first: a pre-allocation task that runs later removes its file."""
    plan = {"run_token": "0123abcd", "locked": True}
    with OutputLock(tmp_path, run_token="0123abcd") as held:
        task, partial = writers.stream_product(tmp_path / "a.fits", {}, _cube_extensions(), {}, **plan)
        held.abandon()  # the run failed before this product started
        writers.remove_partials(tmp_path, "0123abcd", [partial])
        with pytest.raises(FileNotFoundError, match="abandoned"):
            dask.compute(task, scheduler="synchronous")
        assert list(tmp_path.iterdir()) == [tmp_path / LOCK_NAME]
    task, partial = writers.stream_product(tmp_path / "b.fits", {}, _cube_extensions(), {}, **plan)
    with pytest.raises(FileNotFoundError, match="abandoned"):  # the run is over: the lock is gone
        dask.compute(task, scheduler="synchronous")
    assert list(tmp_path.iterdir()) == []
    with OutputLock(tmp_path, run_token="0123abcd"):  # a live run writes
        dask.compute(task, scheduler="synchronous")
    assert (tmp_path / "b.fits").exists()


def test_extensions_chunked_alike_are_written_by_one_task_per_block(tmp_path):
    extensions = {
        "SCI": (da.ones((3, 8, 8), dtype=np.float32, chunks=(1, 8, 8)), {}),
        "ERR": (da.full((3, 8, 8), 2, dtype=np.float32, chunks=(1, 8, 8)), {}),
        "DQ": (da.full((3, 8, 8), 4, dtype=np.uint32, chunks=(3, 8, 8)), {}),
    }
    task, _ = writers.stream_product(tmp_path / "a.fits", {}, extensions, {}, run_token="0123abcd")
    names = [dask.utils.key_split(k) for k in task.__dask_graph__()]
    assert names.count("write_blocks") == 3 + 1, "SCI and ERR per integration, DQ in one"
    dask.compute(task, scheduler="threads")
    with fits.open(tmp_path / "a.fits") as hdul:
        np.testing.assert_array_equal(hdul["SCI"].data, 1)
        np.testing.assert_array_equal(hdul["ERR"].data, 2)
        np.testing.assert_array_equal(hdul["DQ"].data, 4)


@pytest.fixture(scope="module")
def inputs(small_programme):
    return pipeline.open_inputs(small_programme.asn_path, psfmask=small_programme.psfmask_path)


def test_a_run_holds_the_lock_writes_private_partials_and_touches_nothing_else(inputs, tmp_path):
    """Private partials; other files untouched; a dead run's partial (no live holder) is cleaned up."""
    out = tmp_path / "out"
    out.mkdir()
    dead = out / ".other_psfsub.fits.deadbeef.partial"
    dead.write_bytes(b"a SIGKILLed run's partial")
    foreign = {out / "notes.txt": b"mine"}
    for path, content in foreign.items():
        path.write_bytes(content)
    seen: dict[str, object] = {}

    partials: set[str] = set()

    class WatchPartials(Callback):  # the graph pre-allocates: look while it runs
        def _posttask(self, key, result, dsk, state, worker_id):
            partials.update(p.name for p in out.iterdir() if TOKEN_PARTIAL.match(p.name))

    def compute(*collections):
        with pytest.raises(OutputLockedError) as info:
            OutputLock(out).acquire()
        seen["refusal"] = str(info.value)
        with WatchPartials():
            return dask.compute(*collections, scheduler="synchronous", optimize_graph=False)

    result = pipeline.run(inputs, load_config(), out, compute=compute)
    seen["tokens"] = {TOKEN_PARTIAL.match(n)["token"] for n in partials}
    seen["names"] = {TOKEN_PARTIAL.match(n)["name"] for n in partials}
    assert len(seen["tokens"]) == 1, seen["tokens"]
    assert seen["names"] == {p.name for p in result.paths}
    assert f"pid {os.getpid()}" in seen["refusal"] and str(inputs.association.path) in seen["refusal"]
    for path, content in foreign.items():
        assert path.read_bytes() == content, f"{path.name} was touched"
    assert not dead.exists()
    left = sorted(p.name for p in out.iterdir())
    expected = [*(p.name for p in result.paths), pipeline.run_record_name(inputs.association.product_name)]
    assert left == sorted([*expected, *(p.name for p in foreign)])


def test_an_interrupted_run_removes_its_partials_and_releases_the_lock(inputs, tmp_path):
    out = tmp_path / "out"
    seen = []

    class Interrupt(Callback):  # Ctrl-C once the graph has pre-allocated a product
        def _posttask(self, key, result, dsk, state, worker_id):
            seen.extend(p.name for p in out.iterdir() if TOKEN_PARTIAL.match(p.name))
            if seen:
                raise KeyboardInterrupt

    def interrupted(*collections):
        with Interrupt():
            return dask.compute(*collections, scheduler="synchronous", optimize_graph=False)

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(inputs, load_config(), out, compute=interrupted)
    assert seen, "no partial file existed while computing"
    assert list(out.iterdir()) == []
    OutputLock(out).acquire().release()


def _data(path: Path) -> dict[str, np.ndarray]:
    with fits.open(path) as hdul:
        hdul.verify("exception")
        return {hdu.name: np.array(hdu.data) for hdu in hdul[1:] if isinstance(hdu, fits.ImageHDU)}


def _assert_same_data(directory: Path, clean: Path) -> None:
    products = sorted(p.name for p in clean.glob("*.fits"))
    assert sorted(p.name for p in directory.glob("*.fits")) == products
    for name in products:
        got, want = _data(directory / name), _data(clean / name)
        assert list(got) == list(want), name
        assert {"SCI", "ERR"} <= set(want), name
        for ext in want:
            np.testing.assert_array_equal(got[ext], want[ext], err_msg=f"{name}[{ext}]")


def _cli_run(prog, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "coron3_dask.cli",
        "run",
        str(prog.asn_path),
        "--output-dir",
        str(out),
        "--psfmask",
        str(prog.psfmask_path),
        "--scheduler",
        "synchronous",
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def clean_run(small_programme, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lock_clean") / "products"
    proc = subprocess.run(_cli_run(small_programme, out), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_full_disk_mid_run_names_the_file_and_keeps_the_old_products(
    clean_run, small_programme, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "products"
    out.mkdir()
    for path in clean_run.iterdir():
        out.joinpath(path.name).write_bytes(path.read_bytes())
    record = pipeline.run_record_name(json.loads(small_programme.asn_path.read_text())["products"][0]["name"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_open = open
    block_writes = []

    def full_after_a_while(path, mode="r", *args, **kwargs):
        if mode == "r+b":
            block_writes.append(path)
            if len(block_writes) > 20:
                return real_open("/dev/full", mode)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(fits_stream, "open", full_after_a_while, raising=False)
    code = cli.main(_cli_run(small_programme, out)[3:])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1
    (line,) = err.splitlines()
    match = re.fullmatch(rf"coron3-dask: error: cannot write (?P<path>\S+): {re.escape(ENOSPC_TEXT)}", line)
    assert match, line
    written = Path(match["path"])
    assert written.parent == out and TOKEN_PARTIAL.match(written.name), written
    assert sorted(p.name for p in out.iterdir()) == sorted(before), "a partial or the lock file was left behind"
    assert (out / record).read_bytes() == before[record]
    _assert_same_data(out, clean_run)  # untouched, or replaced by a complete rewrite


def test_two_cli_runs_into_one_directory(clean_run, small_programme, tmp_path):
    """The issue's reproduction: two runs 0.5 s apart; one is refused at once, the other is correct."""
    out = tmp_path / "products"
    first = subprocess.Popen(_cli_run(small_programme, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(_cli_run(small_programme, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [first, second]
    ended: dict[int, float] = {}
    while len(ended) < 2:
        for i, proc in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.monotonic()
        time.sleep(0.02)
    outputs = [proc.communicate(timeout=60) for proc in procs]
    codes = [proc.returncode for proc in procs]
    assert sorted(codes) == [0, 1], (codes, [e for _, e in outputs])
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert ended[loser] < ended[winner], "the refused run waited instead of failing at once"
    (line,) = outputs[loser][1].splitlines()
    assert line.startswith("coron3-dask: error: output directory ")
    assert str(out.resolve()) in line
    assert f"pid {procs[winner].pid} on {socket.gethostname()}" in line
    assert str(small_programme.asn_path) in line
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "partial or lock files left behind"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean_run.iterdir())
    _assert_same_data(out, clean_run)


def test_finish_never_recreates_a_removed_partial(tmp_path, monkeypatch):
    spec = [fits_stream.ExtensionSpec("SCI", (4, 4), np.float32)]
    tmp = tmp_path / ".x.fits.tok.partial"
    final = tmp_path / "x.fits"
    final.write_bytes(b"earlier product")
    offsets = fits_stream.preallocate_fits(tmp, {}, spec)
    n = fits_stream.write_block(tmp, offsets["SCI"], 0, np.ones((4, 4), np.float32), np.float32)
    table = np.zeros(1, dtype=[("a", "i4")])
    real_append = fits_stream.append_table
    def append_after_cleanup(path, *a, **k):
        Path(path).unlink()  # the run's cleanup wins the race
        return real_append(path, *a, **k)
    monkeypatch.setattr(fits_stream, "append_table", append_after_cleanup)
    with pytest.raises(OSError, match="removed"):
        write_tasks.finish(str(tmp), str(final), ("T",), n, None, table, n)
    assert final.read_bytes() == b"earlier product" and not tmp.exists()
    tmp.unlink(missing_ok=True)
    with pytest.raises(OSError, match="cannot open"):
        write_tasks.finish(str(tmp), str(final), ("T",), n, None, table, n)
    assert final.read_bytes() == b"earlier product" and not tmp.exists()


def test_partials_of_a_killed_run_are_removed_by_the_next_holder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".x_psfalign.fits.deadbeef.partial", out / ".run.json.123.cafe.partial"]
    for path in stale:
        path.write_bytes(b"left by a SIGKILLed run")
    keep = out / "x_psfsub.fits"
    keep.write_bytes(b"a product")
    with OutputLock(out):
        removed = writers.remove_stale_partials(out)
    assert sorted(removed) == sorted(stale) and not any(p.exists() for p in stale) and keep.exists()


def test_the_first_block_write_creates_the_file_once_even_across_processes(tmp_path):
    """Writers in several processes race to pre-allocate: one file, every block in it."""
    extensions = {"SCI": (da.arange(6 * 16, dtype=np.float32, chunks=16).reshape(6, 4, 4).rechunk((1, 4, 4)), {})}
    task, _ = writers.stream_product(tmp_path / "p.fits", {"TELESCOP": "JWST"}, extensions, {})
    (done,) = dask.compute(task, scheduler="processes", num_workers=3)
    np.testing.assert_array_equal(fits.getdata(done, "SCI"), np.arange(96, dtype=np.float32).reshape(6, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.fits"], "no scratch or partial file left"
