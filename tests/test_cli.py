"""The ``coron3-dask`` command line: help, simulate, the products of ``run``, and user mistakes.

Runs use tiny simulated programmes (2 science exposures x 2 integrations, one reference
exposure x 2 integrations) and local schedulers, so the whole module takes a few seconds.
The expected product names are derived here from the association with the spec's rule
(§2.3), independently of ``coron3_dask.files.products``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as io_module
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from helpers import restored_process_state

import coron3_dask
from coron3_dask import cli, files
from coron3_dask.config import ConfigError
from coron3_dask.files import InputError
from coron3_dask.kernels import klip as klip_kernels
from coron3_dask.simulate import simulate_programme

EXE = Path(sys.executable).with_name("coron3-dask")
ERROR_PREFIX = "coron3-dask: error: "
FRAME = (320, 320)  # SUB320A335R, the default preset
N_SCI_INT = N_REF_INT = 2


# --------------------------------------------------------------------------- helpers
def run_main(*argv: Any) -> int:
    """``cli.main`` in-process, with every argument turned into a string."""
    with restored_process_state():
        return cli.main([str(a) for a in argv])


def run_args(prog: Any, out: Path, *extra: Any, asn: Path | None = None, psfmask: Path | None = None) -> list[Any]:
    """``run`` arguments for a programme: its ASN and PSFMASK, a local scheduler, no progress bar."""
    return ["run", asn or prog.asn_path, "--output-dir", out, "--psfmask", psfmask or prog.psfmask_path,
            "--scheduler", "threads", "--no-progress", *extra]


def expected_products(asn_path: Path) -> set[str]:
    """Official product names of an association, by the spec §2.3 rule applied by hand."""
    asn = json.loads(asn_path.read_text())
    asn_id, product = asn["asn_id"], asn["products"][0]["name"]
    names = {f"{product}_psfstack.fits", f"{product}_i2d.fits"}
    for member in asn["products"][0]["members"]:
        assert member["expname"].endswith("_calints.fits")
        root = member["expname"][: -len("_calints.fits")]
        names.add(f"{root}_{asn_id}_crfints.fits")
        if member["exptype"] == "science":
            names |= {f"{root}_{asn_id}_psfalign.fits", f"{root}_{asn_id}_psfsub.fits"}
    return names


def record_name(asn_path: Path) -> str:
    return json.loads(asn_path.read_text())["products"][0]["name"] + "_coron3_dask.json"


def everything_in(directory: Path) -> list[str]:
    """Every file name under ``directory``, hidden ones included ([] if it does not exist)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


def digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in everything_in(directory)}


def provenance(path: Path) -> dict[str, str]:
    """The C3D_PROV table of a product as ``{key: value}`` (independent read with astropy)."""
    table = fits.getdata(path, "C3D_PROV")
    return {str(row["key"]).strip(): str(row["value"]).strip() for row in table}


def member_paths(prog: Any) -> set[str]:
    return {str(Path(p).resolve()) for p in (prog.asn_path, *prog.science_files, *prog.psf_files)}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    """2 science exposures (rolls) x 2 integrations, 1 reference exposure x 2 integrations."""
    return simulate_programme(tmp_path_factory.mktemp("cli_prog"), n_science_ints=N_SCI_INT,
                              n_ref_ints=N_REF_INT, n_dither=1, seed=23)


@dataclass(frozen=True)
class Run:
    out: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def record(self) -> dict[str, Any]:
        (path,) = self.out.glob("*_coron3_dask.json")
        return json.loads(path.read_text())


