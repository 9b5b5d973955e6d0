"""Exact conversions between providers' decimal strings and the switch's integer units.

Providers write money as decimal text: Alipay's ``"12.34"`` yuan, bills' ``"0.60%"`` rates and
5-decimal fees. The switch keeps integers (fen, milli-fen). Conversions here are exact or they
refuse: ``"12.345"`` is not a fen amount and is rejected rather than rounded, because a rounded
amount would pass a business check that the real one fails.
"""

from __future__ import annotations

import re

__all__ = [
    "AmountError",
    "decimal_to_units",
    "fen_to_yuan",
    "parse_rate_ppm",
    "units_to_decimal",
    "yuan_to_fen",
]

_DECIMAL = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]*))?")


class AmountError(ValueError):
    """A money string that is not an exact amount in the expected units."""


def decimal_to_units(text: str, places: int) -> int:
    """``"12.34"`` with ``places=2`` → 1234. More significant decimals than ``places`` is an error;
    trailing zeros beyond ``places`` are accepted (``"1.500"`` is 150 fen)."""
    match = _DECIMAL.fullmatch(text.strip())
    if match is None:
        raise AmountError(f"not a decimal amount: {text!r}")
    sign, whole, frac = match.groups()
    frac = frac or ""
    if len(frac) > places:
        if frac[places:].strip("0"):
            raise AmountError(f"{text!r} has more than {places} decimals")
        frac = frac[:places]
    value: int = int(whole) * 10**places + int(frac.ljust(places, "0") or "0")
    return -value if sign == "-" else value


def units_to_decimal(value: int, places: int) -> str:
    """1234 with ``places=2`` → ``"12.34"``; always ``places`` decimals, ``-`` for negatives."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AmountError(f"amounts are integers, got {value!r}")
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**places)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{places}d}"


def yuan_to_fen(text: str) -> int:
    """Alipay's ``total_amount`` → fen, exactly."""
    return decimal_to_units(text, 2)


def fen_to_yuan(fen: int) -> str:
    """fen → ``"12.34"``, the form Alipay signs and compares."""
    return units_to_decimal(fen, 2)


def parse_rate_ppm(text: str) -> int:
    """A bill's fee rate ``"0.60%"`` → parts per million (6000)."""
    stripped = text.strip()
    if not stripped.endswith("%"):
        raise AmountError(f"not a percentage: {text!r}")
    return decimal_to_units(stripped[:-1], 4)
