"""The invariant checker on real database rows: a small consistent set of books (a prepay sale
on WeChat with the remainder refunded, a zero sale on an Alipay pre-authorization, a declined
hold, a post-pay sale on UnionPay) gives no violation, and each way of breaking it is found.

Each test writes the books from plain Python data (orders, attempts, journal events) after
one change to that data or to the hand-written provider and pump ledgers, so every case
differs from the clean one in exactly the thing it breaks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from switch.invariants import Violation, ViolationKind, check_books
from switch.store import Store

A, B, C, D, F = (f"O{n:016X}" for n in (0xA1, 0xB2, 0xC3, 0xD4, 0xF6))
WX, ALI, UP = "1900000109", "2088123456789012", "777290058110048"
CHANNELS = {
    "wechatpay-main": ("wechatpay", WX),
    "alipay-main": ("alipay", ALI),
    "unionpay-main": ("unionpay", UP),
}


def order(oid: str, state: str, pump: int, flow: str = "prepay", **money: int) -> dict[str, Any]:
    row: dict[str, Any] = {"id": oid, "state": state, "pump_no": pump, "flow": flow}
    row["sale_id"] = f"{oid}S" if flow == "prepay" else None
    row["volume_ml"] = 0
    for name in ("held", "gross", "discount", "captured", "released", "refunded"):
        row[f"{name}_fen"] = money.get(name, 0)
    return row


def trade(
    provider: str, merchant: str, key: str, kind: str, state: str, **fen: int
) -> dict[str, Any]:
    row: dict[str, Any] = {"provider": provider, "merchant_id": merchant, "out_trade_no": key}
    row |= {"kind": kind, "state": state}
    for name in ("paid", "held", "captured", "released", "refunded"):
        row[f"{name}_fen"] = fen.get(name, 0)
    return row


def sale(pump: int, seq: int, nozzle: int, volume: int, amount: int, token: int) -> dict[str, Any]:
    return {
        "station": "s001",
        "pump": pump,
        "seq": seq,
        "nozzle": nozzle,
        "volume_ml": volume,
        "amount_fen": amount,
        "auth_token": token,
        "state": 2,
    }


@dataclass
class Fixture:
    orders: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    pump_events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    sales: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[tuple[str, int, int], int] = field(default_factory=dict)

    def add_attempt(
        self, oid: str, no: int, op: str, key: str, fen: int, channel: str, state: str = "approved"
    ) -> None:
        provider = channel.split("-")[0]
        self.attempts.append(
            {"order_id": oid, "attempt_no": no, "operation": op, "key": key, "amount_fen": fen}
            | {"channel": channel, "provider": provider, "state": state}
        )

    def trade_of(self, key: str) -> dict[str, Any]:
        return next(t for t in self.trades if t["out_trade_no"] == key)

    def order_of(self, oid: str) -> dict[str, Any]:
        return next(o for o in self.orders if o["id"] == oid)


def clean() -> Fixture:
    f = Fixture()
    # A: prepay 200 yuan on WeChat (a paid ceiling), 19.646 L for 155 yuan less 5 discount
    f.orders.append(
        order(A, "completed", 1, held=20000, gross=15500, discount=500, captured=15000)
        | {"released_fen": 5000, "volume_ml": 19646}
    )
    f.add_attempt(A, 1, "hold", f"{A}H1", 20000, "wechatpay-main")
    f.add_attempt(A, 1, "capture", f"{A}S", 15000, "wechatpay-main")
    f.add_attempt(A, 1, "release", f"{A}R1", 5000, "wechatpay-main")
    f.trades.append(trade("wechatpay", WX, f"{A}H1", "payment", "REFUND", paid=20000, held=20000))
    f.trade_of(f"{A}H1")["refunded_fen"] = 5000
    f.pump_events += [
        (1, "auth_requested", {"sale_id": f"{A}S", "token": 11, "nozzles": [1]}),
        (
            1,
            "completed",
            {"sale_id": f"{A}S", "pump_sale_seq": 1, "nozzle": 1, "volume_ml": 19646}
            | {"amount_fen": 15500},
        ),
    ]
    f.sales.append(sale(1, 1, 1, 19646, 15500, 11))
    # B: a zero sale on an Alipay pre-authorization, the whole hold unfrozen
    f.orders.append(order(B, "voided", 1, held=10000, released=10000))
    f.add_attempt(B, 1, "hold", f"{B}H1", 10000, "alipay-main")
    f.add_attempt(B, 1, "release", f"{B}R1", 10000, "alipay-main")
    f.trades.append(trade("alipay", ALI, f"{B}H1", "preauth", "CLOSED", released=10000))
    f.pump_events += [
        (1, "auth_requested", {"sale_id": f"{B}S", "token": 12, "nozzles": [1]}),
        (1, "completed", {"sale_id": f"{B}S", "pump_sale_seq": 2, "nozzle": 1, "volume_ml": 0}),
    ]
    f.sales.append(sale(1, 2, 1, 0, 0, 12))
    # C: the customer declined; the provider's unpaid trade was closed
    f.orders.append(order(C, "failed", 2) | {"sale_id": None})
    f.add_attempt(C, 1, "hold", f"{C}H1", 5000, "wechatpay-main", "declined")
    f.trades.append(trade("wechatpay", WX, f"{C}H1", "payment", "CLOSED"))
    # D: post-pay on UnionPay, 10 L of 95 the attendant dispensed, paid by pre-auth + completion
    f.orders.append(order(D, "completed", 2, "postpay", held=8420, gross=8420, captured=8420))
    f.add_attempt(D, 1, "hold", f"{D}H1", 8420, "unionpay-main")
    f.add_attempt(D, 1, "capture", f"{D}S", 8420, "unionpay-main")
    f.trades.append(
        trade("unionpay", UP, f"{D}H1", "preauth", "COMPLETED", paid=8420, held=8420)
        | {"captured_fen": 8420}
    )
    f.pump_events.append(
        (2, "payable", {"sale_id": "p2-1", "pump_sale_seq": 1, "nozzle": 2, "volume_ml": 10000})
    )
    f.order_of(D).update(pump_sale_seq=1, volume_ml=10000)
    f.sales.append(sale(2, 1, 2, 10000, 8420, 0))
    # F: an earlier payment of that sale, failed before it started (the switch was killed
    # under the request): its row names the sale but never took it; the driver paid again (D)
    f.orders.append(order(F, "failed", 2, "postpay") | {"pump_sale_seq": 1})
    f.totals = {("s001", 1, 1): 19646, ("s001", 2, 2): 10000, ("s001", 1, 2): 0}
    return f


async def write(store: Store, f: Fixture) -> None:
    db = store.db
    for table in ("payment_attempts", "orders", "journal", "journal_streams", "pumps"):
        await db.execute(f"DELETE FROM {table}")
    await db.execute(
        "INSERT INTO stations (id, name, lat_e6, lon_e6) VALUES ('s001', 'one', 0, 0)"
        " ON CONFLICT DO NOTHING"
    )
    for pump in (1, 2):
        await db.execute(
            "INSERT INTO pumps (station_id, pump_no, protocol, endpoint, unit_id)"
            " VALUES ('s001', $1, 'gfd1-tcp', '127.0.0.1:502', $1)",
            pump,
        )
    for o in f.orders:
        await db.execute(
            "INSERT INTO orders (id, customer_id, station_id, pump_no, flow, state, sale_id,"
            " held_fen, gross_fen, discount_fen, captured_fen, released_fen, refunded_fen,"
            " terminal, pump_sale_seq, volume_ml)"
            " VALUES ($1, 'c1', 's001', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            o["id"],
            o["pump_no"],
            o["flow"],
            o["state"],
            o["sale_id"],
            o["held_fen"],
            o["gross_fen"],
            o["discount_fen"],
            o["captured_fen"],
            o["released_fen"],
            o["refunded_fen"],
            o.get("terminal", True),
            o.get("pump_sale_seq"),
            o.get("volume_ml", 0),
        )
    for a in f.attempts:
        await db.execute(
            "INSERT INTO payment_attempts (id, order_id, attempt_no, channel, provider,"
            " operation, idempotency_key, amount_fen, state)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            f"{a['order_id']}-{a['attempt_no']}-{a['operation']}",
            a["order_id"],
            a["attempt_no"],
            a["channel"],
            a["provider"],
            a["operation"],
            a["key"],
            a["amount_fen"],
            a["state"],
        )
    events = [(f"pump:s001.p{pump:02d}", kind, p) for pump, kind, p in f.pump_events]
    heads: dict[str, int] = {}
    for stream, kind, payload in events:
        heads[stream] = heads.get(stream, 0) + 1
        await db.execute(
            "INSERT INTO journal (stream_id, seq, type, payload) VALUES ($1, $2, $3, $4::jsonb)",
            stream,
            heads[stream],
            kind,
            orjson.dumps(payload).decode(),
        )


async def check(store: Store, f: Fixture, channels: bool = True) -> list[Violation]:
    await write(store, f)
    ledgers: dict[str, list[dict[str, Any]]] = {}
    for t in f.trades:
        ledgers.setdefault(t["provider"], []).append(t)
    return await check_books(
        store.db,
        provider_ledgers=ledgers,
        pump_ledger=f.sales,
        pump_totals=f.totals,
        channels=CHANNELS if channels else None,
    )


async def test_clean_books_have_no_violation(store: Store) -> None:
    assert await check(store, clean()) == []
    assert await check(store, clean(), channels=False) == []


def _set(target: Callable[[Fixture], dict[str, Any]], **values: Any) -> Callable[[Fixture], None]:
    def change(f: Fixture) -> None:
        target(f).update(values)

    return change


def _second_capture(f: Fixture) -> None:
    f.add_attempt(A, 2, "capture", f"{A}S2", 15000, "wechatpay-main")


def _customer_refund_too_big(f: Fixture) -> None:
    f.add_attempt(A, 1, "refund", f"{A}F1", 16000, "wechatpay-main")


def _unknown_trade(f: Fixture) -> None:
    f.trades.append(trade("alipay", ALI, "SOMEONEELSE1", "payment", "TRADE_SUCCESS", paid=100))


def _trade_lost(f: Fixture) -> None:
    f.trades.remove(f.trade_of(f"{D}H1"))


def _wrong_merchant(f: Fixture) -> None:
    f.trade_of(f"{A}H1")["merchant_id"] = "1900000110"


def _sale_not_journaled(f: Fixture) -> None:
    f.sales.append(sale(1, 3, 2, 500, 421, 0))
    f.totals[("s001", 1, 2)] = 500


def _paid_twice(f: Fixture) -> None:
    """A prepay completion booked against the attendant's buffered sale D already paid."""
    e = f"O{0xE5:016X}"
    f.orders.append(order(e, "completed", 2, held=8420, gross=8420, captured=8420))
    f.order_of(e)["volume_ml"] = 10000
    f.add_attempt(e, 1, "hold", f"{e}H1", 8420, "unionpay-main")
    f.add_attempt(e, 1, "capture", f"{e}S", 8420, "unionpay-main")
    f.trades.append(f.trade_of(f"{D}H1") | {"out_trade_no": f"{e}H1"})
    completed = {"sale_id": f"{e}S", "pump_sale_seq": 1, "nozzle": 2, "volume_ml": 10000}
    f.pump_events.append((2, "completed", completed))


