"""Callbacks into the books: the transaction against PostgreSQL.

These tests call ``record_callback`` with verified events (no verifier involved: that is
the provider packages' job) and, for the acknowledge-after-commit rule, the ``CallbackProcessor``
with the harness's stub verifier.
"""

from __future__ import annotations

import pytest
import trio

from channels.model import CallbackEvent, CallbackKind, CallbackRejected, Provider
from ops.metrics import Metrics
from switch.payments import CallbackProcessor
from switch.store import Store
from switch.store.attempts import (
    late_refund_key,
)
from switch.store.payments import (
    CallbackOutcome,
    Disposition,
    advance_attempt,
)
from tests.switch.callback_events import (
    CHANNEL,
    make_event,
    new_order,
    record,
)
from tests.switch.callback_harness import (
    StubVerifier,
    alerts,
    attempt_row,
    attempt_state,
    create_attempt,
    finish_order,
    inbox_rows,
    order_money,
    set_order_money,
    unique_key,
)

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
