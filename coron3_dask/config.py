"""Typed, frozen configuration: every parameter declared once, with jwst's name and default.

Precedence is defaults < parameter file (``--config``: coron3_dask's TOML, or a jwst ASDF/YAML
parameter file as ``strun`` reads it) < overrides (``--set step.param=value`` and ``strun``'s
``--steps.step.param=value``, in command-line order).  Unknown steps or keys fail loudly, except
the jwst parameters coron3_dask does not support, which a jwst file may carry: those are named in
one warning and in :attr:`Coron3Config.ignored_parameters`.

Values are validated where they are declared (``__post_init__``), which also resolves the derived,
typed values stages need (:attr:`OutlierParams.snr_values`, :attr:`OutlierParams.good_bits_mask`,
:attr:`AlignRefsParams.bad_bits_mask`) once.  This module opens no file:
:mod:`coron3_dask.files.parameters` reads parameter files into plain dicts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType
from typing import Any, ClassVar, get_args, get_type_hints

__all__ = [
    "AlignRefsParams",
    "ConfigError",
    "Coron3Config",
    "KlipParams",
    "OutlierParams",
    "ResampleParams",
    "StackRefsParams",
    "load_config",
]

log = logging.getLogger("coron3_dask.config")

KERNELS = ("square", "gaussian", "point", "turbo", "lanczos2", "lanczos3")
_STEPS_PREFIX = "--steps."


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def _dq_bits(spec: str, where: str) -> int:
    """Resolve a DQ flag specification (``"~DO_NOT_USE"``, ``"1+16"``) to its integer, or raise ConfigError."""
    from coron3_dask import dq  # deferred: dq imports astropy.nddata (~0.8 s), too slow for `coron3-dask --help`

    try:
        return dq.parse_bits(spec)
    except KeyError as exc:  # interpret_bit_flags reports an unknown flag name as a KeyError
        detail = f"unknown flag {exc.args[0] if exc.args else ''}"
    except (ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split())
    raise ConfigError(
        f"{where} must be DQ flag names or integers (e.g. '~DO_NOT_USE+SATURATED'), got {spec!r}: {detail}"
    )


@dataclass(frozen=True, kw_only=True)
class OutlierParams:
    """``outlier_detection`` in coron mode (jwst ``OutlierDetectionStep``)."""

    skip: bool = False
    good_bits: str = "~DO_NOT_USE"
    maskpt: float = 0.7
    snr: str = "5.0 4.0"
    save_intermediate_results: bool = False

    # resolved once in __post_init__; ClassVar keeps them out of the fields (and of to_dict())
    _snr_values: ClassVar[tuple[float, ...]]
    _good_bits_mask: ClassVar[int]

    def __post_init__(self) -> None:
        if not 0.0 <= self.maskpt <= 1.0:
            raise ConfigError(f"outlier_detection.maskpt must be in [0, 1], got {self.maskpt}")
        try:
            values = tuple(float(v) for v in self.snr.split())
        except ValueError:
            raise ConfigError(f"outlier_detection.snr must be numbers, got {self.snr!r}") from None
        if not values or not values[0] > 0:
            raise ConfigError(f"outlier_detection.snr must start with a positive number, got {self.snr!r}")
        object.__setattr__(self, "_snr_values", values)
        object.__setattr__(self, "_good_bits_mask", _dq_bits(self.good_bits, "outlier_detection.good_bits"))

    @property
    def snr_values(self) -> tuple[float, ...]:
        """The ``snr`` thresholds as numbers (``"5.0 4.0"`` -> ``(5.0, 4.0)``)."""
        return self._snr_values

    @property
    def snr1(self) -> float:
        """The first ``snr`` value: the only one coron mode uses."""
        return self._snr_values[0]

    @property
    def good_bits_mask(self) -> int:
        """``good_bits`` as an integer: the DQ bits that do not make a pixel bad (``dq.parse_bits``)."""
        return self._good_bits_mask


@dataclass(frozen=True, kw_only=True)
class StackRefsParams:
    """``stack_refs``: no algorithm parameters."""

    skip: bool = False


@dataclass(frozen=True, kw_only=True)
class AlignRefsParams:
    """``align_refs`` (jwst ``AlignRefsStep``) plus coron3_dask's alignment mode.

    ``align_to="each"`` aligns every reference to every science integration (4-D psfalign);
    ``"first"`` is jwst >= 1.16 behaviour (integration 0 only, 3-D psfalign).
    ``jwst_compat=True`` evaluates the shift model in single precision with MINPACK's
    forward-difference ``leastsq``, reproducing jwst 3.0.0 exactly (spec section 6.5).
    """

    median_box_length: int = 3
    bad_bits: str = "DO_NOT_USE"
    override_psfmask: str = ""
    align_to: str = "each"
    jwst_compat: bool = False

    # resolved once in __post_init__; ClassVar keeps it out of the fields (and of to_dict())
    _bad_bits_mask: ClassVar[int]

    def __post_init__(self) -> None:
        if self.median_box_length < 0:
            raise ConfigError(f"align_refs.median_box_length must be >= 0, got {self.median_box_length}")
        if self.align_to not in ("each", "first"):
            raise ConfigError(f"align_refs.align_to must be 'each' or 'first', got {self.align_to!r}")
        object.__setattr__(self, "_bad_bits_mask", _dq_bits(self.bad_bits, "align_refs.bad_bits"))

    @property
    def bad_bits_mask(self) -> int:
        """``bad_bits`` as an integer: the DQ bits that mark a pixel for median replacement."""
        return self._bad_bits_mask


@dataclass(frozen=True, kw_only=True)
class KlipParams:
    """``klip`` (jwst ``KlipStep``): number of Karhunen-Loeve modes kept."""

    truncate: int = 50

    def __post_init__(self) -> None:
        if self.truncate < 0:
            raise ConfigError(f"klip.truncate must be >= 0, got {self.truncate}")


@dataclass(frozen=True, kw_only=True)
class ResampleParams:
    """``resample`` (jwst ``ResampleStep``) as forced by calwebb_coron3."""

    skip: bool = False
    pixfrac: float = 1.0
    kernel: str = "square"
    fillval: str = "NAN"
    weight_type: str = "ivm"
    pixel_scale_ratio: float = 1.0
    pixel_scale: float | None = None
    rotation: float | None = None
    output_shape: tuple[int, int] | None = None
    crpix: tuple[float, float] | None = None
    crval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.pixfrac <= 1.0:
            raise ConfigError(f"resample.pixfrac must be in (0, 1], got {self.pixfrac}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"resample.kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.weight_type not in ("ivm", "exptime"):
            raise ConfigError(f"resample.weight_type must be 'ivm' or 'exptime', got {self.weight_type!r}")
        if self.pixel_scale_ratio <= 0:
            raise ConfigError(f"resample.pixel_scale_ratio must be > 0, got {self.pixel_scale_ratio}")
        if self.pixel_scale is not None and self.pixel_scale <= 0:
            raise ConfigError(f"resample.pixel_scale must be > 0, got {self.pixel_scale}")
        try:
            float(self.fillval)
        except ValueError:
            if self.fillval.upper() not in ("NAN", "INDEF"):
                raise ConfigError(f"resample.fillval must be a number or 'NAN', got {self.fillval!r}") from None


@dataclass(frozen=True, kw_only=True)
class Coron3Config:
    """The whole pipeline's parameters, one section per step (jwst step aliases)."""

    suffix: str = "i2d"
    save_results: bool = True
    save_psfalign: bool = True
    outlier_detection: OutlierParams = field(default_factory=OutlierParams)
    stack_refs: StackRefsParams = field(default_factory=StackRefsParams)
    align_refs: AlignRefsParams = field(default_factory=AlignRefsParams)
    klip: KlipParams = field(default_factory=KlipParams)
    resample: ResampleParams = field(default_factory=ResampleParams)

    # set by load_config; ClassVar keeps it out of the fields (and of to_dict())
    _ignored: ClassVar[tuple[str, ...]] = ()

    @property
    def ignored_parameters(self) -> tuple[str, ...]:
        """Return the jwst parameters of the ``--config`` file that coron3_dask ignored (``"resample.in_memory"``...).

        Set by :func:`load_config` (empty otherwise); ``dataclasses.replace`` does not carry it over.
        """
        return self._ignored

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved parameters as a plain nested dict (for provenance)."""
        return dataclasses.asdict(self)


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
