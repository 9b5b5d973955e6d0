"""Callbacks into the books: the transition table and its rules, without I/O."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from channels.model import CallbackKind, Provider
from switch.store.attempts import (
    ATTEMPT_TRANSITIONS,
    FINAL_STATES,
    IMPLIED_CAPTURE,
    IMPLIED_RELEASE,
    AmountCheck,
    Effect,
    EventOutcome,
    Family,
    Implied,
    MoneyConflict,
    OrderMoney,
    apply_money,
    check_cumulative,
    classify,
    decide,
    implied_capture,
    implied_step,
    late_refund_key,
    ref_conflicts,
    result_allowed,
    stated_amount,
)
from tests.switch.callback_events import (
    STATES,
    make_event,
)

# --- the table, without I/O -------------------------------------------------------------------


def _all_cells() -> Iterator[tuple[Family, bool, str, EventOutcome]]:
    for family, wants in ATTEMPT_TRANSITIONS:
        for state in STATES:
            for outcome in EventOutcome:
                yield family, wants, state, outcome


def test_every_state_and_outcome_has_a_deliberate_step() -> None:
    cells = {(s, o) for s in STATES for o in EventOutcome}
    assert {key[0] for key in ATTEMPT_TRANSITIONS} == set(Family)
    for table in ATTEMPT_TRANSITIONS.values():
        assert set(table) == cells


def test_final_states_never_move_back() -> None:
    for family, wants, state, outcome in _all_cells():
        step = decide(family, state, outcome, order_wants_money=wants)
        if state in FINAL_STATES:
            # From a final state only a success may still land (as a late success or a
            # correction), and only onto approved.
            assert step.state in (None, "approved"), (family, state, outcome)
            if step.state == "approved":
                assert outcome is EventOutcome.SUCCEEDED
                assert step.effect in (Effect.LATE_SUCCESS, Effect.CORRECTION)


def test_collect_table_rows() -> None:
    collect = Family.COLLECT
    success, pending, closed = (
        EventOutcome.SUCCEEDED,
        EventOutcome.PENDING,
        EventOutcome.CLOSED,
    )
    assert decide(collect, "requested", success, order_wants_money=True).state == "approved"
    assert decide(collect, "requested", pending, order_wants_money=True).state == "pending"
    assert decide(collect, "pending", closed, order_wants_money=True).state == "reversed"
    # Old news after the provider's own "closed": nothing moved, nothing to refund (case 23).
    assert decide(collect, "reversed", success, order_wants_money=True).effect is Effect.IGNORE
    # A success after we gave up is money to give back (case 16).
    for state in ("declined", "failed"):
        step = decide(collect, state, success, order_wants_money=True)
        assert step.effect is Effect.LATE_SUCCESS
    # The order finished or was paid elsewhere: any success now is late.
    for state in ("requested", "pending", "unknown"):
        step = decide(collect, state, success, order_wants_money=False)
        assert step == decide(collect, "declined", success, order_wants_money=True)
    assert decide(collect, "approved", pending, order_wants_money=True).effect is Effect.IGNORE


def test_settle_table_rows() -> None:
    settle = Family.SETTLE
    failed = EventOutcome.FAILED
    success = EventOutcome.SUCCEEDED
    assert decide(settle, "requested", failed, order_wants_money=True).state == "failed"
    # REFUND.ABNORMAL after the refund succeeded: never backwards (case 17).
    assert decide(settle, "approved", failed, order_wants_money=True).effect is Effect.IGNORE
    assert decide(settle, "failed", success, order_wants_money=True).effect is Effect.CORRECTION


def test_classify_status_words() -> None:
    def outcome(status: str, succeeded: bool = False) -> EventOutcome:
        return classify(make_event("K", status=status, succeeded=succeeded))

    assert outcome("SUCCESS", succeeded=True) is EventOutcome.SUCCEEDED
    assert outcome("WAIT_BUYER_PAY") is EventOutcome.PENDING
    assert outcome("TRADE_CLOSED") is EventOutcome.CLOSED
    assert outcome("ABNORMAL") is EventOutcome.FAILED
    assert outcome("PAYERROR") is EventOutcome.FAILED


def test_results_move_forward_only() -> None:
    assert result_allowed("requested", "pending")
    assert result_allowed("pending", "approved")
    assert not result_allowed("approved", "pending")
    assert not result_allowed("declined", "approved")
    assert not result_allowed("approved", "approved")


def test_money_effects() -> None:
    zero = OrderMoney(0, 0, 0, 0)
    held = apply_money(zero, "hold", 20000)
    assert held == OrderMoney(20000, 0, 0, 0)
    captured = apply_money(held, "capture", 15000)
    released = apply_money(captured, "release", 5000)
    assert released == OrderMoney(20000, 15000, 5000, 0)
    assert apply_money(released, "refund", 3000) == OrderMoney(20000, 15000, 5000, 3000)
    # A refund of money never captured (a late success, a prepaid ceiling's rest) is a release.
    assert apply_money(held, "refund", 20000) == OrderMoney(20000, 0, 20000, 0)
    with pytest.raises(MoneyConflict):
        apply_money(zero, "refund", 100)  # the refund before the payment it refunds
    with pytest.raises(MoneyConflict):
        apply_money(held, "query", 1)


def test_late_refund_keys_suit_every_provider() -> None:
    assert late_refund_key("FS20261120000001") == "FS20261120000001LR"
    for key in ("FS-2026-11-20-0001", "A" * 40):
        derived = late_refund_key(key)
        assert derived.isalnum() and 8 <= len(derived) <= 40
        assert derived == late_refund_key(key)  # deterministic
    assert late_refund_key("FS-1") != late_refund_key("FS-2")


def test_refund_events_compare_the_refund() -> None:
    event = make_event("K", kind=CallbackKind.REFUND, amount_fen=20000, refund_fen=5000)
    assert stated_amount(event) == 5000
    assert stated_amount(make_event("K", amount_fen=20000)) == 20000


def test_cumulative_refund_totals_are_read_against_the_books() -> None:
    def check(total: int, amount: int, approved: int = 0, in_flight: int = 0) -> AmountCheck:
        return check_cumulative(total, amount, approved_others=approved, in_flight_others=in_flight)

    assert check(10000, 10000) is AmountCheck.MATCH  # a payment's first refund
    assert check(15000, 5000, approved=10000) is AmountCheck.MATCH  # its second
    # sent before a refund we recorded since: the books have passed it
    assert check(10000, 10000, approved=5000) is AmountCheck.OLD
    # counts a refund whose result we have not recorded yet: wait for it
    assert check(15000, 5000, in_flight=10000) is AmountCheck.AHEAD
    assert check(15001, 5000, in_flight=10000) is AmountCheck.MISMATCH
    assert check(4999, 5000, approved=10000) is AmountCheck.MISMATCH  # less than the refund
    assert check(16000, 5000, approved=10000) is AmountCheck.MISMATCH


def test_only_a_completed_capture_implies_the_release_of_the_rest() -> None:
    assert set(IMPLIED_RELEASE) == {(s, o) for s in STATES for o in EventOutcome}
    success = EventOutcome.SUCCEEDED
    assert implied_step("approved", success) is Implied.RECORD
    for state in ("requested", "pending", "unknown"):
        assert implied_step(state, success) is Implied.WAIT
    recorded = {cell for cell, verdict in IMPLIED_RELEASE.items() if verdict is Implied.RECORD}
    assert recorded == {("approved", success)}
    for state in ("declined", "failed", "reversed"):
        assert implied_step(state, success) is Implied.UNKNOWN
    assert implied_step("approved", EventOutcome.FAILED) is Implied.UNKNOWN


def test_only_an_alipay_trade_of_another_amount_than_the_hold_names_a_capture() -> None:
    assert set(IMPLIED_CAPTURE) == {(Provider.ALIPAY, CallbackKind.PAYMENT)}
    paid = make_event("K", provider=Provider.ALIPAY, status="TRADE_SUCCESS", amount_fen=21000)
    assert implied_capture(paid, "hold", 30000) == "capture"
    assert implied_capture(paid, "hold", 21000) is None  # a full capture, or the hold's own
    assert implied_capture(paid, "capture", 30000) is None  # it named the capture itself
    waiting = replace(paid, status="WAIT_BUYER_PAY", succeeded=False)
    assert implied_capture(waiting, "hold", 30000) is None  # only a success moves a capture
    # WeChat's payment is the prepaid ceiling; UnionPay's completion has its own orderId
    for provider in (Provider.WECHATPAY, Provider.UNIONPAY):
        assert implied_capture(replace(paid, provider=provider), "hold", 30000) is None
    assert implied_capture(replace(paid, kind=CallbackKind.HOLD), "hold", 30000) is None


def test_a_recorded_reference_binds_later_events() -> None:
    assert ref_conflicts("AUTH-1", "AUTH-2")
    assert not ref_conflicts("AUTH-1", "AUTH-1")
    assert not ref_conflicts(None, "AUTH-2")  # the hold's response is not persisted yet
    assert not ref_conflicts("AUTH-1", None)
