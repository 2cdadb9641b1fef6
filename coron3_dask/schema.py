"""Data contract shared by every layer: dimension names, variable names, dtypes.

Every stage boundary carries ``sci``/``err`` as float32 and ``dq`` as uint32, with the
dimension names below.  Provenance (source file, original integration number) travels as
non-dimension coordinates on the leading dimension.  Header cards travel in ``attrs`` as
``{"KEY": value}`` or ``{"KEY": (value, comment)}``; :func:`card_value` reads either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "ALIGNED_DIMS",
    "CUBE_DIMS",
    "DQ_DTYPE",
    "FLOAT_DTYPE",
    "FRAME_DIMS",
    "INTEGRATION",
    "REF",
    "REF_DIMS",
    "VAR_NAMES",
    "X",
    "Y",
    "card_value",
]

INTEGRATION = "integration"
REF = "ref"
Y = "y"
X = "x"

FRAME_DIMS: tuple[str, str] = (Y, X)
CUBE_DIMS: tuple[str, str, str] = (INTEGRATION, Y, X)
REF_DIMS: tuple[str, str, str] = (REF, Y, X)
ALIGNED_DIMS: tuple[str, str, str, str] = (INTEGRATION, REF, Y, X)

#: variance planes carried by calints files, in the order jwst lists them
VAR_NAMES: tuple[str, str, str] = ("var_poisson", "var_rnoise", "var_flat")

FLOAT_DTYPE = np.dtype(np.float32)
DQ_DTYPE = np.dtype(np.uint32)


def card_value(value: Any) -> Any:
    """Return a header card's value from a plain value or a ``(value, comment)`` pair.

    The one header-card unwrapper of the package.

    Parameters
    ----------
    value : object
        A header value, possibly paired with its comment.

    Returns
    -------
    object
        The value alone.

    Examples
    --------
    >>> card_value(("MJy/sr", "unit")), card_value(3.5)
    ('MJy/sr', 3.5)
    """
    return value[0] if isinstance(value, tuple) else value
