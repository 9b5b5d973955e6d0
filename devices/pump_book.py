"""The sale book of a fuelling point: finished sales, the payable buffer, collections.

Pure (no I/O): :func:`book_apply` folds one journal event into a :class:`SaleBook`, and
the PumpActor's ledger (:mod:`devices.pump_journal`) carries one. It answers the
questions an order asks a pump without the pump being read:

* how did sale ``S`` end (``SaleStatus``)? The last ``FINISHED_KEPT`` finished sales are
  kept by sale id; older ones are looked up in the journal (:mod:`devices.pump_lookup`).
* which post-pay sales wait in the pump's payable buffer, and who is paying for which
  (``PayableSales``, ``LockSale``, ``CollectSale``)? A completed sale the switch did not
  authorize, found while the pump is in stand-alone mode, is ``payable``; a lock or a
  collection is journaled before LOCK_SALE / CLEAR_SALE, and its outcome after.
* which of the switch's own sales may still sit in the pump's buffer? A prepay sale that
  ended behind payable sales cannot be cleared until it reaches the head; its token is
  remembered (``uncleared``) so that, when it does, it is cleared and not taken for a
  stranger's.

Events handled here (payloads JSON; money fen, volume mL, prices milli-fen/L):

=================  ==========================================================================
payable            ``pump_sale_seq, nozzle, volume_ml, amount_fen, unit_price, price_set_id,
                   end_totals, moved, end_reason, auth_token[, queued]``: a stand-alone sale
                   to collect (``queued``: read from the point's display, behind the head)
lock_requested     ``pump_sale_seq, order_id``: before LOCK_SALE (the order holds it now)
locked             ``pump_sale_seq, order_id``: the pump confirmed LOCK_SALE
unlocked           ``pump_sale_seq, order_id[, reason]``: another order may lock it
collect_requested  ``pump_sale_seq, order_id``: before CLEAR_SALE of a payable sale
collected          ``pump_sale_seq, order_id``: CLEAR_SALE done; the sale left the buffer
payable_gone       ``pump_sale_seq, locked_by``: cleared outside the switch (the console);
                   a collect by the order that held it then answers as if it had collected it
completed / void   (see :mod:`devices.pump_journal`): the open sale's report is kept
cleared            ``sale_id, pump_sale_seq``: the sale's record left the pump's buffer
=================  ==========================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

FINISHED_KEPT: Final = 512  # finished sales answered from memory; older: from the journal
COLLECTED_KEPT: Final = 512  # collected payable sales remembered (a repeated collect)


class SalePhase(enum.StrEnum):
    """Where a sale is, as the pump's journal tells it."""

    UNKNOWN = "unknown"  # never journaled on this pump
    AUTH_REQUESTED = "auth_requested"  # journaled, the pump's answer not yet known
    AUTHORIZED = "authorized"
    FUELLING = "fuelling"
    COMPLETED = "completed"
    VOID = "void"  # ended without fuel (or never authorized)


OPEN_PHASES: Final = {
    "auth_requested": SalePhase.AUTH_REQUESTED,
    "authorized": SalePhase.AUTHORIZED,
    "fuelling": SalePhase.FUELLING,
}


@dataclass(frozen=True, slots=True)
class SaleReport:
    """``SaleStatus``'s answer. For COMPLETED the completed event's figures (``amount_fen``
    and ``unit_price`` are None when the sale was reconstructed from volume totals alone);
    for VOID the reason. ``end_totals``: nozzle -> mL after the sale."""

    sale_id: str
    state: SalePhase
    pump_sale_seq: int | None = None
    nozzle: int | None = None
    volume_ml: int | None = None
    amount_fen: int | None = None
    unit_price: int | None = None
    price_set_id: int | None = None
    reconstructed: bool | None = None
    end_totals: Mapping[int, int] | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PayableSale:
    """A post-pay sale waiting in the pump's payable buffer."""

    pump_sale_seq: int
    nozzle: int
    volume_ml: int
    amount_fen: int
    unit_price: int  # milli-fen per litre
    price_set_id: int
    locked_by: str | None = None  # the order paying for it


@dataclass(frozen=True, slots=True)
class PendingCollect:
    """``collect_requested`` journaled, ``collected`` not yet: CLEAR_SALE to (re)send."""

    pump_sale_seq: int
    order_id: str | None  # None: a zero sale the actor clears on its own


@dataclass(frozen=True, slots=True)
class SaleBook:
    payables: tuple[PayableSale, ...] = ()  # in the pump's buffer, oldest (head) first
    locked: frozenset[int] = frozenset()  # seqs whose LOCK_SALE the pump confirmed
    collecting: PendingCollect | None = None
    collected: Mapping[int, str | None] = field(default_factory=dict)  # seq -> order id
    finished: Mapping[str, SaleReport] = field(default_factory=dict)  # oldest first
    uncleared: Mapping[int, str] = field(default_factory=dict)  # token -> sale id

    def payable(self, seq: int) -> PayableSale | None:
        return next((p for p in self.payables if p.pump_sale_seq == seq), None)

    @property
    def payable_seqs(self) -> frozenset[int]:
        return frozenset(p.pump_sale_seq for p in self.payables)


