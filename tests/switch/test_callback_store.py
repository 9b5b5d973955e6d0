"""Callbacks into the books: the transition table (pure), then the transaction against PostgreSQL.

The database tests call ``record_callback`` with verified events (no verifier involved: that is
the provider packages' job) and, for the acknowledge-after-commit rule, the ``CallbackProcessor``
with the harness's stub verifier.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import trio

from channels.model import CallbackEvent, CallbackKind, CallbackRejected, Provider
from ops.metrics import Metrics
from switch.payments import CallbackProcessor
from switch.store import Store
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
from switch.store.payments import (
    CallbackOutcome,
    Disposition,
    advance_attempt,
    record_callback,
)
from tests.switch.callback_harness import (
    StubVerifier,
    alerts,
    attempt_row,
    attempt_state,
    create_attempt,
    create_order_with_hold,
    finish_order,
    inbox_rows,
    order_money,
    set_order_money,
    unique_key,
)

CHANNEL = "wx-main"
STATES = ("requested", "pending", "unknown", "approved", "declined", "failed", "reversed")
_event_ids = itertools.count(1)


def make_event(
    key: str,
    *,
    kind: CallbackKind = CallbackKind.PAYMENT,
    status: str = "SUCCESS",
    succeeded: bool = True,
    amount_fen: int = 20000,
    event_id: str | None = None,
    channel: str = CHANNEL,
    provider: Provider = Provider.WECHATPAY,
    refund_fen: int | None = None,
    out_refund_no: str | None = None,
    provider_ref: str | None = None,
    refund_cumulative: bool = False,
) -> CallbackEvent:
    return CallbackEvent(
        provider=provider,
        channel=channel,
        kind=kind,
        event_id=event_id or f"EV-{key}-{next(_event_ids)}",
        status=status,
        out_trade_no=key,
        provider_ref=provider_ref or f"REF-{key}",
        amount_fen=amount_fen,
        refund_fen=refund_fen,
        out_refund_no=out_refund_no,
        succeeded=succeeded,
        refund_cumulative=refund_cumulative,
    )


async def record(store: Store, event: CallbackEvent) -> CallbackOutcome:
    return await record_callback(
        store.db, event, body=b'{"raw": "as received"}', headers={"wechatpay-nonce": "n1"}
    )


async def new_order(store: Store, amount_fen: int = 20000, state: str = "requested") -> str:
    key = unique_key()
    await create_order_with_hold(
        store,
        order_id=key,
        channel=CHANNEL,
        provider=Provider.WECHATPAY,
        out_trade_no=key,
        amount_fen=amount_fen,
        state=state,
    )
    return key


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


# --- the transaction, against PostgreSQL -------------------------------------------------------


async def test_success_applies_once_and_keeps_the_body(store: Store) -> None:
    key = await new_order(store)
    event = make_event(key)
    outcome = await record(store, event)
    assert outcome.disposition is Disposition.APPLIED
    assert (outcome.previous_state, outcome.state) == ("requested", "approved")
    assert await attempt_state(store, key) == "approved"
    row = await attempt_row(store, key)
    assert row is not None and row["provider_ref"] == f"REF-{key}"
    assert row["resolved_at"] is not None
    assert (await order_money(store, key))["held_fen"] == 20000
    [inbox] = await inbox_rows(store, order_id=key)
    assert inbox["body"] == b'{"raw": "as received"}'
    assert inbox["headers"] == {"wechatpay-nonce": "n1"}
    assert (inbox["state"], inbox["attempt_id"]) == ("applied", f"{key}-1")

    again = await record(store, event)  # an exact replay (case 5)
    assert again.disposition is Disposition.DUPLICATE
    assert (again.inbox_id, again.attempt_id) == (outcome.inbox_id, outcome.attempt_id)
    assert (await order_money(store, key))["held_fen"] == 20000
    assert len(await inbox_rows(store, order_id=key)) == 1


async def test_concurrent_identical_deliveries_make_one_transition(store: Store) -> None:
    for _ in range(3):
        key = await new_order(store)
        event = make_event(key)
        outcomes: list[CallbackOutcome] = []

        async def deliver(e: CallbackEvent = event, out: list[CallbackOutcome] = outcomes) -> None:
            out.append(await record(store, e))

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(deliver)
        dispositions = sorted(o.disposition.value for o in outcomes)
        assert dispositions == ["applied"] + ["duplicate"] * 5
        assert (await order_money(store, key))["held_fen"] == 20000
        assert len(await inbox_rows(store, order_id=key)) == 1


async def test_concurrent_distinct_events_for_one_attempt_move_it_once(store: Store) -> None:
    key = await new_order(store)
    outcomes: list[CallbackOutcome] = []

    async def deliver() -> None:
        outcomes.append(await record(store, make_event(key)))  # a new event id each time

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(deliver)
    assert sorted(o.disposition.value for o in outcomes) == ["applied"] + ["ignored"] * 4
    assert (await order_money(store, key))["held_fen"] == 20000
    assert [r["state"] for r in await inbox_rows(store, order_id=key)].count("applied") == 1


async def test_old_events_after_the_order_moved_on_change_nothing(store: Store) -> None:
    key = await new_order(store)
    await record(store, make_event(key))
    for status in ("WAIT_BUYER_PAY", "TRADE_CLOSED", "PAYERROR"):
        outcome = await record(store, make_event(key, status=status, succeeded=False))
        assert outcome.disposition is Disposition.IGNORED
    assert await attempt_state(store, key) == "approved"
    assert (await order_money(store, key))["held_fen"] == 20000
    states = [r["state"] for r in await inbox_rows(store, order_id=key)]
    assert states == ["applied", "ignored", "ignored", "ignored"]


async def test_success_after_the_provider_closed_it_is_old_news(store: Store) -> None:
    key = await new_order(store)
    closed = await record(store, make_event(key, status="TRADE_CLOSED", succeeded=False))
    assert closed.state == "reversed"
    late = await record(store, make_event(key, status="TRADE_SUCCESS"))
    assert late.disposition is Disposition.IGNORED
    assert await attempt_state(store, key) == "reversed"
    assert await alerts(store, subject=key) == []


@pytest.mark.parametrize("setup", ["declined", "finished", "paid_elsewhere"])
async def test_late_success_journals_a_refund_and_alerts(store: Store, setup: str) -> None:
    key = await new_order(store, state="declined" if setup == "declined" else "requested")
    if setup == "finished":
        await finish_order(store, key)
    elif setup == "paid_elsewhere":
        other = unique_key()
        await create_attempt(
            store, order_id=key, operation="hold", key=other, amount_fen=20000, state="approved"
        )
        await set_order_money(store, key, held_fen=20000)
    outcome = await record(store, make_event(key))
    assert outcome.disposition is Disposition.LATE_SUCCESS
    assert outcome.refund_attempt_id == f"{key}-1-LR"
    assert await attempt_state(store, key) == "approved"
    refund = await attempt_row(store, late_refund_key(key))
    assert refund is not None
    assert (refund["id"], refund["operation"], refund["state"], refund["amount_fen"]) == (
        f"{key}-1-LR",
        "refund",
        "requested",
        20000,
    )
    [alert] = await alerts(store, subject=key, kind="late_success")
    assert alert.severity == "critical"
    assert alert.details["refund_attempt"] == f"{key}-1-LR"

    # Its replay refunds nothing more; the refund, when it succeeds, gives the money back.
    assert (await record(store, make_event(key))).disposition is Disposition.IGNORED
    refund_done = await record(
        store,
        make_event(
            key, kind=CallbackKind.REFUND, refund_fen=20000, out_refund_no=late_refund_key(key)
        ),
    )
    assert refund_done.disposition is Disposition.APPLIED
    money = await order_money(store, key)
    assert money["released_fen"] == 20000
    assert len(await alerts(store, subject=key, kind="late_success")) == 1


async def test_unknown_order_is_rejected_with_an_alert(store: Store) -> None:
    key = unique_key()
    with pytest.raises(CallbackRejected) as caught:
        await record(store, make_event(key))
    assert (caught.value.reason, caught.value.alert) == ("unknown_order", True)
    assert await inbox_rows(store, event_id=f"EV-{key}") == []
    [alert] = await alerts(store, subject=key)
    assert (alert.kind, alert.details["reason"]) == ("callback_rejected", "unknown_order")


async def test_amount_mismatch_is_rejected_and_the_event_can_come_again(store: Store) -> None:
    key = await new_order(store)
    wrong = make_event(key, amount_fen=19999, event_id=f"EV-{key}")
    with pytest.raises(CallbackRejected) as caught:
        await record(store, wrong)
    assert caught.value.reason == "amount_mismatch"
    assert await attempt_state(store, key) == "requested"
    assert await inbox_rows(store, order_id=key) == []
    assert [a.details["reason"] for a in await alerts(store, subject=key)] == ["amount_mismatch"]
    # Nothing of the rejected delivery stays behind to make the right one a "duplicate".
    right = make_event(key, event_id=f"EV-{key}")
    assert (await record(store, right)).disposition is Disposition.APPLIED


async def test_channel_and_kind_must_fit_the_attempt(store: Store) -> None:
    key = await new_order(store)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, make_event(key, channel="wx-other"))
    assert (caught.value.reason, caught.value.alert) == ("channel_mismatch", True)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, make_event(key, provider=Provider.ALIPAY))
    assert caught.value.reason == "unknown_order"
    # A refund resource naming the payment's key (case 13).
    refund_on_payment = make_event(
        key, kind=CallbackKind.REFUND, refund_fen=20000, out_refund_no=key
    )
    with pytest.raises(CallbackRejected) as caught:
        await record(store, refund_on_payment)
    assert caught.value.reason == "kind_mismatch"
    with pytest.raises(CallbackRejected) as caught:
        await record(store, make_event(key, kind=CallbackKind.REFUND, refund_fen=1))
    assert caught.value.reason == "missing_refund_key"
    assert await attempt_state(store, key) == "requested"


async def test_refund_before_the_payment_waits_then_applies(store: Store) -> None:
    key = await new_order(store)
    refund_key = f"{key}-R1"
    await create_attempt(store, order_id=key, operation="release", key=refund_key, amount_fen=5000)
    refund = make_event(key, kind=CallbackKind.REFUND, refund_fen=5000, out_refund_no=refund_key)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, refund)
    assert caught.value.reason == "out_of_order"  # not acknowledged: the provider retries
    assert await attempt_state(store, refund_key) == "requested"

    await record(store, make_event(key))
    assert (await record(store, refund)).disposition is Disposition.APPLIED
    assert await attempt_state(store, refund_key) == "approved"
    assert await order_money(store, key) == {
        "held_fen": 20000,
        "captured_fen": 0,
        "released_fen": 5000,
        "refunded_fen": 0,
    }
    # REFUND.ABNORMAL after the order shows it refunded: never backwards (case 17).
    abnormal = make_event(
        key,
        kind=CallbackKind.REFUND,
        status="ABNORMAL",
        succeeded=False,
        refund_fen=5000,
        out_refund_no=refund_key,
    )
    assert (await record(store, abnormal)).disposition is Disposition.IGNORED
    assert await attempt_state(store, refund_key) == "approved"


async def test_release_event_naming_only_the_hold(store: Store) -> None:
    key = await new_order(store, state="approved")
    await set_order_money(store, key, held_fen=20000)
    release_key = f"{key}-UF"
    await create_attempt(
        store, order_id=key, operation="release", key=release_key, amount_fen=20000
    )
    outcome = await record(store, make_event(key, kind=CallbackKind.RELEASE))
    assert outcome.attempt_id == f"{key}-2-release"
    assert await attempt_state(store, release_key) == "approved"
    assert await attempt_state(store, key) == "approved"
    assert (await order_money(store, key))["released_fen"] == 20000


async def test_a_callback_before_the_hold_response_is_not_undone_by_it(store: Store) -> None:
    key = await new_order(store)  # journaled 'requested' before the provider was called
    await record(store, make_event(key))  # the callback beats the prepay response (case 15)
    late_response = await advance_attempt(store.db, key, "pending", provider_ref="prepay-1")
    assert (late_response.state, late_response.changed) == ("approved", False)
    assert await attempt_state(store, key) == "approved"

    other = await new_order(store)
    first = await advance_attempt(store.db, other, "pending")
    assert (first.state, first.changed) == ("pending", True)
    assert (await record(store, make_event(other))).state == "approved"


_FAIL_AT_COMMIT = """
CREATE OR REPLACE FUNCTION test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id LIKE 'FAILCOMMIT%' THEN
        RAISE EXCEPTION 'commit refused for the test' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER test_fail_commit AFTER INSERT ON callback_inbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_commit();
