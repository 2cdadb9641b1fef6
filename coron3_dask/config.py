"""Typed, frozen configuration: every parameter declared once, with jwst's name and default.

Precedence is defaults < TOML file < ``--set step.param=value`` overrides.  Unknown steps or
keys fail loudly.  Stages receive plain field values, never the whole config object.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

__all__ = [
    "AlignRefsParams",
    "ConfigError",
    "Coron3Config",
    "KlipParams",
    "OutlierParams",
    "ResampleParams",
    "load_config",
]

KERNELS = ("square", "gaussian", "point", "turbo", "lanczos2", "lanczos3")


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


@dataclass(frozen=True, kw_only=True)
class OutlierParams:
    """``outlier_detection`` in coron mode (jwst ``OutlierDetectionStep``)."""

    skip: bool = False
    good_bits: str = "~DO_NOT_USE"
    maskpt: float = 0.7
    snr: str = "5.0 4.0"
    save_intermediate_results: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.maskpt <= 1.0:
            raise ConfigError(f"outlier_detection.maskpt must be in [0, 1], got {self.maskpt}")
        try:
            values = [float(v) for v in self.snr.split()]
        except ValueError:
            raise ConfigError(f"outlier_detection.snr must be numbers, got {self.snr!r}") from None
        if not values or values[0] <= 0:
            raise ConfigError(f"outlier_detection.snr must start with a positive number, got {self.snr!r}")

    @property
    def snr1(self) -> float:
        """The first ``snr`` value: the only one coron mode uses."""
        return float(self.snr.split()[0])


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

    def __post_init__(self) -> None:
        if self.median_box_length < 0:
            raise ConfigError(f"align_refs.median_box_length must be >= 0, got {self.median_box_length}")
        if self.align_to not in ("each", "first"):
            raise ConfigError(f"align_refs.align_to must be 'each' or 'first', got {self.align_to!r}")


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

    def to_dict(self) -> dict[str, Any]:
        """Return the resolved parameters as a plain nested dict (for provenance)."""
        return dataclasses.asdict(self)


_SECTIONS = {f.name for f in dataclasses.fields(Coron3Config) if dataclasses.is_dataclass(f.default_factory)}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a TOML or command-line value to the declared field type."""
    text = str(hint)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and "None" in text):
        if "None" in text:
            return None
        raise ConfigError(f"{where} may not be None")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    try:
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float or text == "float | None":
            return float(value)
        if "tuple" in text:
            items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            kind = int if "int" in text else float
            if len(items) != 2:
                raise ValueError
            return tuple(kind(v) for v in items)
    except (TypeError, ValueError):
        expected = getattr(hint, "__name__", text)
        raise ConfigError(f"{where} has an invalid value {value!r} (expected {expected})") from None
    if hint is str:
        return str(value)
    return value


def _section(name: str, values: Mapping[str, Any], source: str) -> Any:
    cls = type(getattr(Coron3Config(), name))
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown parameter {name}.{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(v, hints[k], f"{source}: {name}.{k}") for k, v in values.items()}
    return cls(**kwargs)


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
        TOML file with a table per step (``[klip] truncate = 10``) and top-level keys.
    overrides : iterable of str
        ``"step.param=value"`` strings, applied after the file.
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
    """
    raw: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    source = "--set"
    if toml_file is not None:
        path = Path(toml_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read configuration file ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        for key, value in data.items():
            if isinstance(value, dict):
                raw.setdefault(key, {}).update(value)
            else:
                top[key] = value
        source = str(path)
    for item in overrides:
        source = "--set" if toml_file is None else f"{source} / --set"
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected step.param=value")
        step, dot, param = key.strip().partition(".")
        if dot:
            raw.setdefault(step, {})[param] = value.strip()
        else:
            top[step] = value.strip()
    cfg = base or Coron3Config()
    for step in raw:
        if step not in _SECTIONS:
            raise ConfigError(f"{source}: unknown step {step!r} (known: {', '.join(sorted(_SECTIONS))})")
    changes: dict[str, Any] = {}
    hints = get_type_hints(Coron3Config)
    for key, value in top.items():
        if key in _SECTIONS or key not in hints:
            raise ConfigError(f"{source}: unknown parameter {key!r}")
        changes[key] = _coerce(value, hints[key], f"{source}: {key}")
    for step, values in raw.items():
        current = dataclasses.asdict(getattr(cfg, step))
        current.update(values)
        changes[step] = _section(step, current, source)
    return dataclasses.replace(cfg, **changes)
