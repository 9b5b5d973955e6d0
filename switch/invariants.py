"""The books must balance: what the switch recorded against what the providers and pumps say.

The switch's own checks guard each step; this one looks at the end result from the outside,
the way an auditor would, after a demo or load test has run: the orders and payment attempts
in the database, the pump journals, the provider simulators' ledgers and the pump simulator's
sales and totalizers. Each broken invariant of the architecture (exactly-once settlement, no
hold left open, totalizers are the truth) is one :class:`Violation`, so a run can say not just
"it failed" but which order or nozzle is wrong and by how much.

Formats it reads (as the simulators' control APIs give them):

* a provider trade (``GET /ledger``): ``provider, merchant_id, out_trade_no`` (the hold key
  ``<order>H<n>``), ``kind`` (payment | preauth), ``state``, ``paid_fen``, ``held_fen``,
  ``captured_fen``, ``refunded_fen``. Money taken from the payer is ``captured_fen`` of a
  pre-authorization, ``paid_fen`` of a payment; a pre-authorization in ``AUTHORIZED`` still
  freezes ``held_fen``.
* a pump sale (control ``ledger``): ``station`` (the switch's station id: the fetcher maps the
  simulator's station number), ``pump, seq, nozzle, volume_ml, amount_fen, auth_token``.
* ``pump_totals``: per (station id, pump, nozzle), how far the volume totalizer moved over the
  checked period (end snapshot minus start snapshot).
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from switch.store import Database

__all__ = ["TERMINAL_STATES", "Books", "Violation", "ViolationKind", "audit", "check_books"]

TERMINAL_STATES: Final = frozenset({"completed", "voided", "cancelled", "failed"})
UNFUELLED_STATES: Final = frozenset({"voided", "cancelled", "failed"})
_ORDER_OF_KEY: Final = re.compile(r"(O[0-9A-F]{16})H\d+")
_PUMP_STREAM: Final = re.compile(r"pump:(.+)\.p(\d+)")
SALE_EVENTS: Final = ("auth_requested", "completed", "payable", "orphan")

Nozzle = tuple[str, int, int]  # station id, pump, nozzle


class ViolationKind(enum.StrEnum):
    ORDER_NOT_TERMINAL = "order_not_terminal"
    CAPTURE_AMOUNT = "capture_amount"  # completed, but captured != gross - discount
    CAPTURE_ATTEMPTS = "capture_attempts"  # not exactly one approved capture for the net
    CHARGED_UNFUELLED = "charged_unfuelled"  # money kept for an order without a sale
    REFUND_EXCEEDS_CAPTURE = "refund_exceeds_capture"
    HOLD_NOT_RELEASED = "hold_not_released"  # held - captured != released on the order
    HOLD_LEFT_OPEN = "hold_left_open"  # the provider still freezes money of a finished order
    MISSING_TRADE = "missing_trade"  # an approved hold the provider has never heard of
    PROVIDER_MISMATCH = "provider_mismatch"  # the provider's net for an order differs
    UNKNOWN_TRADE = "unknown_trade"  # money at a provider under a key of no order of ours
    CHANNEL_TOTALS = "channel_totals"  # a channel's net at its provider differs from ours
    PUMP_TOTALS = "pump_totals"  # totalizer movement != the pump's own sales
    PUMP_SALES = "pump_sales"  # the pump's sales != the sales the switch journaled
    SALE_MISMATCH = "sale_mismatch"  # an order's sale differs from the pump's record
    SALE_PAID_TWICE = "sale_paid_twice"  # one pump sale settled by two orders


@dataclass(frozen=True, slots=True)
class Violation:
    kind: ViolationKind
    subject: str  # the order id, trade key, channel or "station/pump/nozzle"
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "subject": self.subject, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Books:
    """The switch's side, as plain rows: ``orders`` and ``attempts`` from their tables, and
    ``pump_events`` as (station id, pump, type, payload) of the pump journals' sale events."""

    orders: Sequence[Mapping[str, Any]]
    attempts: Sequence[Mapping[str, Any]]
    pump_events: Sequence[tuple[str, int, str, Mapping[str, Any]]]


def _payload(raw: Any) -> Mapping[str, Any]:
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return value if isinstance(value, Mapping) else {}


