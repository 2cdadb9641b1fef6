"""Configuration: strun's ``--steps.STEP.PARAM`` overrides, jwst ASDF/YAML parameter files, resolved values.

Everything here is in-process and file-sized: no pipeline runs (``cli._run``/``cli._campaign`` are
replaced by a recorder where ``cli.main`` is exercised).  The one ``parity`` test writes parameter
files with jwst's own ``Step.export_config``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import logging
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import restored_process_state

from coron3_dask import cli
from coron3_dask.cli import options
from coron3_dask.config import ConfigError, Coron3Config, load_config
from coron3_dask.files.parameters import ParameterFile, read_parameters

LOGGER = "coron3_dask.config"

#: a CRDS-style single-step parameter reference file, byte for byte the layout asdf writes
ASDF_HEADER = """#ASDF 1.0.0
#ASDF_STANDARD 1.5.0
%YAML 1.1
%TAG ! tag:stsci.edu:asdf/
--- !core/asdf-1.1.0
asdf_library: !core/software-1.0.0 {author: The ASDF Developers, homepage: 'http://github.com/asdf-format/asdf',
  name: asdf, version: 2.15.0}
history:
  extensions:
  - !core/extension_metadata-1.0.0
    extension_class: asdf.extension.BuiltinExtension
    software: !core/software-1.0.0 {name: asdf, version: 2.15.0}
"""
KLIP_PARS = ASDF_HEADER + """class: jwst.coron.klip_step.KlipStep
meta:
  author: <SPECIFY>
  date: '2023-06-01T00:00:00'
  description: Parameters for calibration step jwst.coron.klip_step.KlipStep
  instrument: {name: NIRCAM}
  pedigree: GROUND
  reftype: PARS-KLIPSTEP
  telescope: JWST
  useafter: '2022-01-01T00:00:00'
name: KlipStep
parameters:
  input_dir: ''
  output_dir: null
  output_ext: .fits
  output_file: null
  output_use_index: true
  output_use_model: false
  post_hooks: []
  pre_hooks: []
  save_results: false
  search_output_file: true
  skip: false
  suffix: null
  truncate: 12
...
"""
BINARY_BLOCK = b"\xd3BLK\x000\x00\x00\x00\x00\x00\x00\x00\x00\xff\xfe\x80\x81" + bytes(range(256)) + b"\n...\n"

#: a calwebb_coron3 pipeline configuration as jwst writes it (plain YAML)
PIPELINE_YAML = """\
class: jwst.pipeline.Coron3Pipeline
name: calwebb_coron3
parameters:
  input_dir: ''
  output_dir: /somewhere/else
  output_ext: .fits
  output_file: null
  output_use_index: true
  output_use_model: false
  post_hooks: []
  pre_hooks: []
  save_results: false
  search_output_file: true
  skip: false
  suffix: psf_i2d
steps:
- class: jwst.coron.stack_refs_step.StackRefsStep
  name: stack_refs
  parameters: {skip: false, save_results: false, suffix: null, pre_hooks: [], post_hooks: []}
- class: jwst.coron.align_refs_step.AlignRefsStep
  name: align_refs
  parameters:
    bad_bits: DO_NOT_USE+SATURATED
    median_box_length: 5
    output_dir: null
    skip: false
- class: jwst.coron.klip_step.KlipStep
  name: klip
  parameters:
    truncate: 20
    input_dir: ''
    save_results: false
- class: jwst.outlier_detection.outlier_detection_step.OutlierDetectionStep
  name: outlier_detection
  parameters:
    good_bits: ~DO_NOT_USE
    maskpt: 0.6
    snr: 6.0 4.0
    kernel_size: 7 7
    weight_type: ivm
    in_memory: true
    save_intermediate_results: false
    search_output_file: false
- class: jwst.resample.resample_step.ResampleStep
  name: resample
  parameters:
    pixfrac: 0.8
    kernel: square
    fillval: NAN
    weight_type: ivm
    output_shape: [120, 100]
    crpix: null
    crval: null
    rotation: 45
    pixel_scale: null
    pixel_scale_ratio: 1.0
    in_memory: true
    single: false
