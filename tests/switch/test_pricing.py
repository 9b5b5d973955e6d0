"""Integer money of a sale: the pump's rounding, holds for presets, promotions."""

from __future__ import annotations

import re

import pytest

from devices.sim import physics
from switch.pricing import (
    Promotion,
    PromotionBook,
    PromotionKind,
    amount_fen,
    discount_fen,
    hold_fen,
    volume_for_amount,
)
from switch.service import BadRequest, PresetKind


def test_amount_rounds_half_up() -> None:
    # 7.89 yuan/L: 1 L = 789 fen exactly; 500 mL = 394.5 fen -> 395; 499 mL = 393.711 -> 394
    assert amount_fen(1000, 789_000) == 789
    assert amount_fen(500, 789_000) == 395
    assert amount_fen(499, 789_000) == 394
    assert amount_fen(0, 789_000) == 0
    assert amount_fen(1, 499_999) == 0  # 0.499999 fen
    assert amount_fen(1, 500_000) == 1  # exactly half a fen


@pytest.mark.parametrize("price", [1, 499_999, 789_000, 841_000, 1_000_000, 1_234_567, 9_990_000])
def test_amount_and_volume_match_the_pump_simulator(price: int) -> None:
    for volume in range(0, 5000, 7):
        assert amount_fen(volume, price) == physics.amount_fen(volume, price)
    for amount in range(0, 3000, 11):
        assert volume_for_amount(amount, price) == physics.volume_for_amount(amount, price)


@pytest.mark.parametrize("price", [789_000, 841_000, 1_500_000])
def test_volume_for_amount_is_the_largest_volume_within_the_amount(price: int) -> None:
    for amount in (1, 100, 789, 20_000):
        volume = volume_for_amount(amount, price)
        assert amount_fen(volume, price) <= amount < amount_fen(volume + 1, price)


def test_amount_rejects_floats_and_negatives() -> None:
    with pytest.raises(ValueError, match="volume_ml: expected an integer"):
        amount_fen(1.5, 789_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be at least 0"):
        amount_fen(-1, 789_000)
    with pytest.raises(ValueError, match="unit_price_mfen_per_l: must be at least 1"):
        volume_for_amount(100, 0)


def test_amount_preset_holds_the_amount() -> None:
    assert hold_fen(PresetKind.AMOUNT, 20_000, 789_000) == 20_000
    assert hold_fen(PresetKind.AMOUNT, 20_000, []) == 20_000  # prices do not matter


def test_volume_preset_holds_the_dearest_nozzle_rounded_up() -> None:
    # 30 L at 8.41 yuan/L = 252.3 yuan exactly; 30.001 L = 25230.841 fen -> 25231
    assert hold_fen(PresetKind.VOLUME, 30_000, [789_000, 841_000]) == 25_230
    assert hold_fen(PresetKind.VOLUME, 30_001, (789_000, 841_000)) == 25_231
    assert hold_fen(PresetKind.VOLUME, 1, 789_000) == 1  # 0.789 fen: rounded up, not half up
    for volume in range(1, 3000, 13):
        assert hold_fen(PresetKind.VOLUME, volume, 841_000) >= amount_fen(volume, 841_000)
    with pytest.raises(ValueError, match="at least one unit price"):
        hold_fen(PresetKind.VOLUME, 1000, [])
    with pytest.raises(ValueError, match="preset value: must be at least 1"):
        hold_fen(PresetKind.AMOUNT, 0, 789_000)


WELCOME = Promotion("WELCOME5", PromotionKind.FIXED, 500, min_fen=10_000, max_discount_fen=500)
PERCENT = Promotion(
    "TEN", PromotionKind.PERCENT_PPM, 100_000, max_discount_fen=1_000, grades=("95",)
)


def test_fixed_discount() -> None:
    assert discount_fen(WELCOME, 10_000, "92") == 500
    assert discount_fen(WELCOME, 9_999, "92") == 0  # below min_fen
    assert discount_fen(None, 10_000, "92") == 0
    tiny = Promotion("ALL", PromotionKind.FIXED, 500)
    assert discount_fen(tiny, 300, "92") == 300  # never more than the gross
    assert discount_fen(tiny, 0, None) == 0


def test_percent_discount_rounds_down_caps_and_filters_grades() -> None:
    assert discount_fen(PERCENT, 5_555, "95") == 555  # 555.5 -> 555
    assert discount_fen(PERCENT, 50_000, "95") == 1_000  # 5000 capped
    assert discount_fen(PERCENT, 50_000, "92") == 0  # other grade
    assert discount_fen(PERCENT, 50_000, None) == 0  # grade not known yet
    everything = Promotion("ALL", PromotionKind.PERCENT_PPM, 1_000_000)
    assert discount_fen(everything, 12_345, None) == 12_345


def test_promotion_from_mapping() -> None:
    raw = {
        "code": "WELCOME5",
        "kind": "fixed",
        "value": 500,
        "min_fen": 10_000,
        "max_discount_fen": 500,
    }
    assert Promotion.from_mapping(raw) == WELCOME
    assert Promotion.from_mapping(WELCOME.to_mapping()) == WELCOME
    assert Promotion.from_mapping(PERCENT.to_mapping()) == PERCENT


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "fixed", "value": 1}, "p.code: missing"),
        ({"code": "", "kind": "fixed", "value": 1}, "p.code: must not be empty"),
        (
            {"code": "X", "kind": "gift", "value": 1},
            "p.kind: 'gift' is not one of fixed, percent_ppm",
        ),
        ({"code": "X", "kind": "fixed", "value": 0}, "p.value: must be at least 1, not 0"),
        (
            {"code": "X", "kind": "fixed", "value": 5.0},
            "p.value: expected an integer (money is integer fen), got 5.0",
        ),
        ({"code": "X", "kind": "fixed", "value": True}, "p.value: expected an integer"),
        (
            {"code": "X", "kind": "fixed", "value": 1, "min_fen": -1},
            "p.min_fen: must be at least 0, not -1",
        ),
        ({"code": "X", "kind": "percent_ppm", "value": 1_000_001}, "p.value: at most 1000000 ppm"),
        (
            {"code": "X", "kind": "fixed", "value": 1, "grades": "92"},
            "p.grades: expected a list of grade codes",
        ),
        ({"code": "X", "kind": "fixed", "value": 1, "limit": 2}, "p.limit: unknown key"),
        ([1], "p: expected a table"),
    ],
)
def test_promotion_errors_are_precise(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Promotion.from_mapping(raw, "p")  # type: ignore[arg-type]


def test_promotion_book() -> None:
    book = PromotionBook([WELCOME, PERCENT])
    assert book.get("TEN") is PERCENT and len(book) == 2
    with pytest.raises(BadRequest, match="unknown coupon 'NOPE'") as caught:
        book.get("NOPE")
    assert caught.value.code == "unknown-coupon" and caught.value.status == 422
    with pytest.raises(ValueError, match="'TEN' is configured twice"):
        PromotionBook([PERCENT, PERCENT])
    from_config = PromotionBook.from_mappings([WELCOME.to_mapping()])
    assert from_config.codes() == ("WELCOME5",)
    with pytest.raises(ValueError, match=r"^promotions\[0\]\.value: missing"):
        PromotionBook.from_mappings([{"code": "X", "kind": "fixed"}])
