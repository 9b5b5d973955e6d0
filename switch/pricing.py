"""Integer money arithmetic of a fuel sale, and promotions. Pure: no I/O, no clock.

Units: volume in mL, unit price in milli-fen per litre, money in fen, so
``volume_ml * price`` is in 10^-6 fen. The amount of a volume uses the dispenser's own rule,
round half up (``devices/sim/physics.py`` implements the GFD-1 dispenser with the same
formula, and the tests check the two agree), so the switch recomputes exactly the figure
the pump shows the customer. Holds round *up* instead: a hold must cover whatever the pump
can charge, never a fen less.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .service import BadRequest, PresetKind

__all__ = [
    "AMOUNT_DIVISOR",
    "PPM",
    "Promotion",
    "PromotionBook",
    "PromotionKind",
    "amount_fen",
    "discount_fen",
    "hold_fen",
    "volume_for_amount",
]

AMOUNT_DIVISOR: Final = 1_000_000  # mL * milli-fen/L -> fen
PPM: Final = 1_000_000


def amount_fen(volume_ml: int, unit_price_mfen_per_l: int) -> int:
    """What ``volume_ml`` costs at ``unit_price_mfen_per_l``, rounded half up (as the pump)."""
    _check_int("volume_ml", volume_ml, minimum=0)
    _check_int("unit_price_mfen_per_l", unit_price_mfen_per_l, minimum=0)
    return (volume_ml * unit_price_mfen_per_l + AMOUNT_DIVISOR // 2) // AMOUNT_DIVISOR


def volume_for_amount(amount: int, unit_price_mfen_per_l: int) -> int:
    """The largest volume (mL) whose :func:`amount_fen` does not exceed ``amount`` fen: where
    an amount preset stops the pump.

    ``(v*p + D//2) // D <= a``  <=>  ``v <= ((a+1)*D - D//2 - 1) // p``  (D = 10^6).
    """
    _check_int("amount", amount, minimum=0)
    _check_int("unit_price_mfen_per_l", unit_price_mfen_per_l, minimum=1)
    numerator = (amount + 1) * AMOUNT_DIVISOR - AMOUNT_DIVISOR // 2 - 1
    return numerator // unit_price_mfen_per_l


def hold_fen(preset_kind: PresetKind, value: int, unit_price: int | Iterable[int]) -> int:
    """How much to hold for a preset.

    An amount preset holds the amount itself (the pump stops at or below it). A volume
    preset holds that volume at the highest of ``unit_price`` (a single price, or the prices
    of every nozzle the customer may still lift), rounded up: the customer picks the nozzle
    after the hold, and the hold must cover the dearest one.
    """
    _check_int("preset value", value, minimum=1)
    if preset_kind is PresetKind.AMOUNT:
        return value
    prices = [unit_price] if isinstance(unit_price, int) else list(unit_price)
    if not prices:
        raise ValueError("a volume preset needs at least one unit price")
    for price in prices:
        _check_int("unit price", price, minimum=1)
    highest = max(prices)
    return -(-(value * highest) // AMOUNT_DIVISOR)  # ceiling division, integers only


class PromotionKind(enum.StrEnum):
    FIXED = "fixed"  # value: fen off
    PERCENT_PPM = "percent_ppm"  # value: parts per million of the gross off (50_000 = 5 %)


_PROMOTION_KEYS: Final = ("code", "kind", "value", "min_fen", "max_discount_fen", "grades")


@dataclass(frozen=True, slots=True)
class Promotion:
    """A coupon code. ``min_fen``: the least gross it applies to; ``max_discount_fen``: the
    cap (0 = none); ``grades``: the grade codes it applies to (empty = every grade)."""

    code: str
    kind: PromotionKind
    value: int
    min_fen: int = 0
    max_discount_fen: int = 0
    grades: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.code:
            raise ValueError("code: must not be empty")
        _check_int("value", self.value, minimum=1)
        _check_int("min_fen", self.min_fen, minimum=0)
        _check_int("max_discount_fen", self.max_discount_fen, minimum=0)
        if self.kind is PromotionKind.PERCENT_PPM and self.value > PPM:
            raise ValueError(f"value: at most {PPM} ppm (100 %), not {self.value}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "promotion") -> Promotion:
        """Parse one ``[[promotions]]`` table. Errors are ValueErrors naming the key path
        (``where.key``) and what was wrong, so a config loader can pass them on as they are."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a table, got {type(raw).__name__}")  # noqa: TRY004 (a config value)
        for key in raw:
            if key not in _PROMOTION_KEYS:
                raise ValueError(
                    f"{where}.{key}: unknown key (valid: {', '.join(_PROMOTION_KEYS)})"
                )
        code = _field(raw, where, "code", str)
        kind_raw = _field(raw, where, "kind", str)
        try:
            kind = PromotionKind(kind_raw)
        except ValueError:
            valid = ", ".join(k.value for k in PromotionKind)
            raise ValueError(f"{where}.kind: {kind_raw!r} is not one of {valid}") from None
        grades_raw = raw.get("grades", [])
        if not isinstance(grades_raw, list) or not all(isinstance(g, str) for g in grades_raw):
            raise ValueError(f"{where}.grades: expected a list of grade codes")
        value = _field(raw, where, "value", int)
        min_fen = _field(raw, where, "min_fen", int, 0)
        max_discount_fen = _field(raw, where, "max_discount_fen", int, 0)
        try:
            return cls(code, kind, value, min_fen, max_discount_fen, tuple(grades_raw))
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None

    def applies(self, gross_fen: int, grade: str | None) -> bool:
        """Whether the sale qualifies. An unknown grade (not yet dispensed) qualifies only for
        a promotion open to every grade."""
        if gross_fen < self.min_fen:
            return False
        return not self.grades or grade in self.grades

    def to_mapping(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "kind": self.kind.value,
            "value": self.value,
            "min_fen": self.min_fen,
            "max_discount_fen": self.max_discount_fen,
            "grades": list(self.grades),
        }


