"""A fuelling point's journal stream, folded into what the PumpActor needs to recover.

One stream per fuelling point (``pump:<station>.<pump>``), written only by that point's
actor. Folding it gives the open sale (``auth_requested`` not yet ``completed`` or
``void``), a completed sale not yet cleared in the pump, the totals last known per nozzle,
and the BOOT_COUNT last seen: the journal half of the restart table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from switch.store.journal import RecordedEvent

from .recovery import JournalView, OpenSale


def _totals(raw: Mapping[str, Any]) -> dict[int, int]:
    return {int(n): int(v) for n, v in raw.items()}


@dataclass(frozen=True, slots=True)
class PendingClear:
    sale_id: str
    pump_sale_seq: int


@dataclass(frozen=True, slots=True)
class PumpLedger:
    seq: int = 0  # the stream's head
    open_sale: OpenSale | None = None
    open_sale_state: str | None = None  # auth_requested | authorized | fuelling
    pending_clear: PendingClear | None = None
    volume_totals: dict[int, int] = field(default_factory=dict)
    boot_count: int | None = None
    price_set_id: int | None = None
    sales: int = 0
    alerts: int = 0
    orphan_seqs: frozenset[int] = frozenset()  # pump sale numbers already recorded as orphans

    def journal_view(self) -> JournalView:
        return JournalView(self.open_sale, self.volume_totals, self.boot_count)


def apply(ledger: PumpLedger, seq: int, kind: str, p: Mapping[str, Any]) -> PumpLedger:
    """One event into the ledger (the same function folds history and tracks new appends)."""
    ledger = replace(ledger, seq=seq)
    if kind == "contact":
        return replace(ledger, boot_count=p["boot_count"], volume_totals=_totals(p["totals"]))
    if kind == "auth_requested":
        sale = OpenSale(
            p["sale_id"], p["token"], frozenset(p["nozzles"]), _totals(p["start_totals"])
        )
        return replace(ledger, open_sale=sale, open_sale_state="auth_requested")
    if kind in ("authorized", "fuelling"):
        return replace(ledger, open_sale_state=kind)
    if kind == "completed":
        totals = {**ledger.volume_totals, **_totals(p["end_totals"])}
        pending = None
        if p.get("pump_sale_seq"):
            pending = PendingClear(p["sale_id"], p["pump_sale_seq"])
        return replace(
            ledger,
            open_sale=None,
            open_sale_state=None,
            pending_clear=pending,
            volume_totals=totals,
            sales=ledger.sales + 1,
        )
    if kind == "cleared":
        return replace(ledger, pending_clear=None)
    if kind == "void":
        return replace(ledger, open_sale=None, open_sale_state=None, sales=ledger.sales + 1)
    if kind == "orphan":
        totals = {**ledger.volume_totals, **_totals(p["end_totals"])}
        seqs = ledger.orphan_seqs
        if p.get("pump_sale_seq"):
            seqs = frozenset(sorted({*seqs, p["pump_sale_seq"]})[-64:])
        return replace(ledger, volume_totals=totals, orphan_seqs=seqs)
    if kind == "alert":
        return replace(ledger, alerts=ledger.alerts + 1)
    if kind == "prices_applied":
        return replace(ledger, price_set_id=p["price_set_id"])
    return ledger


def fold(events: Iterable[RecordedEvent]) -> PumpLedger:
    ledger = PumpLedger()
    for event in events:
        ledger = apply(ledger, event.seq, event.type, event.payload)
    return ledger
