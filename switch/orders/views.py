"""The customer's view of an order, from its projection row.

The API and the live updates (SSE over Redis, as ``switch.api.order_view_to_json``) show the
same thing because both are built here from the ``orders`` row, which the order actor rewrites
after every journaled step and whose money columns move only with attempt results.
"""

from __future__ import annotations

from typing import Any

import orjson

from switch.service import Flow, OrderView, PaymentView, PresetKind
from switch.store.bridge import Row

__all__ = ["view_from_row"]


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def view_from_row(row: Row) -> OrderView:
    """``row`` as :func:`switch.store.orders.order_row` reads it."""
    payment = None
    if row["payment_key"]:
        payment = PaymentView(
            channel=row["channel"] or "",
            provider=row["payment_provider"] or "",
            key=row["payment_key"],
            state=row["payment_state"] or "requested",
            client_data=_json(row["client_data"]),
        )
    gross = row["gross_fen"]
    discount = row["discount_fen"]
    return OrderView(
        id=row["id"],
        customer_id=row["customer_id"],
        state=row["state"],
        terminal=row["terminal"],
        flow=Flow(row["flow"]),
        station_id=row["station_id"],
        pump_no=row["pump_no"],
        nozzle_no=row["nozzle_no"],
        preset_kind=PresetKind(row["preset_kind"]) if row["preset_kind"] else None,
        preset_value=row["preset_value"],
        method=row["method"],
        held_fen=row["held_fen"],
        gross_fen=gross,
        discount_fen=discount,
        net_fen=max(0, gross - discount),
        captured_fen=row["captured_fen"],
        released_fen=row["released_fen"],
        refunded_fen=row["refunded_fen"],
        volume_ml=row["volume_ml"],
        unit_price_mfen_per_l=row["unit_price_mfen_per_l"],
        grade=row["grade"],
        sale_id=row["sale_id"],
        payment=payment,
        attempts=row["hold_attempts"],
        routing=_json(row["routing"]),
        failure=row["failure"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