"""
PIPELINE_UNSUPPORTED = (
    "outlier_detection.kernel_size",
    "outlier_detection.weight_type",
    "outlier_detection.in_memory",
    "resample.in_memory",
    "resample.single",
)
BOOKKEEPING = ("input_dir", "output_dir", "output_ext", "output_file", "output_use_index", "output_use_model",
               "post_hooks", "pre_hooks", "search_output_file")


# --------------------------------------------------------------------------- helpers
def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def parse(*argv: str) -> argparse.Namespace:
    """``run`` arguments as ``cli.main`` parses them (strun spellings rewritten first)."""
    return cli._parser().parse_args(options.strun_steps(["run", "asn.json", *argv]))


def resolve(*argv: str) -> Coron3Config:
    return options.config_from(parse(*argv))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@contextlib.contextmanager
def captured_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    caplog.clear()
    found: list[str] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        yield found
    found += warnings_of(caplog)


def one_line_error(exc_info: pytest.ExceptionInfo[ConfigError], *patterns: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    for pattern in patterns:
        assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"
    return message


@pytest.fixture
def main_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Coron3Config]]:
    """``cli.main`` with run/campaign replaced by a recorder of the resolved configuration."""
    seen: list[Coron3Config] = []

    def record(args: argparse.Namespace) -> int:
        seen.append(options.config_from(args))
        return 0

    monkeypatch.setattr(cli, "_run", record)
    monkeypatch.setattr(cli.campaign, "handle", record)
    yield seen


def run_main(*argv: Any) -> tuple[int, str]:
    stderr = io.StringIO()
    with restored_process_state(), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main([str(a) for a in argv])
    return code, stderr.getvalue()


# --------------------------------------------------------------------------- --steps.STEP.PARAM
@pytest.mark.parametrize("argv", [
    ["--steps.klip.truncate=10"],
    ["--steps.klip.truncate", "10"],
    ["--set", "klip.truncate=10"],
], ids=["equals", "two tokens", "--set"])
def test_steps_spellings_set_a_parameter(argv: list[str]) -> None:
    assert resolve(*argv).klip.truncate == 10


def test_steps_and_set_apply_in_command_line_order() -> None:
    args = parse("--steps.klip.truncate=10", "--set", "klip.truncate=3", "--steps.align_refs.median_box_length", "5",
                 "--steps.klip.truncate", "7", "--set", "align_refs.median_box_length=9")
    assert args.overrides == ["--steps.klip.truncate=10", "klip.truncate=3", "--steps.align_refs.median_box_length=5",
                              "--steps.klip.truncate=7", "align_refs.median_box_length=9"]
    config = options.config_from(args)
    assert (config.klip.truncate, config.align_refs.median_box_length) == (7, 9)
    config = resolve("--set", "klip.truncate=3", "--steps.klip.truncate=4")
    assert config.klip.truncate == 4


def test_steps_values_may_look_like_negative_numbers_or_hold_equals_signs() -> None:
    args = parse("--steps.resample.rotation", "-30.5", "--steps.resample.crval", "10.0,-5.0")
    config = options.config_from(args)
    assert (config.resample.rotation, config.resample.crval) == (-30.5, (10.0, -5.0))
    assert options.strun_steps(["--steps.a.b", "x=y"]) == ["--steps=a.b=x=y"]


def test_steps_beat_the_config_file_and_jwst_compat(tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", "[klip]\ntruncate = 7\n[align_refs]\nmedian_box_length = 4\n")
    config = resolve("--config", str(toml), "--steps.klip.truncate", "2", "--jwst-compat",
                     "--steps.align_refs.align_to=each")
    assert (config.klip.truncate, config.align_refs.median_box_length) == (2, 4)
    assert (config.align_refs.align_to, config.align_refs.jwst_compat) == ("each", True)


def test_tokens_after_double_dash_are_left_alone() -> None:
    assert options.strun_steps(["run", "--", "--steps.klip.truncate=3"]) == ["run", "--", "--steps.klip.truncate=3"]


@pytest.mark.parametrize("command", ["run", "campaign"])
def test_main_accepts_steps_for_run_and_campaign(command: str, main_config: list[Coron3Config]) -> None:
    extra = ["-o", "out"] if command == "campaign" else ["asn.json"]
    code, err = run_main(command, *extra, "--steps.klip.truncate", 11, "--steps.outlier_detection.maskpt=0.5",
                         "--scheduler", "synchronous")
    assert (code, err) == (0, "")
    (config,) = main_config
    assert (config.klip.truncate, config.outlier_detection.maskpt) == (11, 0.5)


@pytest.mark.parametrize(("argv", "patterns"), [
    (["--steps.klip.trunacte=3"], [r"--steps\.klip\.trunacte", r"unknown parameter klip\.trunacte"]),
    (["--steps.klipp.truncate", "3"], [r"--steps\.klipp\.truncate=3", r"unknown step 'klipp'"]),
    (["--steps.klip.truncate"], [r"--steps\.klip\.truncate", r"expected --steps\.STEP\.PARAM=VALUE"]),
    (["--steps.klip.truncate", "--scheduler", "threads"], [r"--steps\.klip\.truncate", r"VALUE"]),
    (["--steps.klip=3"], [r"--steps\.klip=3", r"expected"]),
    (["--steps.klip.truncate=many"], [r"klip\.truncate", r"invalid value 'many'"]),
    (["--steps.align_refs.bad_bits=NOPE"], [r"align_refs\.bad_bits", r"NOPE"]),
], ids=["unknown param", "unknown step", "no value at the end", "option instead of value", "no param",
        "bad value", "bad DQ flag"])
def test_bad_steps_give_one_error_line(argv: list[str], patterns: list[str], main_config: list[Coron3Config]) -> None:
    code, err = run_main("run", "asn.json", *argv)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("coron3-dask: error: ")
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (lines[0], pattern)


def test_steps_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps.klip.truncate=10" in text and ".asdf" in text


# --------------------------------------------------------------------------- jwst pipeline configuration
def test_pipeline_yaml_maps_supported_parameters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "calwebb_coron3.yaml", PIPELINE_YAML)
    with captured_warnings(caplog) as found:
        config = load_config(path)
    assert config.suffix == "psf_i2d"
    assert config.save_results is True  # strun forces save_results on the pipeline: the file's false is moot
    assert (config.align_refs.bad_bits, config.align_refs.median_box_length) == ("DO_NOT_USE+SATURATED", 5)
    assert config.align_refs.bad_bits_mask == 1 | 2
    assert config.klip.truncate == 20
    od = config.outlier_detection
    assert (od.good_bits, od.maskpt, od.snr, od.snr_values) == ("~DO_NOT_USE", 0.6, "6.0 4.0", (6.0, 4.0))
    rs = config.resample
    assert (rs.pixfrac, rs.output_shape, rs.rotation, rs.crpix, rs.pixel_scale) == (0.8, (120, 100), 45.0, None, None)
    assert isinstance(rs.rotation, float)
    # every unsupported jwst parameter in one warning naming the file; bookkeeping never mentioned
    assert len(found) == 1, found
    assert str(path) in found[0]
    for name in PIPELINE_UNSUPPORTED:
        assert name in found[0]
    for name in (*BOOKKEEPING, "save_results", "skip", "suffix", "truncate"):
        assert not re.search(rf"(^|[ .]){name}\b", found[0].split(": ", 2)[-1]), (name, found[0])
    assert sorted(config.ignored_parameters) == sorted(PIPELINE_UNSUPPORTED)


def test_read_parameters_returns_plain_dicts_and_the_unsupported_names(tmp_path: Path) -> None:
    path = write(tmp_path / "calwebb_coron3.yml", PIPELINE_YAML)
    defaults = Coron3Config()
    supported = {name: {f.name for f in dataclasses.fields(getattr(defaults, name))}
                 for name in ("outlier_detection", "stack_refs", "align_refs", "klip", "resample")}
    result = read_parameters(path, top_level={"suffix", "save_results", "save_psfalign"}, steps=supported)
    assert isinstance(result, ParameterFile)
    assert (result.format, result.jwst_class) == ("jwst", "jwst.pipeline.Coron3Pipeline")
    assert result.top == {"suffix": "psf_i2d"}
    assert result.steps["klip"] == {"truncate": 20}
    assert result.steps["stack_refs"] == {"skip": False}
    assert result.steps["resample"]["output_shape"] == [120, 100]
    assert sorted(result.unsupported) == sorted(PIPELINE_UNSUPPORTED)
    toml = read_parameters(write(tmp_path / "c.toml", 'suffix = "x"\n[klip]\ntruncate = 3\n'))
    assert (toml.format, toml.top, toml.unsupported) == ("toml", {"suffix": "x"}, ())
    assert toml.steps == {"klip": {"truncate": 3}}


def test_steps_named_by_class_only_and_unknown_steps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = """\
class: jwst.pipeline.calwebb_coron3.Coron3Pipeline
parameters: {suffix: i2d, frobnicate: 3}
steps:
- class: jwst.coron.KlipStep
  parameters: {truncate: 4}