"""


async def test_no_acknowledgement_when_the_commit_fails(store: Store) -> None:
    """A deferred trigger refuses the transaction at COMMIT, after every statement of it
    succeeded: the provider must hear a failure, and the next delivery must apply (case 25)."""
    key = await new_order(store)
    verifier = StubVerifier(Provider.WECHATPAY, CHANNEL)
    metrics = Metrics()
    processor = CallbackProcessor(store, [verifier], metrics=metrics, publish_updates=False)
    headers, body = verifier.make(event_id=f"FAILCOMMIT-{key}", out_trade_no=key, amount_fen=20000)
    await store.db.execute(_FAIL_AT_COMMIT)
    try:
        reply = await processor.handle(Provider.WECHATPAY, headers, body)
    finally:
        await store.db.execute("DROP TRIGGER test_fail_commit ON callback_inbox")
    assert reply.status == 400
    assert metrics.callback_count("wechatpay", "error", "store_error") == 1
    assert await attempt_state(store, key) == "requested"
    assert await inbox_rows(store, order_id=key) == []

    retried = await processor.handle(Provider.WECHATPAY, headers, body)
    assert retried.status == 204
    assert await attempt_state(store, key) == "approved"
    assert metrics.callback_count("wechatpay", "accepted", "applied") == 1


# --- running refund totals, releases a capture implied, hold references ----------------------

ALIPAY_CHANNEL = "alipay-main"


async def alipay_order(store: Store, amount_fen: int = 30000, state: str = "approved") -> str:
    """An Alipay order whose hold is ``state``, its money on the order when approved."""
    key = unique_key()
    await create_order_with_hold(
        store,
        order_id=key,
        channel=ALIPAY_CHANNEL,
        provider=Provider.ALIPAY,
        out_trade_no=key,
        amount_fen=amount_fen,
        state=state,
    )
    if state == "approved":
        await set_order_money(store, key, held_fen=amount_fen)
    return key


def alipay_event(key: str, kind: CallbackKind, **fields: Any) -> CallbackEvent:
    event = make_event(
        key, kind=kind, provider=Provider.ALIPAY, channel=ALIPAY_CHANNEL, amount_fen=30000
    )
    return replace(event, **fields)


def refund_notify(key: str, refund_key: str, total: int, **fields: Any) -> CallbackEvent:
    """Alipay's trade_status_sync for a refund: refund_fee is the trade's refunded total."""
    return alipay_event(
        key,
        CallbackKind.REFUND,
        status="TRADE_SUCCESS",
        provider_ref=f"TRADE-{key}",
        refund_fen=total,
        out_refund_no=refund_key,
        refund_cumulative=True,
        **fields,
    )


async def captured_in_full(store: Store) -> str:
    key = await alipay_order(store)
    await create_attempt(
        store, order_id=key, operation="capture", key=f"{key}S", amount_fen=30000, state="approved"
    )
    await set_order_money(store, key, captured_fen=30000)
    return key


async def test_refund_notifies_state_the_running_total(store: Store) -> None:
    key = await captured_in_full(store)
    first, second = f"{key}R1", f"{key}R2"
    await create_attempt(store, order_id=key, operation="refund", key=first, amount_fen=10000)
    await create_attempt(store, order_id=key, operation="refund", key=second, amount_fen=5000)
    # a refund of another trade of the order is not in this trade's total
    other = await create_attempt(
        store, order_id=key, operation="refund", key=f"{key}X", amount_fen=7000, state="approved"
    )
    await store.db.execute("UPDATE payment_attempts SET provider_ref = 'T2' WHERE id = $1", other)

    old_first = refund_notify(key, first, 10000)
    assert (await record(store, old_first)).disposition is Disposition.APPLIED
    assert (await record(store, refund_notify(key, second, 15000))).disposition is (
        Disposition.APPLIED
    )
    assert await attempt_state(store, second) == "approved"
    money = await order_money(store, key)
    assert money["refunded_fen"] == 15000

    # the first refund's notify sent again as a new notify: older than the books, acknowledged
    replayed = await record(store, replace(old_first, event_id=f"EV-{key}-again"))
    assert replayed.disposition is Disposition.IGNORED
    assert await order_money(store, key) == money
    assert await alerts(store, subject=key) == []

    # a total no refund of ours explains is still an amount that differs
    third = f"{key}R3"
    await create_attempt(store, order_id=key, operation="refund", key=third, amount_fen=2000)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, refund_notify(key, third, 17001))
    assert (caught.value.reason, caught.value.alert) == ("amount_mismatch", True)
    assert await attempt_state(store, third) == "requested"
    assert (await record(store, refund_notify(key, third, 17000))).state == "approved"
    assert (await order_money(store, key))["refunded_fen"] == 17000


async def test_a_running_total_ahead_of_the_books_waits_for_them(store: Store) -> None:
    key = await captured_in_full(store)
    first, second = f"{key}R1", f"{key}R2"
    await create_attempt(store, order_id=key, operation="refund", key=first, amount_fen=10000)
    await create_attempt(store, order_id=key, operation="refund", key=second, amount_fen=5000)
    early = refund_notify(key, second, 15000)  # the second refund's notify overtook the first's
    with pytest.raises(CallbackRejected) as caught:
        await record(store, early)
    assert (caught.value.reason, caught.value.alert) == ("out_of_order", False)
    assert await inbox_rows(store, order_id=key) == []

    assert (await record(store, refund_notify(key, first, 10000))).state == "approved"
    retried = await record(store, early)  # Alipay's next send of the same notify
    assert (retried.disposition, retried.state) == (Disposition.APPLIED, "approved")
    assert (await order_money(store, key))["refunded_fen"] == 15000
    assert await alerts(store, subject=key) == []


async def implied_setup(store: Store, capture_state: str = "approved") -> tuple[str, str]:
    """An order that held 300.00 and captured 210.00, completing the hold; no release."""
    key = await alipay_order(store)
    capture = await create_attempt(
        store,
        order_id=key,
        operation="capture",
        key=f"{key}S",
        amount_fen=21000,
        state=capture_state,
    )
    if capture_state == "approved":
        await set_order_money(store, key, captured_fen=21000)
    return key, capture


def unfreeze_notify(key: str, amount_fen: int, **fields: Any) -> CallbackEvent:
    """The unfreeze Alipay makes by itself: it names the hold only, no request of ours."""
    return alipay_event(key, CallbackKind.RELEASE, amount_fen=amount_fen, **fields)


async def test_the_rest_unfrozen_after_a_completing_capture_is_recorded(store: Store) -> None:
    key, capture = await implied_setup(store)
    outcome = await record(store, unfreeze_notify(key, 9000))
    assert (outcome.disposition, outcome.attempt_id) == (Disposition.APPLIED, capture)
    assert (outcome.previous_state, outcome.state) == ("approved", "approved")
    assert await order_money(store, key) == {
        "held_fen": 30000,
        "captured_fen": 21000,
        "released_fen": 9000,
        "refunded_fen": 0,
    }
    assert await attempt_state(store, f"{key}S") == "approved"
    assert await attempt_state(store, key) == "approved"
    [inbox] = await inbox_rows(store, order_id=key)
    assert (inbox["state"], inbox["attempt_id"]) == ("applied", capture)
    assert await alerts(store, subject=key) == []

    again = await record(store, unfreeze_notify(key, 9000))  # another notify of the same
    assert (again.disposition, again.attempt_id) == (Disposition.IGNORED, capture)
    assert (await order_money(store, key))["released_fen"] == 9000

    with pytest.raises(CallbackRejected) as caught:
        await record(store, unfreeze_notify(key, 9001))
    assert (caught.value.reason, caught.value.alert) == ("amount_mismatch", True)


async def test_the_rest_waits_for_its_capture_and_is_unknown_without_one(store: Store) -> None:
    key, _ = await implied_setup(store, capture_state="pending")
    rest = unfreeze_notify(key, 9000)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, rest)
    assert (caught.value.reason, caught.value.alert) == ("out_of_order", False)
    await advance_attempt(store.db, f"{key}S", "approved")
    await set_order_money(store, key, captured_fen=21000)
    assert (await record(store, rest)).disposition is Disposition.APPLIED
    assert await alerts(store, subject=key) == []

    declined, _ = await implied_setup(store, capture_state="declined")
    nothing = await alipay_order(store)  # no capture, no release
    for order in (declined, nothing):
        with pytest.raises(CallbackRejected) as caught:
            await record(store, unfreeze_notify(order, 30000))
        assert (caught.value.reason, caught.value.alert) == ("unknown_attempt", True)
        assert [a.details["reason"] for a in await alerts(store, subject=order)] == [
            "unknown_attempt"
        ]
        assert (await order_money(store, order))["released_fen"] == 0


async def test_a_hold_event_with_another_reference_is_not_ours(store: Store) -> None:
    key = await alipay_order(store, state="requested")
    await advance_attempt(store.db, key, "pending", provider_ref="AUTH-1")  # the response
    foreign = alipay_event(key, CallbackKind.HOLD, provider_ref="AUTH-2")
    with pytest.raises(CallbackRejected) as caught:
        await record(store, foreign)
    assert (caught.value.reason, caught.value.alert) == ("provider_ref_mismatch", True)
    assert await attempt_state(store, key) == "pending"
    assert await inbox_rows(store, order_id=key) == []
    [alert] = await alerts(store, subject=key)
    assert alert.details["reason"] == "provider_ref_mismatch"
    ours = await record(store, alipay_event(key, CallbackKind.HOLD, provider_ref="AUTH-1"))
    assert ours.state == "approved"
    # the unfreeze of its rest names the hold too, by the same reference
    await create_attempt(
        store, order_id=key, operation="capture", key=f"{key}S", amount_fen=21000, state="approved"
    )
    await set_order_money(store, key, captured_fen=21000)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, unfreeze_notify(key, 9000, provider_ref="AUTH-2"))
    assert caught.value.reason == "provider_ref_mismatch"
    assert (await record(store, unfreeze_notify(key, 9000, provider_ref="AUTH-1"))).disposition is (
        Disposition.APPLIED
    )


async def test_a_hold_event_before_the_response_records_its_reference(store: Store) -> None:
    key = await alipay_order(store, state="requested")
    early = await record(store, alipay_event(key, CallbackKind.HOLD, provider_ref="AUTH-3"))
    assert early.state == "approved"  # case 15: the notify beat the freeze response
    row = await attempt_row(store, key)
    assert row is not None and row["provider_ref"] == "AUTH-3"
    with pytest.raises(CallbackRejected) as caught:
        await record(store, alipay_event(key, CallbackKind.HOLD, provider_ref="AUTH-4"))
    assert caught.value.reason == "provider_ref_mismatch"
    # payment events carry the trade's own reference, not the hold's: never bound
    paid = await new_order(store)
    await advance_attempt(store.db, paid, "pending", provider_ref="prepay-1")
    assert (await record(store, make_event(paid, provider_ref="wx-transaction-1"))).state == (
        "approved"
    )


# --- the trade a partial capture makes under the hold's key ------------------------------------


async def partial_capture_setup(
    store: Store, capture_state: str = "requested", provider: Provider = Provider.ALIPAY
) -> tuple[str, str]:
    """An order that holds 300.00 (approved) and journaled a capture of 210.00."""
    key = unique_key()
    channel = ALIPAY_CHANNEL if provider is Provider.ALIPAY else CHANNEL
    await create_order_with_hold(
        store,
        order_id=key,
        channel=channel,
        provider=provider,
        out_trade_no=key,
        amount_fen=30000,
        state="approved",
    )
    await set_order_money(store, key, held_fen=30000)
    capture = await create_attempt(
        store,
        order_id=key,
        operation="capture",
        key=f"{key}S",
        amount_fen=21000,
        state=capture_state,
    )
    return key, capture


def capture_trade_notify(key: str, amount_fen: int = 21000, **fields: Any) -> CallbackEvent:
    """Alipay's trade_status_sync of trade.pay with the auth_no: out_trade_no is the hold key,
    total_amount what was captured, trade_no the capture trade's."""
    values: dict[str, Any] = {
        "status": "TRADE_SUCCESS",
        "amount_fen": amount_fen,
        "provider_ref": f"TRADE-{key}",
        **fields,
    }
    return alipay_event(key, CallbackKind.PAYMENT, **values)


