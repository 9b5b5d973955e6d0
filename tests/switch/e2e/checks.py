"""What a finished order must look like from the outside: the switch's rows, the providers'
ledgers and the pump's sales and totalizers agree, and the money moved exactly once.

:func:`check_settled` asserts the order-level facts directly (clear failure messages), then
runs the invariant checker (:func:`switch.invariants.audit`) on the books of that order only:
its order row and attempts, the pump journal events of its sale, the trades under its keys,
the pump sales that ended since :func:`mark_pump` and how far the totalizers moved since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switch.invariants import Books, audit, load_books
from switch.store import Database

from .client import PumpSim
from .harness import STATION, World

__all__ = ["PumpMark", "check_settled", "mark_pump", "order_trades"]


@dataclass(frozen=True, slots=True)
class PumpMark:
    pump: int
    sales: int  # the pump's ledger length then
    totals: dict[int, int]  # volume totalizer per nozzle then


async def mark_pump(pumps: PumpSim, pump: int) -> PumpMark:
    return PumpMark(pump, len(await pumps.ledger(pump)), await pumps.totals(pump))


async def order_trades(world: World, order_id: str) -> list[dict[str, Any]]:
    """Every trade at any provider simulator under one of the order's hold keys."""
    out: list[dict[str, Any]] = []
    for process in world.providers.values():
        trades = await process.control.aledger()
        out += [t for t in trades if str(t["out_trade_no"]).startswith(f"{order_id}H")]
    return out


def _charged(trade: dict[str, Any]) -> int:
    return int(trade["captured_fen"] if trade["kind"] == "preauth" else trade["paid_fen"])


def _frozen(trade: dict[str, Any]) -> int:
    held = trade["kind"] == "preauth" and trade["state"] == "AUTHORIZED"
    return int(trade["held_fen"]) if held else 0


async def check_settled(
    db: Database, world: World, pumps: PumpSim, mark: PumpMark, order_id: str
) -> dict[str, Any]:
    """Assert the order is terminal and settled exactly once; returns its row."""
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    assert row is not None, f"no order row {order_id}"
    order = dict(row)
    state = order["state"]
    assert order["terminal"], f"{order_id} is not terminal: {state}"
    attempts = [
        dict(a)
        for a in await db.fetch(
            "SELECT * FROM payment_attempts WHERE order_id = $1 ORDER BY attempt_no", order_id
        )
    ]
    captures = [a for a in attempts if a["operation"] == "capture" and a["state"] == "approved"]
    trades = await order_trades(world, order_id)
    new_sales = (await pumps.ledger(mark.pump))[mark.sales :]
    totals = await pumps.totals(mark.pump)
    moved = {n: totals[n] - mark.totals.get(n, 0) for n in totals}
    summary = f"{order_id} {state}: order {_money(order)}, attempts {_attempts(attempts)}"
    summary += f", trades {trades}, pump sales {new_sales}, totals moved {moved}"

    charged = sum(_charged(t) for t in trades)
    refunded = sum(int(t["refunded_fen"]) for t in trades)
    assert sum(_frozen(t) for t in trades) == 0, f"a hold is left open: {summary}"
    assert sum(moved.values()) == sum(s["volume_ml"] for s in new_sales), summary
    if state == "completed":
        net = order["gross_fen"] - order["discount_fen"]
        assert net > 0, summary
        assert [c["amount_fen"] for c in captures] == [net], f"not one capture: {summary}"
        assert order["captured_fen"] == net, summary
        if order["flow"] == "prepay":
            assert order["released_fen"] == order["held_fen"] - net, summary
        assert charged - refunded == net - order["refunded_fen"], summary
        sale = next((s for s in new_sales if s["volume_ml"] == order["volume_ml"]), None)
        assert sale is not None, f"the pump has no sale of the order's volume: {summary}"
        assert sale["amount_fen"] == order["gross_fen"], summary
        assert moved[sale["nozzle"]] == order["volume_ml"], summary
    else:
        assert not captures and order["captured_fen"] == 0, f"charged unfuelled: {summary}"
        assert charged - refunded == 0, f"the provider kept money: {summary}"
        assert sum(moved.values()) == 0, f"fuel without a sale: {summary}"

    books = await load_books(db)
    seqs = {int(s["seq"]) for s in new_sales}
    events = [
        e
        for e in books.pump_events
        if e[0] == STATION
        and e[1] == mark.pump
        and (e[3].get("sale_id") == order["sale_id"] or e[3].get("pump_sale_seq") in seqs)
    ]
    mine = Books([order], attempts, events)
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for trade in trades:
        by_provider.setdefault(str(trade["provider"]), []).append(trade)
    totals_moved = {(STATION, mark.pump, n): v for n, v in moved.items() if v}
    violations = audit(mine, by_provider, new_sales, totals_moved, world.channels())
    # the channel totals compare this order's attempts with this order's trades only
    assert not violations, f"{[v.to_json() for v in violations]}; {summary}"
    return order


def _money(order: dict[str, Any]) -> str:
    names = ("held", "gross", "discount", "captured", "released", "refunded")
    return ", ".join(f"{n} {order[f'{n}_fen']}" for n in names) + f", {order['volume_ml']} mL"


def _attempts(attempts: list[dict[str, Any]]) -> list[str]:
    return [
        f"{a['operation']} {a['idempotency_key']} {a['amount_fen']} {a['state']} ({a['channel']})"
        for a in attempts
    ]
