"""Read step-parameter files: coron3_dask's TOML and the jwst ASDF/YAML parameter files of ``strun``.

Both come back as a :class:`ParameterFile` of plain nested dicts keyed by coron3_dask's names
(jwst's step aliases and parameter names); typing and validating the values is
:mod:`coron3_dask.config`'s job.

A jwst parameter file is either a pipeline configuration (``class: jwst.pipeline.Coron3Pipeline``,
``parameters:`` and a ``steps:`` list of ``{class, name, parameters}``) or a single-step file such
as CRDS's ``jwst_nircam_pars-klipstep_0001.asdf`` (``class: jwst.coron.klip_step.KlipStep``,
``parameters:``; older files put the parameters beside ``class``/``name``, or use stpipe's legacy
layout with ``class``/``name``/``steps`` inside ``parameters``).  An ASDF file is read as YAML up to
its ``...`` end marker; ASDF tags (``!core/software-1.0.0``, ...) are read as the plain mapping,
sequence or scalar they tag, so the ``asdf`` package (seconds to import) is never needed.

jwst parameters coron3_dask does not support are not errors in such a file (CRDS files carry all
of them): stpipe's bookkeeping (``pre_hooks``, ``output_dir``, ...) is dropped silently, and so are
the common step parameters ``skip``/``save_results``/``suffix`` of a step that lacks them when they
hold stpipe's defaults (they then ask for nothing); every other one is listed in
:attr:`ParameterFile.unsupported`.  A pipeline file's own ``save_results`` is dropped too: ``strun``
always sets it to true on the pipeline it runs on an input, so it never takes effect there.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from coron3_dask.config import ConfigError

__all__ = [
    "JWST_SUFFIXES",
    "PIPELINE_NAMES",
    "STEP_CLASSES",
    "STPIPE_BOOKKEEPING",
    "ParameterFile",
    "read_parameters",
]

#: jwst step class (last part of its dotted name) -> the calwebb_coron3 alias coron3_dask uses
STEP_CLASSES: dict[str, str] = {
    "OutlierDetectionStep": "outlier_detection",
    "StackRefsStep": "stack_refs",
    "AlignRefsStep": "align_refs",
    "KlipStep": "klip",
    "ResampleStep": "resample",
}
#: how jwst names calwebb_coron3 (class name and class alias)
PIPELINE_NAMES = frozenset({"Coron3Pipeline", "calwebb_coron3"})
#: stpipe's per-step bookkeeping: input/output naming and hooks, handled by coron3_dask's own options
STPIPE_BOOKKEEPING = frozenset(
    {
        "pre_hooks",
        "post_hooks",
        "output_file",
        "output_dir",
        "output_ext",
        "output_use_model",
        "output_use_index",
        "search_output_file",
        "input_dir",
    }
)
#: common stpipe step parameters at the value that asks for nothing (compared with ``is``)
_STPIPE_DEFAULTS: dict[str, Any] = {"skip": False, "save_results": False, "suffix": None}
#: pipeline-level parameters that strun overrides (it sets save_results=True on the pipeline it runs)
_STRUN_FORCED = frozenset({"save_results"})
#: keys of an ASDF tree (or of a stpipe config) that are not parameters
_NOT_PARAMETERS = frozenset({"class", "name", "parameters", "steps", "meta", "asdf_library", "history"})
#: file suffixes read as jwst parameter files (anything else but .toml is refused)
JWST_SUFFIXES = (".asdf", ".yaml", ".yml")

_YAML_END = re.compile(rb"^\.\.\.[ \t]*\r?$", re.MULTILINE)  # YAML document end marker
_ASDF_BLOCK_MAGIC = b"\xd3BLK"


@dataclass(frozen=True)
class ParameterFile:
    """The parameters of one file, keyed by coron3_dask's names; values as the file typed them.

    Attributes
    ----------
    path : Path
        The file read.
    format : {"toml", "jwst"}
        coron3_dask's TOML, or a jwst (strun) ASDF/YAML parameter file.
    top : dict
        Pipeline-level parameters (``suffix``, ...).
    steps : dict
        ``{step alias: {parameter: value}}``.
    unsupported : tuple of str
        jwst parameters of the file that coron3_dask does not support, as ``step.param`` (or
        ``param`` at pipeline level, or a bare step name for a step it does not run).  Always
        empty for TOML, whose unknown keys are errors.
    jwst_class : str or None
        The file's ``class`` (jwst files only).
    """

    path: Path
    format: Literal["toml", "jwst"]
    top: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()
    jwst_class: str | None = None


def read_parameters(
    path: str | Path,
    *,
    top_level: Collection[str] | None = None,
    steps: Mapping[str, Collection[str]] | None = None,
) -> ParameterFile:
    """Read a parameter file: TOML (``.toml``) or a jwst ASDF/YAML file (``.asdf``, ``.yaml``, ``.yml``).

    Parameters
    ----------
    path : str or Path
        The file; its suffix decides the format.
    top_level : collection of str, optional
        Pipeline-level parameter names coron3_dask supports (jwst files only; omitted: keep all).
    steps : mapping of str to collection of str, optional
        ``{step alias: supported parameter names}`` (jwst files only; omitted: keep every
        parameter of the five calwebb_coron3 steps).

    Returns
    -------
    ParameterFile

    Raises
    ------
    ConfigError
        One line naming the file and the problem: missing or unreadable file, unknown suffix,
        invalid TOML or YAML, or a jwst file for something other than calwebb_coron3 or its steps.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".toml" and suffix not in JWST_SUFFIXES:
        raise ConfigError(
            f"{path}: unsupported parameter file type {path.suffix or '(none)'!r} "
            "(expected .toml, or a jwst .asdf, .yaml or .yml parameter file)"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file ({exc.strerror or exc})") from None
    if suffix == ".toml":
        return _read_toml(path, data)
    tree = _load_yaml(path, _yaml_part(path, data))
    return _from_jwst_tree(path, tree, top_level, steps)


# --------------------------------------------------------------------------- TOML
def _read_toml(path: Path, data: bytes) -> ParameterFile:
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read configuration file (byte {exc.start} is not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({_one_line(str(exc))})") from None
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            sections.setdefault(key, {}).update(value)
        else:
            top[key] = value
    return ParameterFile(path, "toml", top, sections)


# --------------------------------------------------------------------------- YAML / ASDF
class _PlainLoader(yaml.SafeLoader):
    """A SafeLoader that reads every application tag (ASDF's ``!core/...``) as the node it tags."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    """Construct a tagged node as if it had no tag (mapping, sequence or implicitly typed scalar)."""
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    plain = node.style is None  # quoted scalars stay strings, plain ones get YAML's implicit types
    tag = loader.resolve(yaml.ScalarNode, node.value, (plain, not plain))
    return loader.construct_object(yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark), deep=True)


_PlainLoader.add_multi_constructor("!", _untagged)  # local tags, and "!core/..." without its %TAG
_PlainLoader.add_multi_constructor("tag:", _untagged)  # "tag:stsci.edu:asdf/core/asdf-1.1.0", ...


def _yaml_part(path: Path, data: bytes) -> str:
    """Return the YAML text of a YAML or ASDF file: up to the ``...`` end marker or the first binary block."""
    end = len(data)
    marker = _YAML_END.search(data)
    if marker is not None:
        end = marker.start()
    block = data.find(_ASDF_BLOCK_MAGIC, 0, end)
    if block >= 0:
        end = block
    try:
        return data[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML or ASDF parameter file (byte {exc.start} is not UTF-8 text)") from None


def _load_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader subclass: builds plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{path}: not valid YAML ({_one_line(problem)}{where})") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(str(exc)) or type(exc).__name__})") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- jwst trees
@dataclass
class _Entry:
    """One stpipe step configuration: class, name, parameters and sub-steps (``(name, node)`` pairs)."""

    cls: str | None
    name: str | None
    parameters: dict[str, Any]
    steps: list[tuple[str | None, Any]]

    @property
    def short_class(self) -> str | None:
        return self.cls.rsplit(".", 1)[-1] if self.cls else None

    @property
    def label(self) -> str:
        return self.cls or self.name or "(no class or name)"


def _entry(path: Path, node: Any, where: str) -> _Entry:
    """Normalise the three layouts of a step configuration (current, parameters beside class, legacy)."""
    if not isinstance(node, Mapping):
        raise ConfigError(f"{path}: {where} is a YAML {_kind(node)}, expected a mapping with class, name, parameters")
    node = dict(node)
    cls, name = node.get("class"), node.get("name")
    params = node.get("parameters")
    substeps = node.get("steps")
    if params is None:  # old files: parameters beside class and name
        params = {key: value for key, value in node.items() if key not in _NOT_PARAMETERS}
    elif not isinstance(params, Mapping):
        raise ConfigError(f"{path}: {where}: 'parameters' is a YAML {_kind(params)}, expected a mapping")
    else:
        params = dict(params)
        if cls is None and name is None:  # stpipe's legacy layout: class/name/steps inside parameters
            cls, name = params.pop("class", None), params.pop("name", None)
        if substeps is None:
            substeps = params.pop("steps", None)
        params.pop("steps", None)
    if substeps is None:
        pairs: list[tuple[str | None, Any]] = []
    elif isinstance(substeps, Mapping):  # legacy: {alias: {class: ..., parameter: value}}
        pairs = [(str(key), value) for key, value in substeps.items()]
    elif isinstance(substeps, list):
        pairs = [(None, item) for item in substeps]
    else:
        raise ConfigError(f"{path}: {where}: 'steps' is a YAML {_kind(substeps)}, expected a list")
    return _Entry(
        None if cls is None else str(cls),
        None if name is None else str(name),
        {str(key): value for key, value in params.items()},
        pairs,
    )


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "sequence", type(None): "null"}.get(type(value), type(value).__name__)


def _step_alias(entry: _Entry, *, class_first: bool) -> str | None:
    """Return the calwebb_coron3 alias of a step entry, from its name (an alias) or its class."""
    by_name = entry.name if entry.name in STEP_CLASSES.values() else None
    by_class = STEP_CLASSES.get(entry.short_class or "") or STEP_CLASSES.get(entry.name or "")
    return (by_class or by_name) if class_first else (by_name or by_class)


def _from_jwst_tree(
    path: Path,
    tree: Any,
    top_level: Collection[str] | None,
    supported: Mapping[str, Collection[str]] | None,
) -> ParameterFile:
    root = _entry(path, tree, "the top level")
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    unsupported: list[str] = []

    def take(section: str | None, params: Mapping[str, Any]) -> None:
        if section is None:
            known, target = top_level, top
        else:
            known = None if supported is None else supported.get(section, ())
            target = sections.setdefault(section, {})
        for key, value in params.items():
            if key in STPIPE_BOOKKEEPING or (section is None and key in _STRUN_FORCED):
                continue
            if known is None or key in known:
                target[key] = value
            elif not (key in _STPIPE_DEFAULTS and value is _STPIPE_DEFAULTS[key]):
                unsupported.append(key if section is None else f"{section}.{key}")

    is_pipeline = root.short_class in PIPELINE_NAMES or root.name == "calwebb_coron3"
    if is_pipeline or (root.cls is None and root.steps):
        take(None, root.parameters)
        for i, (key, node) in enumerate(root.steps):
            step = _entry(path, node, f"steps[{key or i}]")
            if key is not None and step.name is None:
                step.name = key
            alias = _step_alias(step, class_first=False)
            if alias is None:
                unsupported.append(step.name or step.short_class or f"steps[{i}]")
            else:
                take(alias, step.parameters)
    else:
        alias = _step_alias(root, class_first=True)
        if alias is None or root.steps:
            raise ConfigError(
                f"{path}: parameters for {root.label}, which is neither calwebb_coron3 "
                f"(jwst.pipeline.Coron3Pipeline) nor one of its steps ({', '.join(STEP_CLASSES)})"
            )
        take(alias, root.parameters)
    return ParameterFile(path, "jwst", top, sections, tuple(unsupported), root.cls)
