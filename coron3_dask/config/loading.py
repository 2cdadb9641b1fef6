"""Resolve a configuration: defaults < parameter file < overrides, coerced to the declared types."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import NoneType
from typing import Any, get_args, get_type_hints

from coron3_dask.config.params import ConfigError, Coron3Config

__all__ = ["config_from_parameters", "load_config"]

log = logging.getLogger("coron3_dask.config")

_STEPS_PREFIX = "--steps."


_SECTION_CLASSES: dict[str, type[Any]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Coron3Config)
    if dataclasses.is_dataclass(f.default_factory)
}
_SECTIONS = frozenset(_SECTION_CLASSES)
_TOP = frozenset(f.name for f in dataclasses.fields(Coron3Config)) - _SECTIONS
#: {step: parameter names}: what a jwst parameter file may set
_SUPPORTED = {name: frozenset(f.name for f in dataclasses.fields(cls)) for name, cls in _SECTION_CLASSES.items()}


def _optional(hint: Any) -> bool:
    return NoneType in get_args(hint)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a TOML, YAML or command-line value to the declared field type."""
    text = str(hint)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and "None" in text):
        if "None" in text:
            return None
        raise ConfigError(f"{where} may not be None")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if text == "int | tuple[int, ...]":
        return _truncations(value, where)
    try:
        if isinstance(value, bool) and hint is not str:  # true/false is not a number (bool is an int subclass)
            raise ValueError
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float or text == "float | None":
            return float(value)
        if "tuple" in text:
            items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            kind = int if "int" in text else float
            if len(items) != 2 or any(isinstance(v, bool) for v in items):
                raise ValueError
            return tuple(kind(v) for v in items)
        if hint is str and isinstance(value, (Mapping, list, tuple)):
            raise ValueError
    except (TypeError, ValueError):
        expected = getattr(hint, "__name__", text)
        raise ConfigError(f"{where} has an invalid value {value!r} (expected {expected})") from None
    if hint is str:
        return str(value)
    return value


def _truncations(value: Any, where: str) -> int | tuple[int, ...]:
    """``50``, ``"50"`` -> 50; ``[5, 10]``, ``"5,10"``, ``"5 10"``, ``"[5, 10]"`` -> (5, 10)."""
    items = value.strip("[]() ").replace(",", " ").split() if isinstance(value, str) else value
    if isinstance(items, (list, tuple)) and len(items) == 1:
        items = items[0]
    try:
        if isinstance(items, (list, tuple)):
            if any(isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()) for v in items):
                raise ValueError
            return tuple(int(v) for v in items)
        if isinstance(items, bool) or (isinstance(items, float) and not items.is_integer()):
            raise ValueError
        return int(items)
    except (TypeError, ValueError):
        expected = "an integer or a list of integers"
        raise ConfigError(f"{where} has an invalid value {value!r} (expected {expected})") from None


_Values = Mapping[str, Any]


def _typed(values: _Values, hints: _Values, where: str, *, jwst: bool) -> dict[str, Any]:
    """Coerce ``values`` to their declared types; ``jwst``: a null for a non-Optional parameter keeps ours."""
    return {
        key: _coerce(value, hints[key], f"{where}{key}")
        for key, value in values.items()
        if not (value is None and jwst and not _optional(hints[key]))
    }


