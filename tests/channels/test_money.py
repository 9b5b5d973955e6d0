"""Exact conversions between providers' decimal strings and integer fen / milli-fen."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.money import (
    AmountError,
    decimal_to_units,
    fen_to_yuan,
    parse_rate_ppm,
    units_to_decimal,
    yuan_to_fen,
)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12.34", 1234),
        ("0.01", 1),
        ("300", 30000),
        ("256.4", 25640),
        ("1.500", 150),
        ("-43.20", -4320),
        (" 7.00\t", 700),
        ("+5.5", 550),
    ],
)
def test_yuan_to_fen_is_exact(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize(
    "text", ["12.345", "1e3", "12,34", "", "abc", "1.2.3", "--1", "0x10", "¥1", "١٢"]
)
def test_yuan_to_fen_refuses_what_is_not_a_fen_amount(text: str) -> None:
    with pytest.raises(AmountError):
        yuan_to_fen(text)


def test_fen_to_yuan_always_two_decimals() -> None:
    assert fen_to_yuan(1234) == "12.34"
    assert fen_to_yuan(5) == "0.05"
    assert fen_to_yuan(30000) == "300.00"
    assert fen_to_yuan(-4320) == "-43.20"
    assert fen_to_yuan(0) == "0.00"


@pytest.mark.parametrize("bad", [1.5, True, "12"])
def test_fen_to_yuan_takes_only_integers(bad: object) -> None:
    with pytest.raises(AmountError):
        fen_to_yuan(bad)  # type: ignore[arg-type]


def test_five_decimal_fees_become_milli_fen() -> None:
    # WeChat bills write fees in yuan with five decimals: 0.00001 yuan is one milli-fen
    assert decimal_to_units("3.30500", 5) == 330500
    assert decimal_to_units("-0.22500", 5) == -22500
    assert units_to_decimal(330500, 5) == "3.30500"


def test_rates_become_parts_per_million() -> None:
    assert parse_rate_ppm("0.60%") == 6000
    assert parse_rate_ppm("0.38%") == 3800
    with pytest.raises(AmountError):
        parse_rate_ppm("0.60")


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_round_trip(fen: int) -> None:
    assert yuan_to_fen(fen_to_yuan(fen)) == fen
    assert decimal_to_units(units_to_decimal(fen, 5), 5) == fen