@pytest.fixture(scope="module")
def default_run(programme, tmp_path_factory) -> Run:
    """The documented command, as a real process: ``coron3-dask run ASN --output-dir D --scheduler threads``."""
    if not EXE.is_file():
        pytest.skip(f"console script not installed at {EXE}")
    out = tmp_path_factory.mktemp("cli_default") / "products"
    argv = [str(EXE), "run", str(programme.asn_path), "--output-dir", str(out), "--scheduler", "threads",
            "--psfmask", str(programme.psfmask_path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=out.parent, check=False)
    return Run(out, proc.returncode, proc.stdout, proc.stderr)


def _captured_main(out: Path, *argv: Any) -> Run:
    """``cli.main`` in-process with its stdout and stderr kept for the assertions."""
    stdout, stderr = io_module.StringIO(), io_module.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_main(*argv)
    return Run(out, code, stdout.getvalue(), stderr.getvalue())


def _in_process_run(programme, tmp_path_factory, name: str, *extra: Any) -> Run:
    out = tmp_path_factory.mktemp(name) / "products"
    return _captured_main(out, *run_args(programme, out, *extra))


@pytest.fixture(scope="module")
def compat_run(programme, tmp_path_factory) -> Run:
    return _in_process_run(programme, tmp_path_factory, "cli_compat", "--jwst-compat", "--set", "resample.skip=true")


@pytest.fixture(scope="module")
def truncate_run(programme, tmp_path_factory) -> Run:
    """``--set klip.truncate=3``, with the PSFMASK found through a CRDS-style cache (--crds-path)."""
    crds = tmp_path_factory.mktemp("crds")
    cached = crds / "references" / "jwst" / "nircam" / programme.psfmask_path.name
    cached.parent.mkdir(parents=True)
    shutil.copyfile(programme.psfmask_path, cached)
    out = tmp_path_factory.mktemp("cli_truncate") / "products"
    return _captured_main(out, "run", programme.asn_path, "--output-dir", out, "--crds-path", crds, "--scheduler",
                          "synchronous", "--no-progress", "--set", "klip.truncate=3", "--set", "resample.skip=true")


@pytest.fixture(scope="module")
def config_run(programme, tmp_path_factory) -> Run:
    """A TOML file that sets klip.truncate=7 and maskpt=0.5, then ``--set klip.truncate=2``."""
    toml = tmp_path_factory.mktemp("cli_config") / "coron3.toml"
    toml.write_text("[klip]\ntruncate = 7\n\n[outlier_detection]\nmaskpt = 0.5\n")
    return _in_process_run(programme, tmp_path_factory, "cli_config_run", "--config", toml,
                           "--set", "klip.truncate=2", "--set", "resample.skip=true")


# --------------------------------------------------------------------------- help
@pytest.mark.parametrize(("argv", "mentions"), [
    ([], ["run", "simulate", "demo", "--debug", "--verbose", "--version"]),
    (["run"], ["asn", "--output-dir", "--psfmask", "--crds-path", "--config", "--set", "STEP.PARAM=VALUE",
               "--jwst-compat", "--no-save-psfalign", "--scheduler", "--scheduler-file", "--workers",
               "--no-progress"]),
    (["simulate"], ["out_dir", "--preset", "SUB320A335R", "SUB640A210R", "MASK1550", "--science-ints", "--ref-ints",
                    "--dither", "--seed"]),
    (["demo"], ["--dir", "--scheduler", "--workers"]),
], ids=["top", "run", "simulate", "demo"])
def test_help_exits_zero_and_lists_the_options(argv, mentions, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(*argv, "--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    missing = [m for m in mentions if m not in text]
    assert not missing, f"`coron3-dask {' '.join(argv)} --help` does not mention {missing}:\n{text}"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main("--version")
    assert exit_info.value.code == 0
    assert coron3_dask.__version__ in capsys.readouterr().out


def test_help_as_a_real_process():
    if not EXE.is_file():
        pytest.skip(f"console script not installed at {EXE}")
    proc = subprocess.run([str(EXE), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage: coron3-dask" in proc.stdout
    assert all(cmd in proc.stdout for cmd in ("run", "simulate", "demo"))


# --------------------------------------------------------------------------- simulate
def _fits_shape(path: Path, ext: str = "SCI") -> tuple[int, ...]:
    with fits.open(path) as hdul:
        return tuple(hdul[ext].data.shape)


@pytest.mark.parametrize(("preset", "dither", "frame", "instrument"), [
    ("SUB320A335R", None, (320, 320), "NIRCAM"),
    ("MASK1550", "1", (224, 288), "MIRI"),
])
def test_simulate_writes_a_complete_programme(preset, dither, frame, instrument, tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["simulate", out, "--preset", preset, "--science-ints", "2", "--ref-ints", "2"]
    assert run_main(*argv, *(["--dither", dither] if dither else [])) == 0
    capsys.readouterr()
    (asn_path,) = out.glob("*_asn.json")
    asn = json.loads(asn_path.read_text())
    assert asn["asn_type"] == "coron3"
    members = asn["products"][0]["members"]
    science = [m["expname"] for m in members if m["exptype"] == "science"]
    psf = [m["expname"] for m in members if m["exptype"] == "psf"]
    n_dither = int(dither or 5)  # the documented default is a 5-point dither
    assert (len(science), len(psf)) == (2, n_dither)
    assert sorted(p.name for p in out.glob("*_calints.fits")) == sorted(science + psf)
    for name in science + psf:
        assert _fits_shape(out / name) == (2, *frame)
        assert fits.getval(out / name, "INSTRUME") == instrument
    (mask,) = out.glob("*psfmask*.fits")
    assert fits.getval(mask, "REFTYPE") == "PSFMASK"
    assert _fits_shape(mask) == frame
    truth = json.loads((out / "truth.json").read_text())
    assert sorted(e["file"] for e in truth["exposures"]) == sorted(science + psf)


# --------------------------------------------------------------------------- run: products and record
def test_run_writes_the_official_product_set(default_run, programme):
    assert default_run.returncode == 0, default_run.stderr
    assert "Traceback" not in default_run.stderr
    expected = expected_products(programme.asn_path) | {record_name(programme.asn_path)}
    assert everything_in(default_run.out) == sorted(expected)  # nothing else: no hidden .partial files
    n_members = len(programme.science_files) + len(programme.psf_files)
    assert len(expected) == n_members + 2 * len(programme.science_files) + 2 + 1
    for name in expected_products(programme.asn_path):
        assert name in default_run.stdout  # the summary lists every product


def test_run_record_has_version_parameters_and_inputs(default_run, programme):
    record = default_run.record
    assert record["version"] == coron3_dask.__version__
    params = record["parameters"]
    assert params["klip"]["truncate"] == 50  # jwst KlipStep default
    assert params["outlier_detection"]["maskpt"] == 0.7  # jwst OutlierDetectionStep default
    assert (params["align_refs"]["align_to"], params["align_refs"]["jwst_compat"]) == ("each", False)
    inputs = {str(Path(p).resolve()) for p in record["inputs"]}
    assert member_paths(programme) <= inputs
    assert str(programme.psfmask_path.resolve()) in inputs
    assert sorted(record["products"]) == sorted(expected_products(programme.asn_path))


def test_default_psfalign_is_4d(default_run, programme):
    for path in default_run.out.glob("*_psfalign.fits"):
        assert _fits_shape(path) == (N_SCI_INT, N_REF_INT * len(programme.psf_files), *FRAME)


def test_jwst_compat_gives_a_3d_psfalign(compat_run, programme):
    assert compat_run.returncode == 0, compat_run.stderr
    aligned = sorted(compat_run.out.glob("*_psfalign.fits"))
    assert len(aligned) == len(programme.science_files)
    for path in aligned:
        assert _fits_shape(path) == (N_REF_INT * len(programme.psf_files), *FRAME)
        assert fits.getval(path, "DATAMODL") == "CubeModel"
    align = compat_run.record["parameters"]["align_refs"]
    assert (align["align_to"], align["jwst_compat"]) == ("first", True)


def test_no_save_psfalign_writes_every_product_but_psfalign(programme, tmp_path, capsys):
    out = tmp_path / "products"
    assert run_main(*run_args(programme, out, "--no-save-psfalign", "--set", "resample.skip=true")) == 0
    capsys.readouterr()
    expected = {n for n in expected_products(programme.asn_path) if not n.endswith(("_psfalign.fits", "_i2d.fits"))}
    assert everything_in(out) == sorted(expected | {record_name(programme.asn_path)})
    record = json.loads((out / record_name(programme.asn_path)).read_text())
    assert record["parameters"]["save_psfalign"] is False


def test_set_is_recorded_in_every_product_and_the_run_record(truncate_run, programme):
    assert truncate_run.returncode == 0, truncate_run.stderr
    products = sorted(truncate_run.out.glob("*.fits"))
    assert {p.name for p in products} == {n for n in expected_products(programme.asn_path)
                                          if not n.endswith("_i2d.fits")}
    for path in products:
        prov = provenance(path)
        assert json.loads(prov["parameters"])["klip"]["truncate"] == 3, path.name
        assert prov["version"] == coron3_dask.__version__
    assert truncate_run.record["parameters"]["klip"]["truncate"] == 3
    # the PSFMASK came from the --crds-path cache and is recorded as an input
    assert any(Path(p).match("*/references/jwst/nircam/*psfmask*.fits") for p in truncate_run.record["inputs"])


def test_config_file_applies_and_set_beats_it(config_run):
    assert config_run.returncode == 0, config_run.stderr
    params = config_run.record["parameters"]
    assert params["klip"]["truncate"] == 2  # --set beats the TOML's 7
    assert params["outlier_detection"]["maskpt"] == 0.5  # from the TOML
    for path in config_run.out.glob("*.fits"):
        recorded = json.loads(provenance(path)["parameters"])
        assert (recorded["klip"]["truncate"], recorded["outlier_detection"]["maskpt"]) == (2, 0.5), path.name


# --------------------------------------------------------------------------- bad input
@dataclass(frozen=True)
class Case:
    """A user's mistake: what to change, and regexes the one error line must match."""

    mutate: Callable[[Any, Path], list[Any]]  # (programme, case dir) -> extra CLI arguments
    expect: Sequence[str]


def _stage(prog: Any, dest: Path) -> Path:
    """A private copy of the programme: small files copied, calints symlinked (never written through)."""
    dest.mkdir()
    for path in prog.directory.iterdir():
        if path.name.endswith("_calints.fits"):
            (dest / path.name).symlink_to(path)
        else:
            shutil.copyfile(path, dest / path.name)
    return dest / prog.asn_path.name


def _edit_asn(dest: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    (asn_path,) = dest.glob("*_asn.json")
    asn = json.loads(asn_path.read_text())
    edit(asn)
    asn_path.write_text(json.dumps(asn, indent=1))


def _members(asn: dict[str, Any]) -> list[dict[str, Any]]:
    return asn["products"][0]["members"]


def _first(asn: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(m for m in _members(asn) if m["exptype"] == kind)


def _missing_member(prog, dest):
    _edit_asn(dest, lambda a: _first(a, "science").update(expname="jw01386002001_03108_00001_nrcalong_calimts.fits"))
    return []


def _asn_not_json(prog, dest):
    (dest / prog.asn_path.name).write_text('asn_type = "coron3"\nasn_id = "c1000"\n')  # TOML, not JSON
    return []


def _wrong_asn_type(prog, dest):
    _edit_asn(dest, lambda a: a.update(asn_type="image3"))
    return []


def _no_psf_members(prog, dest):
    _edit_asn(dest, lambda a: a["products"][0].update(members=[m for m in _members(a) if m["exptype"] != "psf"]))
    return []


def _mismatched_frames(prog, dest):
    cube = np.ones((2, 100, 120), dtype=np.float32)
    extensions = [files.Extension("SCI", cube), files.Extension("ERR", cube),
                  files.Extension("DQ", np.zeros(cube.shape, np.uint32))]
    files.write_fits(dest / "jw01386001001_0310a_00002_nrcalong_calints.fits",
                  {"TELESCOP": "JWST", "INSTRUME": "NIRCAM"}, extensions)
    _edit_asn(dest, lambda a: _first(a, "psf").update(expname="jw01386001001_0310a_00002_nrcalong_calints.fits"))
    return []


def _truncated_member(prog, dest):
    target = dest / prog.psf_files[0].name
    data = prog.psf_files[0].read_bytes()
    target.unlink()  # the symlink, not the shared original
    target.write_bytes(data[: len(data) // 2])
    return []


def _psfmask_wrong_shape(prog, dest):
    header = {"TELESCOP": "JWST", "REFTYPE": "PSFMASK", "DATAMODL": "PsfMaskModel", "INSTRUME": "MIRI",
              "SUBARRAY": "MASK1550"}
    files.write_fits(dest / prog.psfmask_path.name, header, [files.Extension("SCI", np.ones((224, 288), np.float32))])
    return []


def _missing_psfmask(prog, dest):
    return ["--psfmask", dest / "jwst_nircam_psfmask_0019.fits"]


CASES = {
    "missing member file": Case(_missing_member, [r"calimts\.fits", r"not found|no such file|does not exist"]),
    "asn is not json": Case(_asn_not_json, [r"_asn\.json", r"JSON"]),
    "wrong asn_type": Case(_wrong_asn_type, [r"_asn\.json", r"asn_type", r"image3"]),
    "no psf members": Case(_no_psf_members, [r"_asn\.json", r"psf"]),
    "mismatched frame sizes": Case(_mismatched_frames, [r"0310a_00002_nrcalong_calints\.fits", r"100, 120"]),
    "truncated member": Case(_truncated_member, [r"0310a_00001_nrcalong_calints\.fits", r"truncat"]),
    "unknown --set key": Case(lambda p, d: ["--set", "klip.trunacte=3"], [r"klip\.trunacte", r"unknown"]),
    "--set without =": Case(lambda p, d: ["--set", "klip.truncate"], [r"klip\.truncate", r"="]),
    "unknown scheduler": Case(lambda p, d: ["--scheduler", "multithreaded"], [r"scheduler", r"multithreaded"]),
    "psfmask of the wrong shape": Case(_psfmask_wrong_shape, [r"psfmask_sim\.fits", r"224, 288"]),
    "missing psfmask file": Case(_missing_psfmask, [r"psfmask_0019\.fits", r"not found|no such file|does not exist"]),
}


def _assert_one_error_line(stderr: str, expect: Sequence[str]) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    unmatched = [pattern for pattern in expect if not re.search(pattern, lines[0], re.IGNORECASE)]
    assert not unmatched, f"error line {lines[0]!r} does not match {unmatched}"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_error_line_and_no_products(name, programme, tmp_path, capsys):
    case = CASES[name]
    asn = _stage(programme, tmp_path / "case")
    extra = case.mutate(programme, tmp_path / "case")
    out = tmp_path / "products"
    capsys.readouterr()
    code = run_main(*run_args(programme, out, *extra, asn=asn, psfmask=asn.with_name(programme.psfmask_path.name)))
    captured = capsys.readouterr()
    assert code != 0
    _assert_one_error_line(captured.err, case.expect)
    assert everything_in(out) == []
    assert not list((tmp_path / "case").glob(".*")), "leftovers beside the inputs"


def test_bad_input_as_a_real_process(programme, tmp_path):
    if not EXE.is_file():
        pytest.skip(f"console script not installed at {EXE}")
    case = CASES["truncated member"]
    asn = _stage(programme, tmp_path / "case")
    case.mutate(programme, tmp_path / "case")
    out = tmp_path / "products"
    args = run_args(programme, out, asn=asn, psfmask=asn.with_name(programme.psfmask_path.name))
    argv = [str(a) for a in [EXE, *args]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    _assert_one_error_line(proc.stderr, case.expect)
    assert everything_in(out) == []


@pytest.mark.parametrize(("name", "exception"), [
    ("truncated member", InputError), ("unknown --set key", ConfigError), ("unknown scheduler", ConfigError),
])
def test_debug_lets_the_exception_propagate(name, exception, programme, tmp_path):
    asn = _stage(programme, tmp_path / "case")
    extra = CASES[name].mutate(programme, tmp_path / "case")
    with pytest.raises(exception):
        run_main("--debug", *run_args(programme, tmp_path / "products", *extra, asn=asn))


# --------------------------------------------------------------------------- nothing already written is lost
@pytest.mark.parametrize("bad", [["--set", "klip.trunacte=3"], ["--scheduler", "multithreaded"]],
                         ids=["bad --set", "bad scheduler"])
def test_a_failed_rerun_keeps_the_earlier_products(bad, default_run, programme, tmp_path, capsys):
    assert default_run.returncode == 0, default_run.stderr
    out = tmp_path / "products"
    shutil.copytree(default_run.out, out)
    before = digests(out)
    assert len(before) == len(expected_products(programme.asn_path)) + 1
    assert run_main(*run_args(programme, out, *bad)) != 0
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert digests(out) == before


def test_a_failure_mid_run_leaves_no_partial_and_keeps_the_old_products(
        default_run, programme, tmp_path, capsys, monkeypatch):
    """KLIP runs out of memory while the rerun is writing: nothing half-written, old psfsub/i2d intact."""
    assert default_run.returncode == 0, default_run.stderr
    out = tmp_path / "products"
    shutil.copytree(default_run.out, out)
    before = digests(out)
    calls: list[int] = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        raise MemoryError("Unable to allocate 7.63 GiB for an array with shape (1024, 1000000)")

    monkeypatch.setattr(klip_kernels, "klip_one", out_of_memory)  # looked up when the graph is built
    code = run_main(*run_args(programme, out))
    monkeypatch.undo()
    assert calls, "the injected failure never ran (KLIP no longer calls kernels.klip.klip_one?)"
    assert code != 0
    _assert_one_error_line(capsys.readouterr().err, [r"Unable to allocate"])
    after = digests(out)
    assert sorted(after) == sorted(before), "a file appeared or vanished (a .partial left behind?)"
    for name in after:  # everything downstream of KLIP is still the first run's
        if name.endswith(("_psfsub.fits", "_i2d.fits", "_coron3_dask.json")):
            assert after[name] == before[name], f"{name} was touched by the failed run"
    for name in after:  # and whatever the failed run did rewrite is complete
        if name.endswith(".fits"):
            with fits.open(out / name) as hdul:
                hdul.verify("exception")
                assert all(hdu.data is not None for hdu in hdul[1:]), name
