"""A fuelling point's journal stream, folded into what the PumpActor needs to recover.

One stream per fuelling point (``pump:<station>.<pump>``), written only by that point's
actor. Folding it gives the open sale (``auth_requested`` not yet ``completed`` or
``void``), a sale ended but not yet cleared in the pump, the totals last known per
nozzle, the BOOT_COUNT last seen (the journal half of the restart table), and the
operator's intents that outlive a restart: a price change still to apply, whether the
point is to be open or closed, the pump error already alerted, and the latest alerts.

Event types (payloads are JSON; money in fen, volume in mL, prices in milli-fen/L):

=================  ==========================================================================
contact            ``boot_count, totals``: first contact, and after BOOT_COUNT changed
auth_requested     ``sale_id, order_id, token, nozzles, nozzle_mask, preset_type,
                   preset_value, price_set_id, start_totals, start_amount_totals``
authorized         ``sale_id, token``: the pump acknowledged AUTHORIZE
fuelling           ``sale_id, nozzle``: first flow
stop_requested     ``sale_id``: before STOP
suspended/resumed  ``sale_id``: after the pump confirmed
emergency_stop     ``sale_id, reason``: before EMERGENCY_STOP
completed          ``sale_id, pump_sale_seq, nozzle, volume_ml, amount_fen, unit_price,
                   end_reason, price_set_id, end_totals, reconstructed, totals_ok``
void               ``sale_id, reason[, pump_sale_seq]``: a zero sale (cleared if in the buffer)
cleared            ``sale_id, pump_sale_seq``: CLEAR_SALE done
orphan             ``sale_id, moved, end_totals[, pump_sale_seq, volume_ml, amount_fen]``
alert              ``kind, detail, at, sale[, code]``
error_cleared      ``code``: the pump's ERROR_CODE went back to 0
prices_pending     ``price_set_id, prices``: to apply once no sale is open
prices_applied     ``price_set_id, prices``: APPLY_PRICES done
prices_refused     ``price_set_id, result``: the pump refused them for good (not BUSY)
close_requested    ``{}``: CLOSE once nothing is open or left to clear
closed / opened    ``{}``: the pump reported CLOSED / OPEN was decided (then sent)
=================  ==========================================================================

``completed`` and ``void`` carry ``queued: true`` when the sale ended behind others in the
pump's payable buffer: its record is cleared when it reaches the head, not now. The post-pay
events (``payable``, ``lock_requested`` ... ``collected``, ``payable_gone``) and the finished
sales kept for lookups are folded by :mod:`devices.pump_book` into ``PumpLedger.book``; a
``payable`` moves the known totals exactly as an ``orphan`` does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from switch.store.journal import RecordedEvent

from .driver import DriverMemory
from .pump_book import BOOK_EVENTS, SaleBook, book_apply, ended
from .recovery import JournalView, OpenSale

ALERTS_KEPT: Final = 50  # the latest alerts an operator can list from the actor


class Admin(enum.StrEnum):
    """What the operator wants the point to be (journaled), not what the pump says."""

    OPEN = "open"
    CLOSING = "closing"  # Close() accepted; CLOSE is sent once nothing is open or pending
    CLOSED = "closed"


def _totals(raw: Mapping[str, Any]) -> dict[int, int]:
    return {int(n): int(v) for n, v in raw.items()}


@dataclass(frozen=True, slots=True)
class PendingClear:
    sale_id: str
    pump_sale_seq: int


@dataclass(frozen=True, slots=True)
class PendingPrices:
    price_set_id: int
    prices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PumpLedger:
    seq: int = 0  # the stream's head
    open_sale: OpenSale | None = None
    open_sale_state: str | None = None  # auth_requested | authorized | fuelling
    pending_clear: PendingClear | None = None
    volume_totals: dict[int, int] = field(default_factory=dict)
    boot_count: int | None = None
    price_set_id: int | None = None  # last applied by this actor
    pending_prices: PendingPrices | None = None
    admin: Admin = Admin.OPEN
    pump_error: int = 0  # the ERROR_CODE already alerted (0: none)
    sales: int = 0
    alerts: int = 0
    recent_alerts: tuple[Mapping[str, Any], ...] = ()  # the last ALERTS_KEPT, oldest first
    orphan_seqs: frozenset[int] = frozenset()  # pump sale numbers already recorded as orphans
    book: SaleBook = field(default_factory=SaleBook)  # finished sales, payables, collections

    def journal_view(self) -> JournalView:
        accounted = self.orphan_seqs | self.book.payable_seqs
        return JournalView(self.open_sale, self.volume_totals, self.boot_count, accounted)

    def driver_memory(self) -> DriverMemory:
        sale = self.open_sale
        if sale is None:
            return DriverMemory(boot_count=self.boot_count, price_set_id=self.price_set_id)
        return DriverMemory(
            sale.token,
            sale.nozzles,
            dict(sale.start_volume_totals),
            self.boot_count,
            self.price_set_id,
        )


def _auth_requested(ledger: PumpLedger, p: Mapping[str, Any]) -> PumpLedger:
    sale = OpenSale(
        p["sale_id"],
        p["token"],
        frozenset(p["nozzles"]),
        _totals(p["start_totals"]),
        _totals(p.get("start_amount_totals") or {}),
        p.get("price_set_id"),
        p.get("order_id"),
    )
    return replace(ledger, open_sale=sale, open_sale_state="auth_requested")


def _ended(
    ledger: PumpLedger, kind: str, p: Mapping[str, Any], totals: Mapping[str, Any]
) -> PumpLedger:
    """``completed`` or ``void``: the sale is over; the pump's record awaits CLEAR_SALE
    (unless it is queued behind other sales in the buffer: cleared once it is the head)."""
    pending = None
    if p.get("pump_sale_seq") and not p.get("queued"):
        pending = PendingClear(p["sale_id"], p["pump_sale_seq"])
    token = ledger.open_sale.token if ledger.open_sale is not None else None
    return replace(
        ledger,
        open_sale=None,
        open_sale_state=None,
        pending_clear=pending,
        volume_totals={**ledger.volume_totals, **_totals(totals)},
        sales=ledger.sales + 1,
        book=ended(ledger.book, kind, p, token),
    )


def _orphan(ledger: PumpLedger, p: Mapping[str, Any]) -> PumpLedger:
    totals = {**ledger.volume_totals, **_totals(p["end_totals"])}
    seqs = ledger.orphan_seqs
    if p.get("pump_sale_seq"):
        seqs = frozenset(sorted({*seqs, p["pump_sale_seq"]})[-64:])
    return replace(ledger, volume_totals=totals, orphan_seqs=seqs)


def _alert(ledger: PumpLedger, p: Mapping[str, Any]) -> PumpLedger:
    recent = (*ledger.recent_alerts, dict(p))[-ALERTS_KEPT:]
    error = p["code"] if p.get("code") else ledger.pump_error
    return replace(ledger, alerts=ledger.alerts + 1, recent_alerts=recent, pump_error=error)


def apply(ledger: PumpLedger, seq: int, kind: str, p: Mapping[str, Any]) -> PumpLedger:
    """One event into the ledger (the same function folds history and tracks new appends)."""
    ledger = replace(ledger, seq=seq)
    if kind == "contact":
        return replace(ledger, boot_count=p["boot_count"], volume_totals=_totals(p["totals"]))
    if kind == "auth_requested":
        return _auth_requested(ledger, p)
    if kind in ("authorized", "fuelling"):
        return replace(ledger, open_sale_state=kind)
    if kind == "completed":
        return _ended(ledger, kind, p, p["end_totals"])
    if kind == "void":
        return _ended(ledger, kind, p, {})
    if kind == "cleared":
        clear = ledger.pending_clear  # stays if a queued sale of ours was cleared instead
        if clear is None or clear.sale_id == p["sale_id"]:
            clear = None
        return replace(ledger, pending_clear=clear, book=book_apply(ledger.book, kind, p))
    if kind == "orphan":
        return _orphan(ledger, p)
    if kind == "payable":
        totals = {**ledger.volume_totals, **_totals(p["end_totals"])}
        return replace(ledger, volume_totals=totals, book=book_apply(ledger.book, kind, p))
    if kind in BOOK_EVENTS:
        return replace(ledger, book=book_apply(ledger.book, kind, p))
    if kind == "alert":
        return _alert(ledger, p)
    if kind == "error_cleared":
        return replace(ledger, pump_error=0)
    if kind == "prices_pending":
        pending = PendingPrices(p["price_set_id"], tuple(p["prices"]))
        return replace(ledger, pending_prices=pending)
    if kind == "prices_applied":
        return replace(ledger, price_set_id=p["price_set_id"], pending_prices=None)
    if kind == "prices_refused":
        return replace(ledger, pending_prices=None)
    if kind in _ADMIN:
        return replace(ledger, admin=_ADMIN[kind])
    return ledger  # stop_requested, suspended, resumed, emergency_stop: history only


_ADMIN: Final = {"close_requested": Admin.CLOSING, "closed": Admin.CLOSED, "opened": Admin.OPEN}


def fold(events: Iterable[RecordedEvent]) -> PumpLedger:
    ledger = PumpLedger()
    for event in events:
        ledger = apply(ledger, event.seq, event.type, event.payload)
    return ledger