async def load_books(db: Database) -> Books:
    orders = await db.fetch("SELECT * FROM orders ORDER BY id")
    attempts = await db.fetch("SELECT * FROM payment_attempts ORDER BY order_id, attempt_no")
    rows = await db.fetch(
        "SELECT stream_id, type, payload FROM journal WHERE stream_id LIKE 'pump:%'"
        " AND type = ANY($1::text[]) ORDER BY position",
        list(SALE_EVENTS),
    )
    pump_events = []
    for row in rows:
        match = _PUMP_STREAM.fullmatch(row["stream_id"])
        if match is not None:
            station, pump = match.group(1), int(match.group(2))
            pump_events.append((station, pump, row["type"], _payload(row["payload"])))
    return Books(orders, attempts, pump_events)


async def check_books(
    db: Database,
    *,
    provider_ledgers: Mapping[str, Sequence[Mapping[str, Any]]],
    pump_ledger: Sequence[Mapping[str, Any]],
    pump_totals: Mapping[Nozzle, int],
    channels: Mapping[str, tuple[str, str]] | None = None,
) -> list[Violation]:
    """Every violation of the books; empty when they balance. ``channels`` maps a channel
    name to its (provider, merchant id): with it the totals are compared per channel, without
    it per provider."""
    books = await load_books(db)
    return audit(books, provider_ledgers, pump_ledger, pump_totals, channels)


def audit(
    books: Books,
    provider_ledgers: Mapping[str, Sequence[Mapping[str, Any]]],
    pump_ledger: Sequence[Mapping[str, Any]],
    pump_totals: Mapping[Nozzle, int],
    channels: Mapping[str, tuple[str, str]] | None = None,
) -> list[Violation]:
    """The pure part of :func:`check_books`."""
    trades = [t for ledger in provider_ledgers.values() for t in ledger]
    out: list[Violation] = []
    out += _money(books, trades)
    out += _channels(books, trades, channels)
    out += _pumps(books, pump_ledger, pump_totals)
    out += _order_sales(books, pump_ledger)
    return out


# -- money -------------------------------------------------------------------------------


def charged(trade: Mapping[str, Any]) -> int:
    """What the payer paid on this trade, before refunds."""
    return int(trade["captured_fen"] if trade["kind"] == "preauth" else trade["paid_fen"])


def net(trade: Mapping[str, Any]) -> int:
    return charged(trade) - int(trade["refunded_fen"])


def frozen(trade: Mapping[str, Any]) -> int:
    return (
        int(trade["held_fen"])
        if trade["kind"] == "preauth" and trade["state"] == "AUTHORIZED"
        else 0
    )


def _approved(attempts: Iterable[Mapping[str, Any]], operation: str) -> list[Mapping[str, Any]]:
    return [a for a in attempts if a["operation"] == operation and a["state"] == "approved"]


def _customer_refunds(attempts: Iterable[Mapping[str, Any]]) -> int:
    """Refunds of what was captured; a late success's refund (key ``...LR``) gives back a
    payment that was never captured, so it is not one of them."""
    return sum(
        a["amount_fen"]
        for a in _approved(attempts, "refund")
        if not a["idempotency_key"].endswith("LR")
    )


def _money(books: Books, trades: Sequence[Mapping[str, Any]]) -> list[Violation]:
    out: list[Violation] = []
    attempts_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for a in books.attempts:
        attempts_of[a["order_id"]].append(a)
    trades_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    orders = {o["id"]: o for o in books.orders}
    for t in trades:
        match = _ORDER_OF_KEY.fullmatch(str(t["out_trade_no"]))
        if match is not None and match.group(1) in orders:
            trades_of[match.group(1)].append(t)
        elif net(t) or frozen(t):
            detail = f"{t['provider']} {t['merchant_id']} holds {frozen(t)}, kept {net(t)} fen"
            out.append(Violation(ViolationKind.UNKNOWN_TRADE, str(t["out_trade_no"]), detail))
    for order_id, o in orders.items():
        out += _order_money(o, attempts_of[order_id], trades_of[order_id])
    return out


