"""JWST data-quality bit values: the only module that knows what each bit means.

Values mirror ``stdatamodels.dqflags.pixel``.  Stages read them here and pass plain
integers to kernels (stcal's injected ``dqflags`` pattern).
"""

from __future__ import annotations

from astropy.nddata.bitmask import interpret_bit_flags

__all__ = [
    "DO_NOT_USE",
    "NON_SCIENCE",
    "OUTLIER",
    "PIXEL",
    "RESAMPLE_BAD_BITS",
    "parse_bits",
]

PIXEL: dict[str, int] = {
    "GOOD": 0,
    "DO_NOT_USE": 1 << 0,
    "SATURATED": 1 << 1,
    "JUMP_DET": 1 << 2,
    "DROPOUT": 1 << 3,
    "OUTLIER": 1 << 4,
    "PERSISTENCE": 1 << 5,
    "AD_FLOOR": 1 << 6,
    "CHARGELOSS": 1 << 7,
    "RESERVED_4": 1 << 8,
    "UNRELIABLE_ERROR": 1 << 8,
    "NON_SCIENCE": 1 << 9,
    "DEAD": 1 << 10,
    "HOT": 1 << 11,
    "WARM": 1 << 12,
    "LOW_QE": 1 << 13,
    "RC": 1 << 14,
    "TELEGRAPH": 1 << 15,
    "NONLINEAR": 1 << 16,
    "BAD_REF_PIXEL": 1 << 17,
    "NO_FLAT_FIELD": 1 << 18,
    "NO_GAIN_VALUE": 1 << 19,
    "NO_LIN_CORR": 1 << 20,
    "NO_SAT_CHECK": 1 << 21,
    "UNRELIABLE_BIAS": 1 << 22,
    "UNRELIABLE_DARK": 1 << 23,
    "UNRELIABLE_SLOPE": 1 << 24,
    "UNRELIABLE_FLAT": 1 << 25,
    "OPEN": 1 << 26,
    "ADJ_OPEN": 1 << 27,
    "FLUX_ESTIMATED": 1 << 28,
    "MSA_FAILED_OPEN": 1 << 29,
    "OTHER_BAD_PIXEL": 1 << 30,
    "REFERENCE_PIXEL": 1 << 31,
}

DO_NOT_USE = PIXEL["DO_NOT_USE"]
OUTLIER = PIXEL["OUTLIER"]
NON_SCIENCE = PIXEL["NON_SCIENCE"]
#: resample uses a pixel iff none of these bits is set (good_bits "~DO_NOT_USE+NON_SCIENCE")
RESAMPLE_BAD_BITS = DO_NOT_USE | NON_SCIENCE

_ALL_BITS = 0xFFFFFFFF


def parse_bits(spec: str | int | None) -> int:
    """Turn a JWST bit-flag specification into the integer of *bad* bits it selects.

    Parameters
    ----------
    spec : str, int or None
        ``"DO_NOT_USE"``, ``"OUTLIER, SATURATED"``, ``"1+16"``, an integer, or
        ``None``/``""`` (no bits).  A leading ``~`` inverts the selection, as in
        astropy's ``interpret_bit_flags``.

    Returns
    -------
    int
        The bits that the specification selects (0 .. 2**32-1).

    Raises
    ------
    ValueError
        If a flag name is unknown.

    Examples
    --------
    >>> parse_bits("OUTLIER, SATURATED")
    18
    >>> parse_bits("~DO_NOT_USE") == 0xFFFFFFFE
    True
    """
    if spec is None or spec == "":
        return 0
    try:
        value = interpret_bit_flags(spec, flag_name_map=PIXEL)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"invalid DQ bit specification {spec!r}: {exc}") from None
    if value is None:
        return 0
    return int(value) & _ALL_BITS