- {class: jwst.coron.align_refs_step.AlignRefsStep, name: AlignRefsStep, parameters: {median_box_length: 0}}
- class: jwst.coron.hlsp_step.HlspStep
  name: hlsp
  parameters: {annuli_width: 2}
"""
    with captured_warnings(caplog) as found:
        config = load_config(write(tmp_path / "p.yaml", text))
    assert (config.klip.truncate, config.align_refs.median_box_length) == (4, 0)
    assert config.ignored_parameters == ("frobnicate", "hlsp")
    assert len(found) == 1 and "frobnicate" in found[0] and "hlsp" in found[0]


def test_stpipe_legacy_layout(tmp_path: Path) -> None:
    """stpipe's step_config-0.1.0 layout: class/name/steps inside ``parameters``, steps keyed by alias."""
    text = ASDF_HEADER + """parameters:
  class: jwst.pipeline.Coron3Pipeline
  name: calwebb_coron3
  suffix: i2d
  steps:
    klip: {class: jwst.coron.klip_step.KlipStep, truncate: 9}
    outlier_detection: {maskpt: 0.4, skip: true}
...
"""
    config = load_config(write(tmp_path / "legacy.asdf", text))
    assert (config.klip.truncate, config.outlier_detection.maskpt, config.outlier_detection.skip) == (9, 0.4, True)


