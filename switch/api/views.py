"""Views (``switch.service``) as JSON-able dicts, and exact decimal degrees.

``order_view_to_json`` is also what the OrderActor publishes on the order-updates bus, so the
first event of an SSE stream (read from the service) and the ones after it (from Redis) have
one shape. Datetimes are ISO 8601 strings, enums their values, money integers as they are.

Coordinates travel as decimal strings and are held as integer micro-degrees (``e6``): a float
cannot say 31.230416 exactly, and a station's position is compared, not computed with.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from switch.service import (
    OrderView,
    PayableSaleView,
    PaymentView,
    PriceItem,
    PriceSetView,
    PumpView,
    RefundView,
    StationView,
)

__all__ = [
    "degrees_to_e6",
    "e6_to_degrees",
    "order_view_to_json",
    "price_set_view_to_json",
    "pump_view_to_json",
    "refund_view_to_json",
    "station_view_to_json",
]

_DEGREES = re.compile(r"^(-?)([0-9]{1,3})(?:\.([0-9]{1,6}))?$")


def degrees_to_e6(text: str, limit: int) -> int:
    """``"31.230416"`` -> 31230416; ValueError for more than 6 decimals or beyond +-limit."""
    match = _DEGREES.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not decimal degrees with at most 6 decimals (like 31.230416)"
        )
    sign, whole, fraction = match.groups()
    value = int(whole) * 1_000_000 + int((fraction or "").ljust(6, "0"))
    if value > limit * 1_000_000:
        raise ValueError(f"{text} is outside -{limit}..{limit} degrees")
    return -value if sign else value


def e6_to_degrees(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def _at(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _payment(view: PaymentView) -> dict[str, Any]:
    return {
        "channel": view.channel,
        "provider": view.provider,
        "key": view.key,
        "state": view.state,
        "client_data": dict(view.client_data),
    }


def order_view_to_json(view: OrderView) -> dict[str, Any]:
    return {
        "id": view.id,
        "customer_id": view.customer_id,
        "state": view.state,
        "terminal": view.terminal,
        "flow": view.flow.value,
        "station_id": view.station_id,
        "pump_no": view.pump_no,
        "nozzle_no": view.nozzle_no,
        "preset_kind": None if view.preset_kind is None else view.preset_kind.value,
        "preset_value": view.preset_value,
        "method": view.method,
        "held_fen": view.held_fen,
        "gross_fen": view.gross_fen,
        "discount_fen": view.discount_fen,
        "net_fen": view.net_fen,
        "captured_fen": view.captured_fen,
        "released_fen": view.released_fen,
        "refunded_fen": view.refunded_fen,
        "volume_ml": view.volume_ml,
        "unit_price_mfen_per_l": view.unit_price_mfen_per_l,
        "grade": view.grade,
        "sale_id": view.sale_id,
        "payment": None if view.payment is None else _payment(view.payment),
        "attempts": view.attempts,
        "routing": None if view.routing is None else dict(view.routing),
        "failure": view.failure,
        "created_at": _at(view.created_at),
        "updated_at": _at(view.updated_at),
    }


def refund_view_to_json(view: RefundView) -> dict[str, Any]:
    return {
        "order_id": view.order_id,
        "refund_id": view.refund_id,
        "amount_fen": view.amount_fen,
        "state": view.state,
        "reason": view.reason,
    }


def _price(item: PriceItem) -> dict[str, Any]:
    return {"grade": item.grade, "unit_price_mfen_per_l": item.unit_price_mfen_per_l}


def _payable(view: PayableSaleView) -> dict[str, Any]:
    return {
        "pump_sale_seq": view.pump_sale_seq,
        "nozzle_no": view.nozzle_no,
        "grade": view.grade,
        "volume_ml": view.volume_ml,
        "amount_fen": view.amount_fen,
        "unit_price_mfen_per_l": view.unit_price_mfen_per_l,
        "locked_by": view.locked_by,
    }


def pump_view_to_json(view: PumpView) -> dict[str, Any]:
    return {
        "station_id": view.station_id,
        "pump_no": view.pump_no,
        "state": view.state,
        "open": view.open,
        "free": view.free,
        "nozzles": [
            {"nozzle_no": nozzle, "grade": grade} for nozzle, grade in sorted(view.nozzles.items())
        ],
        "current_order": view.current_order,
        "payable": [_payable(sale) for sale in view.payable],
    }


def station_view_to_json(view: StationView) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "address": view.address,
        "lat": e6_to_degrees(view.lat_e6),
        "lon": e6_to_degrees(view.lon_e6),
        "distance_m": view.distance_m,
        "open_now": view.open_now,
        "prices": [_price(item) for item in view.prices],
        "pumps_total": view.pumps_total,
        "pumps_free": view.pumps_free,
    }


def price_set_view_to_json(view: PriceSetView) -> dict[str, Any]:
    return {
        "id": view.id,
        "station_id": view.station_id,
        "status": view.status,
        "items": [_price(item) for item in view.items],
        "effective_at": _at(view.effective_at),
    }