async def test_a_partial_capture_trade_notify_moves_the_capture(store: Store) -> None:
    key, capture = await partial_capture_setup(store)
    notify = capture_trade_notify(key)
    outcome = await record(store, notify)
    assert (outcome.disposition, outcome.attempt_id) == (Disposition.APPLIED, capture)
    assert (outcome.previous_state, outcome.state) == ("requested", "approved")
    row = await attempt_row(store, f"{key}S")
    assert row is not None
    assert (row["state"], row["provider_ref"], row["reason"]) == (
        "approved",
        f"TRADE-{key}",
        "callback:TRADE_SUCCESS",
    )
    assert row["resolved_at"] is not None
    hold = await attempt_row(store, key)
    assert hold is not None and (hold["state"], hold["provider_ref"]) == ("approved", None)
    assert await order_money(store, key) == {
        "held_fen": 30000,
        "captured_fen": 21000,
        "released_fen": 0,
        "refunded_fen": 0,
    }
    [inbox] = await inbox_rows(store, order_id=key)
    assert (inbox["state"], inbox["attempt_id"]) == ("applied", capture)
    assert await alerts(store, subject=key) == []

    again = await record(store, notify)  # the same notify delivered again
    assert (again.disposition, again.attempt_id) == (Disposition.DUPLICATE, capture)
    later = await record(store, replace(notify, event_id=f"EV-{key}-finished"))
    assert (later.disposition, later.attempt_id) == (Disposition.IGNORED, capture)
    assert (await order_money(store, key))["captured_fen"] == 21000

    # and the rest Alipay unfroze with it is recorded against the capture
    rest = await record(store, unfreeze_notify(key, 9000))
    assert (rest.disposition, rest.attempt_id) == (Disposition.APPLIED, capture)
    assert (await order_money(store, key))["released_fen"] == 9000
    states = [(r["state"], r["attempt_id"]) for r in await inbox_rows(store, order_id=key)]
    assert states == [("applied", capture), ("ignored", capture), ("applied", capture)]
    assert await alerts(store, subject=key) == []