# --------------------------------------------------------------------------- jwst single-step files
def test_crds_style_asdf_with_binary_blocks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "jwst_nircam_pars-klipstep_0001.asdf", KLIP_PARS.encode() + BINARY_BLOCK)
    with captured_warnings(caplog) as found:
        config = load_config(path)
    assert config.klip.truncate == 12
    assert found == []  # only bookkeeping and stpipe defaults beside truncate: nothing to warn about
    assert config.ignored_parameters == ()
    assert config == load_config(overrides=["klip.truncate=12"])


@pytest.mark.parametrize("layout", ["parameters mapping", "beside class", "name only"])
def test_single_step_layouts(layout: str, tmp_path: Path) -> None:
    body = {
        "parameters mapping": "class: jwst.coron.align_refs_step.AlignRefsStep\nname: align_refs\n"
                              "parameters: {median_box_length: 7, bad_bits: 'DO_NOT_USE, SATURATED'}\n",
        "beside class": "class: jwst.coron.align_refs_step.AlignRefsStep\nname: AlignRefsStep\n"
                        "median_box_length: 7\nbad_bits: DO_NOT_USE, SATURATED\n",
        "name only": "name: align_refs\nparameters:\n  median_box_length: 7\n  bad_bits: DO_NOT_USE, SATURATED\n",
    }[layout]
    config = load_config(write(tmp_path / "jwst_nircam_pars-alignrefsstep_0001.asdf", ASDF_HEADER + body + "...\n"))
    assert (config.align_refs.median_box_length, config.align_refs.bad_bits_mask) == (7, 3)


def test_tagged_scalars_keep_their_yaml_types(tmp_path: Path) -> None:
    text = ASDF_HEADER + """class: jwst.resample.resample_step.ResampleStep
name: resample
parameters:
  pixfrac: !custom/number-1.0.0 0.5
  kernel: !<tag:example.org:thing-1.0> 'point'
  output_shape: !core/list-1.0.0 [64, 48]
  fillval: !core/text "0"
...
"""
    config = load_config(write(tmp_path / "r.asdf", text))
    assert (config.resample.pixfrac, config.resample.kernel) == (0.5, "point")
    assert (config.resample.output_shape, config.resample.fillval) == ((64, 48), "0")


def test_non_default_stpipe_parameters_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = ("class: jwst.coron.klip_step.KlipStep\nname: klip\n"
            "parameters: {truncate: 5, skip: true, save_results: true, suffix: klipped, output_dir: /x}\n")
    with captured_warnings(caplog) as found:
        config = load_config(write(tmp_path / "k.yaml", text))
    assert config.klip.truncate == 5
    assert config.ignored_parameters == ("klip.skip", "klip.save_results", "klip.suffix")
    assert len(found) == 1 and "output_dir" not in found[0]