def _order(oid: str) -> Callable[[Fixture], dict[str, Any]]:
    return lambda f: f.order_of(oid)


def _trade(key: str) -> Callable[[Fixture], dict[str, Any]]:
    return lambda f: f.trade_of(key)


CASES: dict[str, tuple[Callable[[Fixture], None], ViolationKind, str]] = {
    "live order": (
        _set(_order(B), state="releasing", terminal=False),
        ViolationKind.ORDER_NOT_TERMINAL,
        B,
    ),
    "captured the gross": (
        _set(_order(A), captured_fen=15500, released_fen=4500),
        ViolationKind.CAPTURE_AMOUNT,
        A,
    ),
    "captured twice": (_second_capture, ViolationKind.CAPTURE_ATTEMPTS, A),
    "kept money of a zero sale": (
        _set(_trade(f"{B}H1"), captured_fen=100, released_fen=9900),
        ViolationKind.CHARGED_UNFUELLED,
        B,
    ),
    "refund over the capture": (_customer_refund_too_big, ViolationKind.REFUND_EXCEEDS_CAPTURE, A),
    "remainder not released": (
        _set(_order(A), released_fen=4000),
        ViolationKind.HOLD_NOT_RELEASED,
        A,
    ),
    "hold still frozen": (
        _set(_trade(f"{B}H1"), state="AUTHORIZED", held_fen=10000, released_fen=0),
        ViolationKind.HOLD_LEFT_OPEN,
        f"{B}H1",
    ),
    "provider never saw the hold": (_trade_lost, ViolationKind.MISSING_TRADE, f"{D}H1"),
    "provider refunded less": (
        _set(_trade(f"{A}H1"), refunded_fen=4000),
        ViolationKind.PROVIDER_MISMATCH,
        A,
    ),
    "money under a foreign key": (_unknown_trade, ViolationKind.UNKNOWN_TRADE, "SOMEONEELSE1"),
    "paid to another merchant": (_wrong_merchant, ViolationKind.CHANNEL_TOTALS, "wechatpay-main"),
    "totalizer moved more": (
        lambda f: f.totals.update({("s001", 1, 1): 19700}),
        ViolationKind.PUMP_TOTALS,
        "s001/p01/n1",
    ),
    "a sale the switch never journaled": (
        _sale_not_journaled,
        ViolationKind.PUMP_SALES,
        "s001/p01/n2",
    ),
    "order charged another amount than the pump's sale": (
        lambda f: f.sales[0].update(amount_fen=15600),
        ViolationKind.SALE_MISMATCH,
        A,
    ),
    "one pump sale paid by two orders": (
        _paid_twice,
        ViolationKind.SALE_PAID_TWICE,
        f"O{0xE5:016X}",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_violation_is_found(store: Store, case: str) -> None:
    change, kind, subject = CASES[case]
    books = copy.deepcopy(clean())
    change(books)
    found = await check(store, books)
    assert (kind, subject) in {(v.kind, v.subject) for v in found}, found


async def test_provider_totals_without_channel_names(store: Store) -> None:
    """Without the channel map the totals are per provider: a payment moved to another
    WeChat merchant is then fine, one booked under another provider is not."""
    books = clean()
    _wrong_merchant(books)
    assert await check(store, books, channels=False) == []
    books.trade_of(f"{A}H1")["provider"] = "alipay"
    found = await check(store, books, channels=False)
    assert {(v.kind, v.subject) for v in found} >= {
        (ViolationKind.CHANNEL_TOTALS, "alipay"),
        (ViolationKind.CHANNEL_TOTALS, "wechatpay"),
    }
    assert all(v.to_json()["kind"] in set(ViolationKind) for v in found)
