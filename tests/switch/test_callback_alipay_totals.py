"""Callbacks into the books: running refund totals, the release a completing capture implies,
and hold references (Alipay's notifies)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from channels.model import CallbackEvent, CallbackKind, CallbackRejected
from switch.store import Store
from switch.store.payments import (
    Disposition,
    advance_attempt,
)
from tests.switch.callback_events import (
    alipay_event,
    alipay_order,
    make_event,
    new_order,
    record,
    unfreeze_notify,
)
from tests.switch.callback_harness import (
    alerts,
    attempt_row,
    attempt_state,
    create_attempt,
    inbox_rows,
    order_money,
    set_order_money,
)

# --- running refund totals, releases a capture implied, hold references ----------------------


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
