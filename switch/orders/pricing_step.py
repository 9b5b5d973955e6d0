"""Pricing an order: what to hold for a preset, and what a post-pay sale costs the customer.

Prices come from the station's applied price set (the one its pumps run on); the discount from
the coupon's promotion. Both are recorded in the journal's ``priced`` event, so a restarted
order charges what it promised even if staff changed prices since.
"""

from __future__ import annotations

from typing import Any

from switch.pricing import discount_fen, hold_fen
from switch.service import BadRequest, Conflict, PresetKind
from switch.stations.queries import current_prices, pump_nozzles

from .deps import OrderDeps
from .model import OrderData, Sale

__all__ = ["price_postpay", "price_prepay", "sale_discount"]


async def price_prepay(deps: OrderDeps, data: OrderData) -> dict[str, Any]:
    prices = await current_prices(deps.db, data.station_id)
    nozzles = await pump_nozzles(deps.db, data.station_id, data.pump_no)
    if data.nozzle_no is not None:
        if data.nozzle_no not in nozzles:
            raise BadRequest(f"pump {data.pump_no} has no nozzle {data.nozzle_no}")
        allowed = {data.nozzle_no: nozzles[data.nozzle_no]}
    else:
        allowed = dict(nozzles)
    priced = [(prices[g][1], g, prices[g][0]) for g in allowed.values() if g in prices]
    if not priced:
        raise Conflict(f"station {data.station_id} has no price for pump {data.pump_no}'s fuel")
    unit_price, grade, price_set_id = max(priced)
    assert data.preset_kind is not None and data.preset_value is not None
    kind = PresetKind(data.preset_kind)
    hold = hold_fen(kind, data.preset_value, [p for p, _, _ in priced])
    if data.coupon:
        deps.promotions.get(data.coupon)  # an unknown coupon fails the order now, not later
    return {
        "price_set_id": price_set_id,
        "unit_price": unit_price,
        "grade": grade if len(allowed) == 1 else None,
        "hold_fen": hold,
    }


def sale_discount(deps: OrderDeps, data: OrderData, gross_fen: int, grade: str | None) -> int:
    if not data.coupon:
        return 0
    return discount_fen(deps.promotions.get(data.coupon), gross_fen, grade)


async def price_postpay(deps: OrderDeps, data: OrderData, sale: Sale) -> dict[str, Any]:
    """The pump priced the sale (its amount is what the customer saw on the display); the
    switch takes that amount and applies the coupon."""
    nozzles = await pump_nozzles(deps.db, data.station_id, data.pump_no)
    grade = nozzles.get(sale.nozzle_no) if sale.nozzle_no is not None else None
    discount = sale_discount(deps, data, sale.gross_fen, grade)
    net = sale.gross_fen - discount
    if net <= 0:
        raise Conflict("nothing to pay for this sale")
    prices = await current_prices(deps.db, data.station_id)
    current = prices.get(grade) if grade is not None else None
    return {
        "price_set_id": current[0] if current else None,
        "unit_price": sale.unit_price or (current[1] if current else 1),
        "grade": grade,
        "hold_fen": net,
        "gross_fen": sale.gross_fen,
        "discount_fen": discount,
    }