def test_null_keeps_our_default_unless_optional(tmp_path: Path) -> None:
    text = """\
class: jwst.pipeline.Coron3Pipeline
parameters: {suffix: null}
steps:
- {name: klip, parameters: {truncate: null}}
- {name: outlier_detection, parameters: {snr: null, good_bits: null, maskpt: ~}}
- {name: resample, parameters: {pixel_scale: null, weight_type: null, output_shape: null}}
"""
    base = load_config(overrides=["resample.pixel_scale=0.05", "resample.output_shape=10,20", "klip.truncate=8"])
    config = load_config(write(tmp_path / "nulls.yaml", text), base=base)
    assert (config.suffix, config.klip.truncate) == ("i2d", 8)
    assert config.outlier_detection == base.outlier_detection
    resample = config.resample
    assert (resample.pixel_scale, resample.output_shape, resample.weight_type) == (None, None, "ivm")


# --------------------------------------------------------------------------- precedence
def test_precedence_defaults_file_then_overrides_in_order(tmp_path: Path) -> None:
    path = write(tmp_path / "klip.asdf", KLIP_PARS)
    assert load_config(path).klip.truncate == 12
    assert load_config(path, ["--steps.klip.truncate=9", "klip.truncate=8"]).klip.truncate == 8
    assert load_config(path, ["klip.truncate=8", "--steps.klip.truncate=9"]).klip.truncate == 9
    assert resolve("--config", str(path), "--set", "klip.truncate=2").klip.truncate == 2
    assert resolve("--config", str(path)).klip.truncate == 12


def test_main_with_a_jwst_config_prints_one_warning_line(tmp_path: Path, main_config: list[Coron3Config]) -> None:
    path = write(tmp_path / "calwebb_coron3.asdf", ASDF_HEADER + PIPELINE_YAML + "...\n")
    code, err = run_main("run", "asn.json", "--config", path, "--steps.klip.truncate", 3)
    assert code == 0
    (line,) = err.splitlines()
    assert "WARNING" in line and "resample.in_memory" in line and str(path) in line
    assert main_config[0].klip.truncate == 3 and main_config[0].outlier_detection.maskpt == 0.6


# --------------------------------------------------------------------------- bad files
@pytest.mark.parametrize(("name", "content", "patterns"), [
    ("missing.asdf", None, [r"not found"]),
    ("strun.cfg", "[klip]\ntruncate = 3\n", [r"'\.cfg'", r"\.toml", r"\.asdf"]),
    ("bad.yaml", "class: jwst.coron.KlipStep\nparameters: {truncate: 3\n", [r"not valid YAML", r"line \d+"]),
    ("bad.toml", "[klip\ntruncate = 3\n", [r"not valid TOML"]),
    ("list.yaml", "- 1\n- 2\n", [r"top level", r"sequence"]),
    ("binary.asdf", b"#ASDF 1.0.0\n\xff\xfe\x00garbage", [r"not UTF-8"]),
    ("tweakreg.asdf", ASDF_HEADER + "class: jwst.tweakreg.TweakRegStep\nname: tweakreg\nparameters: {}\n...\n",
     [r"jwst\.tweakreg\.TweakRegStep", r"calwebb_coron3"]),
    ("image3.yaml", "class: jwst.pipeline.Image3Pipeline\nsteps:\n- {name: resample, parameters: {}}\n",
     [r"Image3Pipeline", r"calwebb_coron3"]),
    ("params.yaml", "class: jwst.coron.KlipStep\nparameters: [1, 2]\n", [r"'parameters'", r"mapping"]),
    ("value.yaml", "class: jwst.coron.KlipStep\nparameters: {truncate: many}\n", [r"klip\.truncate", r"'many'"]),
    ("bool.yaml", "class: jwst.coron.KlipStep\nparameters: {truncate: true}\n", [r"klip\.truncate", r"int"]),
    ("range.yaml", "class: jwst.outlier_detection.OutlierDetectionStep\nparameters: {maskpt: 2.0}\n",
     [r"outlier_detection\.maskpt", r"\[0, 1\]"]),
    ("flags.yaml", "name: outlier_detection\nparameters: {good_bits: ~NOPE}\n", [r"outlier_detection\.good_bits"]),
], ids=["missing", "unknown suffix", "bad yaml", "bad toml", "list", "binary", "other step", "other pipeline",
        "parameters not a mapping", "bad value", "bool for int", "out of range", "bad flag"])
def test_bad_files_give_one_line_errors_naming_the_file(name: str, content: str | bytes | None,
                                                          patterns: list[str], tmp_path: Path) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(ConfigError) as exc_info:
        load_config(path)
    one_line_error(exc_info, re.escape(str(path)), *patterns)


