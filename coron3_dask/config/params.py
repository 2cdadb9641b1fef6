"""The parameter dataclasses: each parameter declared once with jwst's name and default, validated on creation."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "KERNELS",
    "KLIP_MODES",
    "SPACINGS",
    "AlignRefsParams",
    "ConfigError",
    "Coron3Config",
    "KlipParams",
    "OutlierParams",
    "ResampleParams",
    "StackRefsParams",
]

log = logging.getLogger("coron3_dask.config")

#: reference libraries of ``klip.mode``
KLIP_MODES = ("rdi", "adi", "adi+rdi")
#: radial spacings of the annuli (pyKLIP ``annuli_spacing``; also in kernels.regions)
SPACINGS = ("constant", "log", "linear")
KERNELS = ("square", "gaussian", "point", "turbo", "lanczos2", "lanczos3")


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
    """``klip`` (jwst ``KlipStep``) plus coron3_dask's optimisation regions and library modes.

    ``truncate`` is jwst's number of Karhunen-Loeve modes, or several (pyKLIP's ``numbasis``):
    the official products use the first, the KL-mode cubes carry them all.  ``mode`` chooses the
    reference library: ``rdi`` (the PSF references, as jwst), ``adi`` (the other rolls'
    integrations) or ``adi+rdi`` (both).  ``annuli``, ``subsections``, ``annuli_spacing``,
    ``iwa`` and ``owa`` (pixels) divide the frame into independent optimisation regions around
    the star, and ``movement`` (pixels) and ``minrot`` (degrees) exclude self-references that
    moved too little, all with pyKLIP's meaning.  The defaults are jwst's full-frame RDI.
    """

    truncate: int | tuple[int, ...] = 50
    mode: str = "rdi"
    annuli: int = 1
    subsections: int = 1
    annuli_spacing: str = "constant"
    iwa: float = 0.0
    owa: float | None = None
    movement: float = 3.0
    minrot: float = 0.0

    def __post_init__(self) -> None:
        values = (self.truncate,) if isinstance(self.truncate, int) else tuple(self.truncate)
        if not values or min(values) < 0:
            raise ConfigError(f"klip.truncate must be >= 0 (or a list of such), got {self.truncate}")
        if len(set(values)) != len(values):
            raise ConfigError(f"klip.truncate lists a truncation twice: {self.truncate}")
        if self.mode not in KLIP_MODES:
            raise ConfigError(f"klip.mode must be one of {KLIP_MODES}, got {self.mode!r}")
        if self.annuli < 1 or self.subsections < 1:
            raise ConfigError(f"klip.annuli and klip.subsections must be >= 1, got {self.annuli}, {self.subsections}")
        if self.annuli_spacing not in SPACINGS:
            raise ConfigError(f"klip.annuli_spacing must be one of {SPACINGS}, got {self.annuli_spacing!r}")
        if not self.iwa >= 0 or (self.owa is not None and not self.owa > self.iwa):
            raise ConfigError(f"klip.iwa must be >= 0 and klip.owa above it, got {self.iwa}, {self.owa}")
        if not self.movement >= 0 or not self.minrot >= 0:
            raise ConfigError(f"klip.movement and klip.minrot must be >= 0, got {self.movement}, {self.minrot}")

    @property
    def numbasis(self) -> tuple[int, ...]:
        """The truncations as a tuple (``50`` -> ``(50,)``); the first makes the official products."""
        return (self.truncate,) if isinstance(self.truncate, int) else tuple(self.truncate)

    @property
    def official(self) -> bool:
        """Whether this is jwst's full-frame RDI with one truncation (the stage runs exactly jwst's algorithm)."""
        return self.whole_frame and self.mode == "rdi" and len(self.numbasis) == 1

    @property
    def whole_frame(self) -> bool:
        """One optimisation region covering the whole frame."""
        return self.annuli == 1 and self.subsections == 1 and self.iwa == 0 and self.owa is None


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