def discount_fen(promotion: Promotion | None, gross_fen: int, grade: str | None) -> int:
    """The discount on a sale of ``gross_fen``: 0 when there is no promotion or it does not
    apply; a percentage rounds down (the customer is never promised a fen the chain did not
    mean to give); never more than the cap, and never more than the gross itself."""
    _check_int("gross_fen", gross_fen, minimum=0)
    if promotion is None or not promotion.applies(gross_fen, grade):
        return 0
    if promotion.kind is PromotionKind.FIXED:
        discount = promotion.value
    else:
        discount = gross_fen * promotion.value // PPM
    if promotion.max_discount_fen:
        discount = min(discount, promotion.max_discount_fen)
    return min(discount, gross_fen)


class PromotionBook:
    """The configured promotions by code (codes are case-sensitive as configured)."""

    def __init__(self, promotions: Iterable[Promotion]) -> None:
        self._by_code: dict[str, Promotion] = {}
        for promotion in promotions:
            if promotion.code in self._by_code:
                raise ValueError(f"promotion {promotion.code!r} is configured twice")
            self._by_code[promotion.code] = promotion

    @classmethod
    def from_mappings(cls, raws: Sequence[Mapping[str, Any]]) -> PromotionBook:
        return cls(Promotion.from_mapping(raw, f"promotions[{i}]") for i, raw in enumerate(raws))

    def get(self, code: str) -> Promotion:
        """The promotion for a coupon the customer entered; BadRequest when there is none."""
        try:
            return self._by_code[code]
        except KeyError:
            raise BadRequest(f"unknown coupon {code!r}", code="unknown-coupon") from None

    def __len__(self) -> int:
        return len(self._by_code)

    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)


def _field(raw: Mapping[str, Any], where: str, key: str, kind: type, default: Any = None) -> Any:
    if key not in raw:
        if default is None:
            raise ValueError(f"{where}.{key}: missing")
        return default
    value = raw[key]
    if kind is int and (type(value) is not int):
        raise ValueError(
            f"{where}.{key}: expected an integer (money is integer fen), got {value!r}"
        )
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _check_int(name: str, value: int, *, minimum: int) -> None:
    if type(value) is not int:
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, not {value}")