def test_toml_unknown_keys_stay_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_config(write(tmp_path / "c.toml", "[klip]\ntrunacte = 3\n"))
    one_line_error(exc_info, re.escape(str(tmp_path / "c.toml")), r"unknown parameter klip\.trunacte")


# --------------------------------------------------------------------------- resolved, typed values
def test_resolved_properties_and_provenance_dict_unchanged() -> None:
    config = Coron3Config()
    assert config.outlier_detection.snr_values == (5.0, 4.0)
    assert config.outlier_detection.snr1 == 5.0
    assert config.outlier_detection.good_bits_mask == 0xFFFFFFFF & ~1
    assert config.align_refs.bad_bits_mask == 1
    assert config.to_dict() == {
        "suffix": "i2d", "save_results": True, "save_psfalign": True,
        "outlier_detection": {"skip": False, "good_bits": "~DO_NOT_USE", "maskpt": 0.7, "snr": "5.0 4.0",
                              "save_intermediate_results": False},
        "stack_refs": {"skip": False},
        "align_refs": {"median_box_length": 3, "bad_bits": "DO_NOT_USE", "override_psfmask": "", "align_to": "each",
                       "jwst_compat": False},
        "klip": {"truncate": 50, "mode": "rdi", "annuli": 1, "subsections": 1, "annuli_spacing": "constant",
                 "iwa": 0.0, "owa": None, "movement": 3.0, "minrot": 0.0},
        "resample": {"skip": False, "pixfrac": 1.0, "kernel": "square", "fillval": "NAN", "weight_type": "ivm",
                     "pixel_scale_ratio": 1.0, "pixel_scale": None, "rotation": None, "output_shape": None,
                     "crpix": None, "crval": None},
    }
    changed = load_config(overrides=["outlier_detection.snr=3 2 1", "align_refs.bad_bits=DO_NOT_USE+OUTLIER",
                                     "outlier_detection.good_bits=~DO_NOT_USE+NON_SCIENCE"])
    assert changed.outlier_detection.snr_values == (3.0, 2.0, 1.0) and changed.outlier_detection.snr1 == 3.0
    assert changed.align_refs.bad_bits_mask == 1 | 16
    assert changed.outlier_detection.good_bits_mask == 0xFFFFFFFF & ~(1 | 512)
    replaced = dataclasses.replace(changed.outlier_detection, snr="7")
    assert replaced.snr_values == (7.0,)
    for clone in (pickle.loads(pickle.dumps(changed)), copy.deepcopy(changed)):
        assert clone == changed
        assert clone.outlier_detection.snr_values == (3.0, 2.0, 1.0) and clone.align_refs.bad_bits_mask == 17


@pytest.mark.parametrize(("override", "name"), [
    ("align_refs.bad_bits=NOPE", r"align_refs\.bad_bits"),
    ("outlier_detection.good_bits=~NOPE", r"outlier_detection\.good_bits"),
    ("outlier_detection.snr=fast", r"outlier_detection\.snr"),
    ("outlier_detection.snr=-1 2", r"outlier_detection\.snr"),
])
def test_invalid_values_fail_at_config_time(override: str, name: str) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_config(overrides=[override])
    one_line_error(exc_info, re.escape(f"--set {override}"), name)


# --------------------------------------------------------------------------- parity: files written by jwst
@pytest.mark.parity
def test_reads_parameter_files_written_by_jwst(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    coron = pytest.importorskip("jwst.coron")
    pipeline = pytest.importorskip("jwst.pipeline")
    step_file = tmp_path / "klip.asdf"
    coron.KlipStep(truncate=7).export_config(step_file, include_metadata=True)
    assert load_config(step_file).klip.truncate == 7

    pipe_file = tmp_path / "calwebb_coron3.asdf"
    pipe = pipeline.Coron3Pipeline(steps={"klip": {"truncate": 7}, "align_refs": {"median_box_length": 5},
                                          "outlier_detection": {"maskpt": 0.5, "snr": "4.5 3.0"},
                                          "resample": {"pixfrac": 0.75}})
    pipe.export_config(pipe_file)
    with captured_warnings(caplog) as found:
        config = load_config(pipe_file)
    assert (config.klip.truncate, config.align_refs.median_box_length) == (7, 5)
    assert (config.outlier_detection.maskpt, config.outlier_detection.snr_values) == (0.5, (4.5, 3.0))
    assert (config.resample.pixfrac, config.suffix, config.save_results) == (0.75, "i2d", True)
    assert len(found) == 1 and "resample.in_memory" in found[0] and "output_dir" not in found[0]
