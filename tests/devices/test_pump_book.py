"""The journal fold for post-pay and lookups, as pure functions: events in, ledger out.

(The same ``apply`` folds a stream at start and follows each new append, so what these
tests pin is what a restarted actor rebuilds.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from devices import pump_book
from devices.gfd1.states import FPState
from devices.pump_book import (
    PayableSale,
    PendingCollect,
    SalePhase,
    SaleReport,
    report_from_events,
)
from devices.pump_journal import PendingClear, PumpLedger, apply
from devices.recovery import Action, PumpView, decide

CONTACT = {"boot_count": 1, "totals": {"1": 10_000, "2": 20_000}}
PAYABLE = {
    "pump_sale_seq": 7,
    "nozzle": 2,
    "volume_ml": 1500,
    "amount_fen": 1184,
    "unit_price": 789_000,
    "price_set_id": 1,
    "end_reason": 1,
    "auth_token": 0,
    "moved": {"2": 1500},
    "end_totals": {"2": 21_500},
}


def fold(*events: tuple[str, Mapping[str, Any]]) -> PumpLedger:
    ledger = PumpLedger()
    for seq, (kind, payload) in enumerate(events, start=1):
        ledger = apply(ledger, seq, kind, payload)
    return ledger


def sale(sale_id: str, token: int, **extra: Any) -> tuple[str, dict[str, Any]]:
    payload = {
        "sale_id": sale_id,
        "order_id": sale_id[:-1],
        "token": token,
        "nozzles": [1],
        "nozzle_mask": 1,
        "preset_type": 1,
        "preset_value": 2000,
        "price_set_id": 1,
        "start_totals": {"1": 10_000},
        "start_amount_totals": {"1": 5_000},
        **extra,
    }
    return ("auth_requested", payload)


def completed(sale_id: str, volume: int, seq: int, **extra: Any) -> tuple[str, dict[str, Any]]:
    payload = {
        "sale_id": sale_id,
        "pump_sale_seq": seq,
        "nozzle": 1,
        "volume_ml": volume,
        "amount_fen": 1578,
        "unit_price": 789_000,
        "end_reason": 2,
        "price_set_id": 1,
        "end_totals": {"1": 10_000 + volume},
        "reconstructed": False,
        "totals_ok": True,
        **extra,
    }
    return ("completed", payload)


def test_a_payable_sale_moves_the_known_totals_and_waits_in_the_book() -> None:
    ledger = fold(("contact", CONTACT), ("payable", PAYABLE))
    assert ledger.volume_totals == {1: 10_000, 2: 21_500}
    assert ledger.book.payables == (PayableSale(7, 2, 1500, 1184, 789_000, 1),)
    assert ledger.journal_view().accounted_heads == frozenset({7})
    again = apply(ledger, 3, "payable", PAYABLE)  # a repeat is not a second sale
    assert again.book.payables == ledger.book.payables


def test_lock_unlock_and_collect_follow_the_order_holding_the_sale() -> None:
    where = {"pump_sale_seq": 7, "order_id": "OA"}
    requested = fold(("contact", CONTACT), ("payable", PAYABLE), ("lock_requested", where))
    assert requested.book.payables[0].locked_by == "OA"  # held while the pump is told
    assert requested.book.locked == frozenset()
    locked = apply(requested, 4, "locked", where)
    assert locked.book.locked == frozenset({7})
    unlocked = apply(locked, 5, "unlocked", where)
    assert (unlocked.book.payables[0].locked_by, unlocked.book.locked) == (None, frozenset())

    collecting = apply(locked, 5, "collect_requested", where)
    assert collecting.book.collecting == PendingCollect(7, "OA")
    assert collecting.book.payables  # still in the pump until CLEAR_SALE is done
    collected = apply(collecting, 6, "collected", {**where, "volume_ml": 1500})
    assert collected.book.payables == ()
    assert collected.book.collecting is None
    assert collected.book.collected == {7: "OA"}
    assert collected.volume_totals == locked.volume_totals  # counted once, at ``payable``


def test_a_payable_sale_cleared_elsewhere_is_forgotten() -> None:
    ledger = fold(
        ("contact", CONTACT),
        ("payable", PAYABLE),
        ("payable_gone", {"pump_sale_seq": 7, "locked_by": None}),
    )
    assert ledger.book.payables == ()
    assert ledger.volume_totals[2] == 21_500
    assert ledger.book.collected == {}
    held = fold(
        ("payable", PAYABLE),
        ("locked", {"pump_sale_seq": 7, "order_id": "OA"}),
        ("payable_gone", {"pump_sale_seq": 7, "locked_by": "OA"}),
    )
    assert (held.book.payables, held.book.collected) == ((), {7: "OA"})


def test_finished_sales_are_reported_and_their_tokens_kept_until_cleared() -> None:
    ledger = fold(
        ("contact", CONTACT),
        sale("OAS", 111),
        ("authorized", {"sale_id": "OAS", "token": 111}),
        completed("OAS", 2000, 3),
    )
    assert ledger.open_sale is None
    assert ledger.pending_clear == PendingClear("OAS", 3)
    assert ledger.book.finished["OAS"] == SaleReport(
        "OAS", SalePhase.COMPLETED, 3, 1, 2000, 1578, 789_000, 1, False, {1: 12_000}
    )
    assert ledger.book.uncleared == {111: "OAS"}
    cleared = apply(ledger, 5, "cleared", {"sale_id": "OAS", "pump_sale_seq": 3})
    assert cleared.pending_clear is None
    assert cleared.book.uncleared == {}

    voided = fold(sale("OBS", 222), ("void", {"sale_id": "OBS", "reason": "no fuel dispensed"}))
    report = voided.book.finished["OBS"]
    assert (report.state, report.reason, report.volume_ml) == (
        SalePhase.VOID,
        "no fuel dispensed",
        None,
    )
    assert voided.book.uncleared == {222: "OBS"}


def test_a_queued_sale_is_not_cleared_now_and_its_later_clear_leaves_the_pending_one() -> None:
    queued = fold(
        ("contact", CONTACT),
        ("payable", PAYABLE),
        sale("OAS", 111),
        completed("OAS", 2000, 9, queued=True),
    )
    assert queued.pending_clear is None  # the head is someone else's: nothing to clear
    assert queued.book.uncleared == {111: "OAS"}
    later = fold(
        sale("OBS", 222),
        completed("OBS", 500, 12),
        ("cleared", {"sale_id": "OAS", "pump_sale_seq": 9}),
    )
    assert later.pending_clear == PendingClear("OBS", 12)


def test_the_book_keeps_the_latest_finished_sales(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pump_book, "FINISHED_KEPT", 2)
    events: list[tuple[str, Mapping[str, Any]]] = []
    for n in range(1, 4):
        events += [sale(f"O{n}S", n), ("void", {"sale_id": f"O{n}S", "reason": "x"})]
    ledger = fold(*events)
    assert list(ledger.book.finished) == ["O2S", "O3S"]
    assert list(ledger.book.uncleared) == [2, 3]
    assert ledger.sales == 3


def test_a_report_from_the_journal_matches_the_fold() -> None:
    auth = sale("OAS", 111)
    done = completed("OAS", 2000, 3)
    assert report_from_events("OAS", [auth, done]) == fold(auth, done).book.finished["OAS"]
    assert report_from_events("OAS", [auth]).state is SalePhase.AUTH_REQUESTED
    fuelling = ("fuelling", {"sale_id": "OAS", "nozzle": 1})
    assert report_from_events("OAS", [auth, fuelling]).state is SalePhase.FUELLING
    assert report_from_events("OAS", []).state is SalePhase.UNKNOWN


def test_an_open_sale_behind_a_journaled_payable_sale_is_finished_from_totals() -> None:
    """Not taken out as an orphan (it is journaled already, and not ours to clear)."""
    ledger = fold(("contact", CONTACT), ("payable", PAYABLE), sale("OAS", 111))
    pump = PumpView(FPState.COMPLETED, {1: 12_000, 2: 21_500}, 1, 0, 111, head_sale_seq=7)
    recovery = decide(ledger.journal_view(), pump)
    assert (recovery.action, dict(recovery.moved)) == (Action.FINISH_FROM_TOTALS, {1: 2000})
    stranger = PumpView(FPState.COMPLETED, {1: 12_000, 2: 21_500}, 1, 0, 111, head_sale_seq=8)
    assert decide(ledger.journal_view(), stranger).action is Action.ORPHAN