def totals_of(raw: Mapping[str, Any] | None) -> dict[int, int]:
    return {int(n): int(v) for n, v in (raw or {}).items()}


def _kept(mapping: Mapping[Any, Any], key: Any, value: Any, limit: int) -> dict[Any, Any]:
    """``mapping`` with ``key`` set last, the oldest entries dropped beyond ``limit``."""
    out = {k: v for k, v in mapping.items() if k != key}
    out[key] = value
    while len(out) > limit:
        del out[next(iter(out))]
    return out


def ended(book: SaleBook, kind: str, p: Mapping[str, Any], token: int | None) -> SaleBook:
    """The open sale (whose token was ``token``) was journaled ``completed`` or ``void``."""
    if kind == "completed":
        report = SaleReport(
            p["sale_id"],
            SalePhase.COMPLETED,
            p.get("pump_sale_seq"),
            p.get("nozzle"),
            p.get("volume_ml"),
            p.get("amount_fen"),
            p.get("unit_price"),
            p.get("price_set_id"),
            bool(p.get("reconstructed")),
            totals_of(p.get("end_totals")),
        )
    else:
        report = SaleReport(
            p["sale_id"], SalePhase.VOID, p.get("pump_sale_seq"), reason=p["reason"]
        )
    uncleared = book.uncleared
    if token:
        uncleared = _kept(uncleared, token, p["sale_id"], FINISHED_KEPT)
    finished = _kept(book.finished, p["sale_id"], report, FINISHED_KEPT)
    return replace(book, finished=finished, uncleared=uncleared)


def _payable(book: SaleBook, p: Mapping[str, Any]) -> SaleBook:
    if p["pump_sale_seq"] in book.payable_seqs:
        return book
    sale = PayableSale(
        p["pump_sale_seq"],
        p["nozzle"],
        p["volume_ml"],
        p["amount_fen"],
        p["unit_price"],
        p["price_set_id"],
    )
    payables = tuple(sorted((*book.payables, sale), key=lambda s: s.pump_sale_seq))
    return replace(book, payables=payables)


def _set_lock(book: SaleBook, seq: int, order_id: str | None, locked: bool) -> SaleBook:
    payables = tuple(
        replace(s, locked_by=order_id) if s.pump_sale_seq == seq else s for s in book.payables
    )
    confirmed = book.locked | {seq} if locked else book.locked - {seq}
    return replace(book, payables=payables, locked=confirmed)


def _gone(book: SaleBook, seq: int) -> SaleBook:
    payables = tuple(s for s in book.payables if s.pump_sale_seq != seq)
    return replace(book, payables=payables, locked=book.locked - {seq})


def _collected(book: SaleBook, p: Mapping[str, Any]) -> SaleBook:
    seq = p["pump_sale_seq"]
    collected = _kept(book.collected, seq, p.get("order_id"), COLLECTED_KEPT)
    return replace(_gone(book, seq), collecting=None, collected=collected)


def _cleared(book: SaleBook, p: Mapping[str, Any]) -> SaleBook:
    uncleared = {t: s for t, s in book.uncleared.items() if s != p["sale_id"]}
    return replace(book, uncleared=uncleared)


def book_apply(book: SaleBook, kind: str, p: Mapping[str, Any]) -> SaleBook:
    """One event into the book (events it does not know leave it as it is)."""
    if kind == "payable":
        return _payable(book, p)
    if kind == "lock_requested":
        return _set_lock(book, p["pump_sale_seq"], p["order_id"], False)
    if kind == "locked":
        return _set_lock(book, p["pump_sale_seq"], p["order_id"], True)
    if kind == "unlocked":
        return _set_lock(book, p["pump_sale_seq"], None, False)
    if kind == "collect_requested":
        return replace(book, collecting=PendingCollect(p["pump_sale_seq"], p.get("order_id")))
    if kind == "collected":
        return _collected(book, p)
    if kind == "payable_gone":
        if p.get("locked_by") is None:
            return _gone(book, p["pump_sale_seq"])
        # Out of the buffer all the same: the order holding it learns so from CollectSale
        # (the alert raised with it asks a person whether it was paid twice).
        collected = _kept(book.collected, p["pump_sale_seq"], p["locked_by"], COLLECTED_KEPT)
        return replace(_gone(book, p["pump_sale_seq"]), collected=collected)
    if kind == "cleared":
        return _cleared(book, p)
    return book


BOOK_EVENTS: Final = frozenset(
    {
        "payable",
        "lock_requested",
        "locked",
        "unlocked",
        "collect_requested",
        "collected",
        "payable_gone",
        "cleared",
    }
)


def report_from_events(sale_id: str, events: list[tuple[str, Mapping[str, Any]]]) -> SaleReport:
    """A sale's report from its own journal events (type, payload), oldest first: for
    sales older than the book keeps."""
    phase = SalePhase.UNKNOWN
    for kind, p in events:
        if kind in OPEN_PHASES:
            phase = OPEN_PHASES[kind]
        elif kind in ("completed", "void"):
            report = ended(SaleBook(), kind, p, None).finished[sale_id]
            return report
    return SaleReport(sale_id, phase)
