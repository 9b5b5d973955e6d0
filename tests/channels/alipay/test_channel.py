"""AlipayChannel against the simulator over real HTTP (the simulator in the test's trio run):
the pre-authorization life, notifies verified by the channel, outcome classification."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
import trio

from channels.alipay import AlipayChannel
from channels.alipay.requests import CHINA
from channels.model import (
    CallbackKind,
    CaptureRequest,
    ChannelResult,
    HoldRequest,
    Outcome,
    PaymentState,
    Provider,
    RefundRequest,
    RefundState,
    ReleaseRequest,
)
from channels.sim import DeliveryRecord, ProviderFaults
from channels.sim.alipay_notify import notify_accepted
from channels.transport import HttpLimits
from tests.channels.alipay.sim_support import SAFE, SimWorld
from tests.channels.callback_receiver import Received

ALIPAY = Provider.ALIPAY
NOW = datetime(2026, 11, 20, 9, 15, 40)


def hold_request(key: str, amount: int = 30000) -> HoldRequest:
    return HoldRequest(
        key=key,
        amount_fen=amount,
        description="92#汽油 预授权",
        payer_id="",
        notify_url="",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


async def held(world: SimWorld, channel: AlipayChannel, key: str, amount: int = 30000) -> str:
    """A hold the payer has confirmed; returns its auth_no."""
    result = await channel.hold(hold_request(key, amount))
    assert result.outcome is Outcome.PENDING, result
    await world.sim.customer(world.seller_id, key, "pay")
    assert result.provider_ref is not None
    return result.provider_ref


async def notifies(world: SimWorld, count: int) -> list[Received]:
    return await world.receiver.wait_for(count)


async def logged(world: SimWorld, count: int) -> None:
    with trio.fail_after(SAFE):
        await world.ctx.callbacks.wait_until(lambda: len(records(world)) >= count)


def records(world: SimWorld, key: str | None = None) -> list[DeliveryRecord]:
    return world.ctx.callbacks.records(ALIPAY, key)


async def test_hold_waits_for_the_payer_then_is_held_and_notified(world: SimWorld) -> None:
    channel = world.channel()
    result = await channel.hold(hold_request("FS-H1"))
    assert result.outcome is Outcome.PENDING
    assert result.payment is not None
    assert result.payment.state is PaymentState.AWAITING_CUSTOMER
    assert "method=alipay.fund.auth.order.app.freeze" in result.client_data["order_str"]
    query = await channel.query("FS-H1")
    assert query.payment is not None
    assert query.payment.state is PaymentState.AWAITING_CUSTOMER

    await world.sim.customer(world.seller_id, "FS-H1", "pay")
    (notify,) = await notifies(world, 1)
    event = channel.verify_callback(notify.headers, notify.body, 0.0)
    assert (event.kind, event.out_trade_no, event.amount_fen) == (CallbackKind.HOLD, "FS-H1", 30000)
    assert event.provider_ref == result.provider_ref
    query = await channel.query("FS-H1", result.provider_ref)
    assert query.payment is not None
    assert (query.payment.state, query.payment.held_fen) == (PaymentState.HELD, 30000)
    await channel.aclose()


async def test_replayed_hold_returns_the_same_freeze(world: SimWorld) -> None:
    channel = world.channel()
    first = await channel.hold(hold_request("FS-H2"))
    again = await channel.hold(hold_request("FS-H2"))
    assert again.provider_ref == first.provider_ref
    other = await channel.hold(hold_request("FS-H2", 100))
    assert (other.outcome, other.reason) == (Outcome.DECLINED, "ORDER_ALREADY_EXIST")
    await channel.aclose()


async def test_capture_less_than_held_releases_the_rest(world: SimWorld) -> None:
    channel = world.channel()
    auth_no = await held(world, channel, "FS-C1")
    capture = CaptureRequest("FS-C1", "SALE-C1", 21360, 30000, NOW, provider_ref=auth_no)
    result = await channel.capture(capture)
    assert (result.outcome, result.amount_fen) == (Outcome.APPROVED, 21360)
    trade_no = result.provider_ref
    replay = await channel.capture(capture)  # trade.pay is idempotent by out_trade_no
    assert (replay.outcome, replay.provider_ref) == (Outcome.APPROVED, trade_no)

    received = await notifies(world, 3)  # freeze, unfreeze of the rest, trade success
    events = [channel.verify_callback(r.headers, r.body, 0.0) for r in received]
    kinds = {e.kind: e for e in events}
    assert kinds[CallbackKind.RELEASE].amount_fen == 8640
    assert (kinds[CallbackKind.PAYMENT].amount_fen, kinds[CallbackKind.PAYMENT].succeeded) == (
        21360,
        True,
    )
    query = await channel.query("FS-C1")
    assert query.payment is not None
    assert (query.payment.state, query.payment.captured_fen, query.payment.held_fen) == (
        PaymentState.CAPTURED,
        21360,
        0,
    )
    (trade,) = [t for t in world.ctx.ledger.trades(ALIPAY) if t.out_trade_no == "FS-C1"]
    assert (trade.captured_fen, trade.released_fen, trade.state) == (21360, 8640, "FINISH")
    await channel.aclose()


async def test_capture_finds_the_auth_no_itself_and_refuses_more_than_held(
    world: SimWorld,
) -> None:
    channel = world.channel()
    await held(world, channel, "FS-C2", 10000)
    over = await channel.capture(CaptureRequest("FS-C2", "S", 10001, 10000, NOW))
    assert (over.outcome, over.reason) == (Outcome.TECHNICAL_FAILURE, "bad_amount")
    lied = await channel.capture(CaptureRequest("FS-C2", "S", 10001, 20000, NOW))
    assert (lied.outcome, lied.reason) == (Outcome.DECLINED, "ACQ.AUTH_AMOUNT_NOT_ENOUGH")
    done = await channel.capture(CaptureRequest("FS-C2", "S", 10000, 10000, NOW))
    assert done.outcome is Outcome.APPROVED
    await channel.aclose()


async def test_capture_of_an_unconfirmed_hold_is_declined(world: SimWorld) -> None:
    channel = world.channel()
    hold = await channel.hold(hold_request("FS-C3"))
    capture = CaptureRequest("FS-C3", "S", 100, 30000, NOW, provider_ref=hold.provider_ref)
    result = await channel.capture(capture)
    assert (result.outcome, result.reason) == (Outcome.DECLINED, "ACQ.AUTH_ORDER_STATUS_ERROR")
    await channel.aclose()


async def test_full_release_closes_the_hold(world: SimWorld) -> None:
    channel = world.channel()
    auth_no = await held(world, channel, "FS-R1")
    release = ReleaseRequest("FS-R1", "FS-R1-REL", 30000, 30000, NOW, provider_ref=auth_no)
    result = await channel.release(release)
    assert (result.outcome, result.amount_fen) == (Outcome.APPROVED, 30000)
    again = await channel.release(release)  # idempotent by out_request_no
    assert again.outcome is Outcome.APPROVED
    query = await channel.query("FS-R1")
    assert query.payment is not None
    assert (query.payment.state, query.payment.provider_status) == (PaymentState.CLOSED, "CLOSED")
    received = await notifies(world, 2)
    release_event = channel.verify_callback(received[1].headers, received[1].body, 0.0)
    assert (release_event.kind, release_event.amount_fen) == (CallbackKind.RELEASE, 30000)
    assert len(records(world)) == 2  # the replay unfroze nothing and notified nothing
    await channel.aclose()


async def test_close_of_an_unconfirmed_hold_and_of_an_unknown_one(world: SimWorld) -> None:
    channel = world.channel()
    await channel.hold(hold_request("FS-X1"))
    closed = await channel.close("FS-X1")
    assert closed.outcome is Outcome.APPROVED
    assert closed.client_data["action"] == "close"
    query = await channel.query("FS-X1")
    assert query.payment is not None
    assert query.payment.state is PaymentState.CLOSED
    unknown = await channel.close("FS-NEVER")
    assert unknown.payment is not None
    assert unknown.payment.state is PaymentState.NOT_FOUND
    missing = await channel.query("FS-NEVER")
    assert missing.payment is not None
    assert (missing.outcome, missing.payment.state) == (Outcome.APPROVED, PaymentState.NOT_FOUND)
    await channel.aclose()


async def captured(world: SimWorld, channel: AlipayChannel, key: str, amount: int) -> None:
    auth_no = await held(world, channel, key, amount)
    capture = CaptureRequest(key, f"SALE-{key}", amount, amount, NOW, provider_ref=auth_no)
    assert (await channel.capture(capture)).outcome is Outcome.APPROVED


async def test_concurrent_refunds_never_exceed_the_capture(world: SimWorld) -> None:
    channel = world.channel()
    await captured(world, channel, "FS-F1", 10000)
    results: list[ChannelResult] = []

    async def refund(n: int) -> None:
        request = RefundRequest("FS-F1", f"FS-F1-R{n}", 6000, 10000, "少加", NOW)
        results.append(await channel.refund(request))

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(refund, n)
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes == ["approved", "declined", "declined", "declined"]
    assert {r.reason for r in results if r.outcome is Outcome.DECLINED} == {
        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    }
    (trade,) = [t for t in world.ctx.ledger.trades(ALIPAY) if t.out_trade_no == "FS-F1"]
    assert trade.refunded_fen == 6000
    await channel.aclose()


async def test_refund_replay_is_confirmed_by_the_refund_query(world: SimWorld) -> None:
    channel = world.channel()
    await captured(world, channel, "FS-F2", 10000)
    request = RefundRequest("FS-F2", "FS-F2-R1", 4320, 10000, "少加", NOW)
    first = await channel.refund(request)
    assert (first.outcome, first.refund) == (Outcome.APPROVED, RefundState.SUCCESS)
    replay = await channel.refund(request)
    assert (replay.outcome, replay.reason) == (Outcome.PENDING, "fund_change_n")
    confirmed = await channel.refund_query("FS-F2", "FS-F2-R1")
    assert (confirmed.refund, confirmed.amount_fen) == (RefundState.SUCCESS, 4320)
    never = await channel.refund_query("FS-F2", "FS-F2-R9")
    assert never.refund is RefundState.NOT_FOUND
    rest = await channel.refund(RefundRequest("FS-F2", "FS-F2-R2", 5680, 10000, "", NOW))
    assert rest.outcome is Outcome.APPROVED
    received = await notifies(world, 4)  # freeze, trade success, two refunds; no rest
    events = [channel.verify_callback(r.headers, r.body, 0.0) for r in received]
    refunds = [e for e in events if e.kind is CallbackKind.REFUND]
    assert [(e.status, e.refund_fen, e.out_refund_no) for e in refunds] == [
        ("TRADE_SUCCESS", 4320, "FS-F2-R1"),
        ("TRADE_CLOSED", 10000, "FS-F2-R2"),
    ]
    query = await channel.query("FS-F2")
    assert query.payment is not None
    assert query.payment.state is PaymentState.CAPTURED  # closed by refunds, still captured
    await channel.aclose()


async def test_timeout_is_unknown_and_resolved_by_query(world: SimWorld) -> None:
    channel = world.channel(HttpLimits(read_timeout_s=0.5))
    auth_no = await held(world, channel, "FS-T1")
    world.ctx.faults.set(ALIPAY, ProviderFaults(timeout_rate=1.0, timeout_hold_s=2.0))
    capture = CaptureRequest("FS-T1", "SALE-T1", 25640, 30000, NOW, provider_ref=auth_no)
    result = await channel.capture(capture)
    assert (result.outcome, result.reason) == (Outcome.UNKNOWN, "timeout")
    world.ctx.faults.set(ALIPAY, ProviderFaults())
    query = await channel.query("FS-T1")
    assert query.payment is not None
    assert (query.payment.state, query.payment.captured_fen) == (PaymentState.CAPTURED, 25640)
    await channel.aclose()


async def test_server_errors_are_unknown_and_refused_connections_technical(
    world: SimWorld,
) -> None:
    channel = world.channel()
    world.ctx.faults.set(ALIPAY, ProviderFaults(error_rate=1.0, error_status=502))
    result = await channel.refund(RefundRequest("FS-E1", "R", 100, 100, "", NOW))
    assert (result.outcome, result.reason) == (Outcome.UNKNOWN, "http_502")
    world.ctx.faults.set(ALIPAY, ProviderFaults())
    await channel.aclose()
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = AlipayChannel.from_config(
        dataclasses.replace(world.config(), base_url=f"http://127.0.0.1:{port}")
    )
    result = await refused.query("FS-E1")
    assert (result.outcome, result.reason) == (Outcome.TECHNICAL_FAILURE, "connect")
    await refused.aclose()


async def test_rotated_alipay_key_fails_verification_until_refreshed(world: SimWorld) -> None:
    channel = world.channel()
    await captured(world, channel, "FS-K1", 1000)
    world.sim.rotate_keys()
    query = await channel.query("FS-K1")
    assert (query.outcome, query.reason) == (Outcome.TECHNICAL_FAILURE, "bad_response_signature")
    refund = await channel.refund(RefundRequest("FS-K1", "FS-K1-R1", 100, 1000, "", NOW))
    assert (refund.outcome, refund.reason) == (Outcome.UNKNOWN, "bad_response_signature")
    assert await channel.refresh_certificates() == 1
    confirmed = await channel.refund_query("FS-K1", "FS-K1-R1")
    assert confirmed.refund is RefundState.SUCCESS  # the refund had been made
    await channel.aclose()


async def test_notify_is_retried_on_schedule_with_the_same_notify_id(world: SimWorld) -> None:
    answers = iter([(200, b"fail"), (200, b"success ")])
    world.receiver.answer = lambda request: next(answers, (200, b"success"))
    channel = world.channel()
    await held(world, channel, "FS-N1")
    await logged(world, 1)  # answered: the engine now sleeps until the first retry
    world.ctx.clock.advance(240)
    await logged(world, 2)
    world.ctx.clock.advance(600)
    received = await notifies(world, 3)
    ids = {channel.verify_callback(r.headers, r.body, 0.0).event_id for r in received}
    assert len(ids) == 1
    with trio.fail_after(SAFE):
        await world.ctx.callbacks.wait_until(lambda: world.ctx.callbacks.pending == 0)
    assert [r.accepted for r in records(world)] == [False, False, True]
    assert not notify_accepted(200, b"SUCCESS")
    await channel.aclose()


async def test_bill_of_a_past_day_agrees_with_the_ledger(world: SimWorld) -> None:
    channel = world.channel()
    await captured(world, channel, "FS-B1", 30000)
    await captured(world, channel, "FS-B2", 25640)
    refund = await channel.refund(RefundRequest("FS-B1", "FS-B1-R1", 4320, 30000, "", NOW))
    assert refund.outcome is Outcome.APPROVED
    today = datetime.fromtimestamp(world.ctx.clock.now(), tz=CHINA).date()
    assert (await channel.bill(today)).summary is None  # today's bill does not exist yet
    world.ctx.clock.advance(86400)
    bill = await channel.bill(today)
    ledger = {t.out_trade_no: t for t in world.ctx.ledger.trades(ALIPAY)}
    payments = {r.out_trade_no: r for r in bill.rows if r.amount_fen > 0}
    assert {k: (r.amount_fen, r.fee_mfen) for k, r in payments.items()} == {
        k: (t.captured_fen, t.fee_mfen) for k, t in ledger.items()
    }
    assert {k: r.fee_mfen for k, r in payments.items()} == {"FS-B1": 180000, "FS-B2": 154000}
    (refund_row,) = [r for r in bill.rows if r.amount_fen < 0]
    assert (refund_row.out_refund_no, refund_row.amount_fen, refund_row.fee_mfen) == (
        "FS-B1-R1",
        -4320,
        -ledger["FS-B1"].refunds["FS-B1-R1"].fee_mfen,
    )
    assert bill.summary is not None
    assert (bill.summary.settled_fen, bill.summary.refund_fen, bill.summary.fee_mfen) == (
        55640,
        4320,
        308000,
    )
    empty = await channel.bill(today - timedelta(days=3))
    assert (empty.rows, empty.summary) == ((), None)
    await channel.aclose()


@pytest.mark.parametrize("action", ["decline", "abandon"])
async def test_payer_who_does_not_confirm_leaves_no_hold(world: SimWorld, action: str) -> None:
    channel = world.channel()
    await channel.hold(hold_request(f"FS-D-{action}"))
    await world.sim.customer(world.seller_id, f"FS-D-{action}", action)
    query = await channel.query(f"FS-D-{action}")
    assert query.payment is not None
    expected = PaymentState.CLOSED if action == "decline" else PaymentState.AWAITING_CUSTOMER
    assert query.payment.state is expected
    assert records(world) == []  # Alipay notifies frozen funds, not refusals
    await channel.aclose()
