"""The pieces of ``fuelswitch ops`` that need no process: prices, formats, views, socket."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from ops.cli import socket_path
from ops.formats import format_age, format_money, format_price
from ops.render import VIEWS, render
from ops.verbs import VERBS, UsageError, parse_price, parse_prices

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "milli_fen"),
    [
        ("7.89", 789_000),
        ("7.8", 780_000),
        ("7", 700_000),
        ("0.001", 100),
        ("6.955", 695_500),
        ("12.345", 1_234_500),
        ("0.10", 10_000),
    ],
)
def test_prices_are_exact_integers(text: str, milli_fen: int) -> None:
    value = parse_price(text)
    assert value == milli_fen
    assert type(value) is int


@pytest.mark.parametrize(
    "text", ["7.8901", "-7.89", "7,89", "", "abc", "1e3", "0", "0.000", ".5", "7.", "07.89", "nan"]
)
def test_bad_prices_are_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(UsageError, match="price"):
        parse_price(text)


@given(st.integers(min_value=1, max_value=999_999_999))
def test_every_price_of_at_most_3_decimals_round_trips(tenths_of_fen: int) -> None:
    yuan, rest = divmod(tenths_of_fen, 1000)
    text = f"{yuan}.{rest:03d}"
    assert parse_price(text) == tenths_of_fen * 100
    assert format_price(parse_price(text)).startswith(f"¥{yuan:,}.")


def test_grades_and_prices() -> None:
    assert parse_prices(["92=7.89", "0#=6.5"]) == {"92": 789_000, "0#": 650_000}
    with pytest.raises(UsageError, match="GRADE=PRICE"):
        parse_prices(["92"])
    with pytest.raises(UsageError, match="GRADE=PRICE"):
        parse_prices(["=7.89"])
    with pytest.raises(UsageError, match="twice"):
        parse_prices(["92=7.89", "92=7.99"])


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "¥0.00"),
        (5, "¥0.05"),
        (20_000, "¥200.00"),
        (123_456_789, "¥1,234,567.89"),
        (-5, "-¥0.05"),
    ],
)
def test_money_from_integer_fen(fen: int, text: str) -> None:
    assert format_money(fen) == text


def test_money_and_price_pass_odd_values_through() -> None:
    assert format_money(None) == "-"
    assert format_money("n/a") == "n/a"
    assert format_price(789_000) == "¥7.89/L"
    assert format_price(695_500) == "¥6.955/L"
    assert format_price(100) == "¥0.001/L"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.2s"), (59.0, "59.0s"), (61, "1m01s"), (3725.0, "1h02m"), (90_000, "1d01h")],
)
def test_ages(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def text_of(view: str, result: Any, sent: dict[str, Any] | None = None) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(view, result, sent))
    return console.export_text()


def test_every_verb_names_a_view() -> None:
    for verb in VERBS:
        assert verb.view in VIEWS, verb.words


def test_a_table_view_shows_formatted_cells_and_its_summary() -> None:
    result = {
        "orders": [
            {
                "order_id": "o-1",
                "station": "s001",
                "pump": 3,
                "flow": "prepay",
                "state": "fuelling",
                "channel": "wechatpay-main",
                "amount_fen": 20_000,
                "created_at": "2025-01-01T08:00:00+00:00",
                "age_s": 75.0,
            }
        ],
        "total": 7,
    }
    text = text_of("orders", result)
    for cell in (
        "o-1",
        "s001",
        "fuelling",
        "wechatpay-main",
        "¥200.00",
        "1m15s",
        "1 of 7 open orders",
    ):
        assert cell in text


def test_data_is_never_read_as_markup() -> None:
    text = text_of("alerts", {"alerts": [{"detail": "[bold]x[/bold] [Errno 111]", "kind": "k"}]})
    assert "[bold]x[/bold] [Errno 111]" in text


def test_a_page_summary_points_at_the_next_page() -> None:
    page = {
        "supervisor": {"address": "wide", "children": 3},
        "children": [{"address": "wide/a"}, {"address": "wide/b"}],
        "offset": 0,
        "total": 3,
        "next_offset": 2,
    }
    assert "children 1-2 of 3; next page: --offset 2" in text_of("tree", page)


def test_prices_set_shows_what_was_sent() -> None:
    result = {"station": "s001", "price_set_id": 17, "effective_at": "2025-01-01T00:00:00+00:00"}
    text = text_of("prices.set", result, {"station": "s001", "prices": {"92": 789_000}})
    assert "17" in text
    assert "¥7.89/L" in text


def ns(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"socket": None, "config": None, **values})


def test_the_socket_is_found_in_order(tmp_path: Path) -> None:
    config = tmp_path / "switch.toml"
    config.write_text(f'[auth]\nsecret = "{SECRET}"\n[admin]\nsocket = "run/admin.sock"\n')
    env = {"FUELSWITCH_ADMIN_SOCKET": "/env/admin.sock", "FUELSWITCH_HOME": str(tmp_path / "home")}
    assert socket_path(ns(socket=Path("/given.sock"), config=config), env) == Path("/given.sock")
    assert socket_path(ns(config=config), env) == Path("/env/admin.sock")
    assert socket_path(ns(config=config), {}) == tmp_path / "run" / "admin.sock"
    assert socket_path(ns(), {"FUELSWITCH_HOME": str(tmp_path / "home")}) == (
        tmp_path / "home" / "admin.sock"
    )
    assert socket_path(ns(), {}) == Path("var").resolve() / "admin.sock"


def test_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        socket_path(ns(config=tmp_path / "missing.toml"), {})
