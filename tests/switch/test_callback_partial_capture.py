"""Callbacks into the books: the trade a partial capture makes under the hold's key."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import trio

from channels.model import CallbackEvent, CallbackKind, CallbackRejected, Provider
from switch.store import Store
from switch.store.payments import (
    CallbackOutcome,
    Disposition,
    advance_attempt,
)
from tests.switch.callback_events import (
    ALIPAY_CHANNEL,
    CHANNEL,
    alipay_event,
    alipay_order,
    make_event,
    record,
    unfreeze_notify,
)
from tests.switch.callback_harness import (
    alerts,
    attempt_row,
    attempt_state,
    create_attempt,
    create_order_with_hold,
    inbox_rows,
    order_money,
    set_order_money,
    unique_key,
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