def _order_money(
    o: Mapping[str, Any], attempts: list[Mapping[str, Any]], trades: list[Mapping[str, Any]]
) -> list[Violation]:
    v = ViolationKind
    oid, state = str(o["id"]), str(o["state"])
    if not o["terminal"] or state not in TERMINAL_STATES:
        return [Violation(v.ORDER_NOT_TERMINAL, oid, f"{state} (terminal={o['terminal']})")]
    out: list[Violation] = []
    kept = o["captured_fen"] - o["refunded_fen"]
    captures = _approved(attempts, "capture")
    if state == "completed":
        net_fen = o["gross_fen"] - o["discount_fen"]
        if o["captured_fen"] != net_fen:
            detail = f"captured {o['captured_fen']} fen, net is {net_fen}"
            out.append(Violation(v.CAPTURE_AMOUNT, oid, detail))
        if [c["amount_fen"] for c in captures] != [net_fen]:
            detail = f"approved captures {[c['amount_fen'] for c in captures]}, net is {net_fen}"
            out.append(Violation(v.CAPTURE_ATTEMPTS, oid, detail))
    elif kept or captures:
        detail = f"{state}: kept {kept} fen, {len(captures)} approved captures"
        out.append(Violation(v.CHARGED_UNFUELLED, oid, detail))
    captured_sum = sum(c["amount_fen"] for c in captures)
    refunds = _customer_refunds(attempts)
    if o["refunded_fen"] > o["captured_fen"] or refunds > captured_sum:
        detail = f"refunded {o['refunded_fen']}/{refunds} of {o['captured_fen']}/{captured_sum} fen"
        out.append(Violation(v.REFUND_EXCEEDS_CAPTURE, oid, detail))
    holds = _approved(attempts, "hold")
    if holds and o["held_fen"] - o["captured_fen"] != o["released_fen"]:
        detail = f"held {o['held_fen']}, captured {o['captured_fen']}, released {o['released_fen']}"
        out.append(Violation(v.HOLD_NOT_RELEASED, oid, detail))
    keys = {str(t["out_trade_no"]) for t in trades}
    for hold in holds:
        if hold["idempotency_key"] not in keys:
            detail = f"approved hold on {hold['channel']} unknown to {hold['provider']}"
            out.append(Violation(v.MISSING_TRADE, str(hold["idempotency_key"]), detail))
    for t in trades:
        if frozen(t):
            detail = (
                f"{t['provider']} still freezes {frozen(t)} fen ({t['state']}) of {state} {oid}"
            )
            out.append(Violation(v.HOLD_LEFT_OPEN, str(t["out_trade_no"]), detail))
    provider_net = sum(net(t) for t in trades)
    if provider_net != kept:
        kind = v.CHARGED_UNFUELLED if state in UNFUELLED_STATES else v.PROVIDER_MISMATCH
        detail = f"providers kept {provider_net} fen, the order says {kept}"
        out.append(Violation(kind, oid, detail))
    return out


def _channels(
    books: Books,
    trades: Sequence[Mapping[str, Any]],
    channels: Mapping[str, tuple[str, str]] | None,
) -> list[Violation]:
    """The providers' net per channel (or provider) against our approved captures less the
    refunds of captures, per channel."""
    ours: dict[str, int] = defaultdict(int)
    for a in books.attempts:
        name = a["channel"] if channels is not None else a["provider"]
        if a["state"] != "approved":
            continue
        if a["operation"] == "capture":
            ours[name] += a["amount_fen"]
        elif a["operation"] == "refund" and not a["idempotency_key"].endswith("LR"):
            ours[name] -= a["amount_fen"]
    by_merchant = {(p, m): name for name, (p, m) in (channels or {}).items()}
    theirs: dict[str, int] = defaultdict(int)
    for t in trades:
        if channels is None:
            name = str(t["provider"])
        else:
            name = by_merchant.get((str(t["provider"]), str(t["merchant_id"])), "")
            name = name or f"{t['provider']}:{t['merchant_id']}"
        theirs[name] += net(t)
    return [
        Violation(
            ViolationKind.CHANNEL_TOTALS,
            name,
            f"provider net {theirs[name]}, ours {ours[name]} fen",
        )
        for name in sorted(set(ours) | set(theirs))
        if ours[name] != theirs[name]
    ]


# -- pumps -------------------------------------------------------------------------------


def _nozzle_name(key: Nozzle) -> str:
    return f"{key[0]}/p{key[1]:02d}/n{key[2]}"