def _section(current: Any, name: str, values: _Values, source: str, *, jwst: bool = False) -> Any:
    """Apply ``values`` to ``current`` (one step's parameters): coerced, validated, errors prefixed by ``source``."""
    cls = type(current)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown parameter {name}.{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = _typed(values, get_type_hints(cls), f"{source}: {name}.", jwst=jwst)
    try:
        return dataclasses.replace(current, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _apply(
    config: Coron3Config, source: str, top: _Values, steps: Mapping[str, _Values], *, jwst: bool
) -> Coron3Config:
    """Apply one precedence layer (pipeline-level ``top`` and per-step ``steps`` values) to ``config``."""
    unknown = sorted(set(steps) - _SECTIONS)
    if unknown:
        raise ConfigError(f"{source}: unknown step {unknown[0]!r} (known: {', '.join(sorted(_SECTIONS))})")
    unknown = sorted(set(top) - _TOP)
    if unknown:
        raise ConfigError(f"{source}: unknown parameter {unknown[0]!r} (known: {', '.join(sorted(_TOP))}, step.param)")
    changes = _typed(top, get_type_hints(Coron3Config), f"{source}: ", jwst=jwst)
    changes.update(
        {step: _section(getattr(config, step), step, values, source, jwst=jwst) for step, values in steps.items()}
    )
    return dataclasses.replace(config, **changes)


def _override(item: str) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """Parse ``"step.param=value"`` (``--set``) or ``"--steps.step.param=value"`` (strun's spelling)."""
    strun = item.startswith(_STEPS_PREFIX)
    key, sep, value = item.removeprefix(_STEPS_PREFIX).partition("=")
    step, dot, param = key.strip().partition(".")
    if strun and not (sep and step and param):
        raise ConfigError(f"{item}: expected --steps.STEP.PARAM=VALUE or --steps.STEP.PARAM VALUE")
    if not sep:
        raise ConfigError(f"--set {item!r}: expected step.param=value")
    source = item if strun else f"--set {item}"
    return (source, {}, {step: {param: value.strip()}}) if dot else (source, {step: value.strip()}, {})


def config_from_parameters(parameters: Mapping[str, Any], source: str = "run record") -> Coron3Config:
    """Rebuild a configuration from its :meth:`Coron3Config.to_dict` (a run record's ``parameters``).

    Parameters
    ----------
    parameters : mapping
        Top-level values and one mapping per step, as ``to_dict`` returns them (JSON-decoded).
    source : str
        Named in errors.

    Returns
    -------
    Coron3Config

    Examples
    --------
    >>> config = load_config(overrides=["klip.truncate=5,10"])
    >>> config_from_parameters(config.to_dict()) == config
    True
    """
    steps = {k: v for k, v in parameters.items() if k in _SECTIONS}
    top = {k: v for k, v in parameters.items() if k not in _SECTIONS}
    return _apply(Coron3Config(), source, top, steps, jwst=False)


def load_config(
    toml_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    base: Coron3Config | None = None,
) -> Coron3Config:
    """Resolve the pipeline configuration.

    Parameters
    ----------
    toml_file : path, optional
        Parameter file, by suffix: ``.toml``, coron3_dask's TOML with a table per step
        (``[klip] truncate = 10``) and top-level keys; or ``.asdf``/``.yaml``/``.yml``, a jwst
        (``strun``) pipeline or single-step parameter file.  jwst parameters coron3_dask does not
        support are named in one warning (logger ``coron3_dask.config``) and in
        :attr:`Coron3Config.ignored_parameters`; a null keeps our default unless the parameter
        may be None.
    overrides : iterable of str
        ``"step.param=value"`` (``--set``) or ``"--steps.step.param=value"`` (``strun``'s spelling)
        strings, applied after the file, in order.
    base : Coron3Config, optional
        Starting point (defaults when omitted).

    Returns
    -------
    Coron3Config

    Raises
    ------
    ConfigError
        Naming the file or override and the offending key or value.

    Examples
    --------
    >>> load_config(overrides=["klip.truncate=10"]).klip.truncate
    10
    >>> load_config(overrides=["--steps.klip.truncate=12"]).klip.truncate
    12
    """
    config = base or Coron3Config()
    ignored = list(config.ignored_parameters)
    if toml_file is not None:
        # deferred: importing the files package (astropy.io.fits, ...) costs ~1.5 s
        from coron3_dask.files.parameters import read_parameters

        parameters = read_parameters(toml_file, top_level=_TOP, steps=_SUPPORTED)
        jwst = parameters.format == "jwst"
        config = _apply(config, str(parameters.path), parameters.top, parameters.steps, jwst=jwst)
        if parameters.unsupported:
            names = ", ".join(parameters.unsupported)
            log.warning("%s: ignoring jwst parameters that coron3_dask does not support: %s", parameters.path, names)
            ignored += parameters.unsupported
    for item in overrides:
        source, top, steps = _override(item)
        config = _apply(config, source, top, steps, jwst=False)
    if ignored:
        object.__setattr__(config, "_ignored", tuple(dict.fromkeys(ignored)))
    return config