async def test_a_capture_trade_notify_after_the_response_changes_nothing(store: Store) -> None:
    key, capture = await partial_capture_setup(store)
    recorded = await advance_attempt(store.db, f"{key}S", "approved", provider_ref=f"TRADE-{key}")
    assert recorded.changed
    await set_order_money(store, key, captured_fen=21000)
    outcome = await record(store, capture_trade_notify(key))
    assert (outcome.disposition, outcome.attempt_id) == (Disposition.IGNORED, capture)
    assert (outcome.previous_state, outcome.state) == ("approved", "approved")
    assert (await order_money(store, key))["captured_fen"] == 21000
    [inbox] = await inbox_rows(store, order_id=key)
    assert (inbox["state"], inbox["attempt_id"]) == ("ignored", capture)
    assert await alerts(store, subject=key) == []

    # a trade of that amount but another trade_no is not our capture's
    with pytest.raises(CallbackRejected) as caught:
        await record(store, capture_trade_notify(key, provider_ref="TRADE-OTHER"))
    assert (caught.value.reason, caught.value.alert) == ("provider_ref_mismatch", True)
    assert [a.details["reason"] for a in await alerts(store, subject=key)] == [
        "provider_ref_mismatch"
    ]


async def test_a_foreign_amount_without_a_capture_of_it_is_still_a_mismatch(
    store: Store,
) -> None:
    no_capture = await alipay_order(store)
    other_amount, _ = await partial_capture_setup(store)
    for key, amount in ((no_capture, 21000), (other_amount, 20000)):
        with pytest.raises(CallbackRejected) as caught:
            await record(store, capture_trade_notify(key, amount))
        assert (caught.value.reason, caught.value.alert) == ("amount_mismatch", True)
        assert [a.details["reason"] for a in await alerts(store, subject=key)] == [
            "amount_mismatch"
        ]
        assert await inbox_rows(store, order_id=key) == []
    # only a success moves a capture: an unpaid trade of the capture's amount is not the hold's
    waiting = capture_trade_notify(other_amount, status="WAIT_BUYER_PAY", succeeded=False)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, waiting)
    assert caught.value.reason == "amount_mismatch"
    assert await attempt_state(store, f"{other_amount}S") == "requested"
    assert (await order_money(store, other_amount))["captured_fen"] == 0