def switch_volumes(books: Books) -> dict[Nozzle, int]:
    """Per nozzle, the volume of every sale the pump actors journaled: authorized sales
    (``completed``), post-pay ones (``payable``) and sales nobody authorized (``orphan``,
    by how far they moved the totals). One pump sale journaled twice counts once."""
    out: dict[Nozzle, int] = defaultdict(int)
    seen: set[tuple[str, int, int]] = set()
    for station, pump, kind, p in books.pump_events:
        if kind not in ("completed", "payable", "orphan"):
            continue
        seq = p.get("pump_sale_seq")
        if seq:
            if (station, pump, seq) in seen:
                continue
            seen.add((station, pump, seq))
        if kind == "orphan":
            for nozzle, moved in (p.get("moved") or {}).items():
                out[(station, pump, int(nozzle))] += int(moved)
        elif p.get("nozzle"):
            out[(station, pump, int(p["nozzle"]))] += int(p.get("volume_ml") or 0)
    return out


def _pumps(
    books: Books, pump_ledger: Sequence[Mapping[str, Any]], pump_totals: Mapping[Nozzle, int]
) -> list[Violation]:
    pumped: dict[Nozzle, int] = defaultdict(int)
    for sale in pump_ledger:
        if sale["nozzle"]:
            pumped[(str(sale["station"]), int(sale["pump"]), int(sale["nozzle"]))] += sale[
                "volume_ml"
            ]
    recorded = switch_volumes(books)
    out: list[Violation] = []
    for key in sorted(set(pumped) | set(recorded) | set(pump_totals)):
        moved, sold, ours = pump_totals.get(key, 0), pumped.get(key, 0), recorded.get(key, 0)
        if moved != sold:
            detail = f"totalizer moved {moved} mL, the pump's sales sum to {sold}"
            out.append(Violation(ViolationKind.PUMP_TOTALS, _nozzle_name(key), detail))
        if sold != ours:
            detail = f"the pump's sales sum to {sold} mL, the switch journaled {ours}"
            out.append(Violation(ViolationKind.PUMP_SALES, _nozzle_name(key), detail))
    return out


def _order_sales(books: Books, pump_ledger: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """Each order with a sale against the pump's record of that sale: the journal names its
    token and the pump's sale number; the pump's volume and amount are what was dispensed."""
    by_seq = {(str(s["station"]), int(s["pump"]), int(s["seq"])): s for s in pump_ledger}
    by_token = {(str(s["station"]), int(s["pump"]), int(s["auth_token"])): s for s in pump_ledger}
    journaled: dict[str, dict[str, Any]] = defaultdict(dict)
    for _station, _pump, kind, p in books.pump_events:
        if p.get("sale_id") and kind in ("auth_requested", "completed", "payable"):
            journaled[str(p["sale_id"])].update(p)
    settled: dict[tuple[str, int, int], str] = {}
    out: list[Violation] = []
    v = ViolationKind
    for o in books.orders:
        oid, where = str(o["id"]), (str(o["station_id"]), int(o["pump_no"]))
        ours = journaled.get(str(o["sale_id"] or ""), {})
        seq = ours.get("pump_sale_seq") or o.get("pump_sale_seq")
        sale = by_seq.get((*where, int(seq))) if seq else None
        if sale is None and ours.get("token") is not None:
            sale = by_token.get((*where, int(ours["token"])))
        if sale is None:
            if o["state"] == "completed":
                out.append(Violation(v.SALE_MISMATCH, oid, "the pump has no record of its sale"))
            continue
        # A failed order's row never took a sale (its volume is the column's 0), though a
        # post-pay one names the sale it tried to pay: only the journal speaks for it.
        row_volume = None if o["state"] == "failed" else o.get("volume_ml")
        for source, volume in (("journaled", ours.get("volume_ml")), ("order", row_volume)):
            if volume is not None and volume != sale["volume_ml"]:
                detail = f"{source} {volume} mL, the pump sold {sale['volume_ml']}"
                out.append(Violation(v.SALE_MISMATCH, oid, detail))
        if o["state"] == "completed":
            if o["gross_fen"] != sale["amount_fen"]:
                detail = f"gross {o['gross_fen']} fen, the pump's sale is {sale['amount_fen']}"
                out.append(Violation(v.SALE_MISMATCH, oid, detail))
            key = (*where, int(sale["seq"]))
            if key in settled:
                detail = f"pump sale {sale['seq']} also settled by {settled[key]}"
                out.append(Violation(v.SALE_PAID_TWICE, oid, detail))
            settled[key] = oid
    return out
