"""The customer's view of an order, from its projection row.

The API and the live updates (SSE over Redis) show the same thing because both are built
here from the ``orders`` row, which the order actor rewrites after every journaled step and
whose money columns move only with attempt results.
"""

from __future__ import annotations

from typing import Any

import orjson

from switch.service import Flow, OrderView, PaymentView, PresetKind
from switch.store.bridge import Row

__all__ = ["order_json", "view_from_row"]


def view_from_row(row: Row) -> OrderView:
    routing = row["routing"]
    client_data = row["client_data"]
    payment = None
    if row["payment_key"]:
        routing_map = orjson.loads(routing) if isinstance(routing, str) else routing
        provider = ""
        if routing_map:
            provider = str(routing_map.get("provider", ""))
        payment = PaymentView(
            channel=row["channel"] or "",
            provider=provider,
            key=row["payment_key"],
            state=row["payment_state"] or "requested",
            client_data=orjson.loads(client_data) if isinstance(client_data, str) else client_data,
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
        routing=orjson.loads(routing) if isinstance(routing, str) else routing,
        failure=row["failure"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def order_json(view: OrderView) -> dict[str, Any]:
    """JSON-able, as the API shows it (datetimes ISO 8601, enums their values)."""
    from switch.api.views import order_view_to_json

    return order_view_to_json(view)