async def test_a_wechat_payment_of_the_capture_amount_is_a_mismatch(store: Store) -> None:
    """WeChat's payment is the prepaid ceiling, its capture calls no one: a payment event with
    the amount of a journaled capture is wrong, never that capture's confirmation."""
    key, _ = await partial_capture_setup(store, provider=Provider.WECHATPAY)
    with pytest.raises(CallbackRejected) as caught:
        await record(store, make_event(key, amount_fen=21000))
    assert (caught.value.reason, caught.value.alert) == ("amount_mismatch", True)
    assert await attempt_state(store, f"{key}S") == "requested"
    assert (await order_money(store, key))["captured_fen"] == 0


async def test_concurrent_capture_trade_notifies_move_the_capture_once(store: Store) -> None:
    key, capture = await partial_capture_setup(store)
    notify = capture_trade_notify(key)
    outcomes: list[CallbackOutcome] = []

    async def deliver(event: CallbackEvent) -> None:
        outcomes.append(await record(store, event))

    async with trio.open_nursery() as nursery:
        for copy in range(8):  # four deliveries of one notify, four other notifies of it
            nursery.start_soon(
                deliver, notify if copy % 2 else replace(notify, event_id=f"{key}-{copy}")
            )
    dispositions = sorted(o.disposition.value for o in outcomes)
    assert dispositions == ["applied"] + ["duplicate"] * 3 + ["ignored"] * 4
    assert {o.attempt_id for o in outcomes} == {capture}
    assert (await order_money(store, key))["captured_fen"] == 21000
    assert await attempt_state(store, f"{key}S") == "approved"


async def test_the_capture_trade_and_the_rest_arriving_together_both_land(
    store: Store,
) -> None:
    """Both lock the order, then the hold, then the capture: whichever goes first, neither
    deadlocks; the rest refused while the capture was in flight lands on its retry."""
    for _ in range(3):
        key, capture = await partial_capture_setup(store)
        rest = unfreeze_notify(key, 9000)
        refused: list[str] = []

        async def deliver(event: CallbackEvent, out: list[str] = refused) -> None:
            try:
                await record(store, event)
            except CallbackRejected as exc:
                out.append(exc.reason)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(deliver, capture_trade_notify(key))
            nursery.start_soon(deliver, rest)
        assert refused in ([], ["out_of_order"])
        if refused:
            assert (await record(store, rest)).disposition is Disposition.APPLIED
        assert await order_money(store, key) == {
            "held_fen": 30000,
            "captured_fen": 21000,
            "released_fen": 9000,
            "refunded_fen": 0,
        }
        assert await attempt_state(store, f"{key}S") == "approved"
        assert {r["attempt_id"] for r in await inbox_rows(store, order_id=key)} == {capture}
        assert await alerts(store, subject=key) == []
