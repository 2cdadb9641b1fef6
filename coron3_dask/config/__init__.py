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

from coron3_dask.config.loading import config_from_parameters, load_config
from coron3_dask.config.params import (
    KERNELS,
    KLIP_MODES,
    SPACINGS,
    AlignRefsParams,
    ConfigError,
    Coron3Config,
    KlipParams,
    OutlierParams,
    ResampleParams,
    StackRefsParams,
)

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
    "config_from_parameters",
    "load_config",
]
