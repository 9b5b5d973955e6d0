"""WeChatPayChannel against the real simulator process, over HTTP: holds paid by the customer
(control API), captures and releases, concurrent refunds, unknown outcomes, bills, and the
wechatpayv3 SDK as a second client of the same simulator."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from wechatpayv3 import WeChatPay, WeChatPayType

from channels.interface import Channel
from channels.model import (
    CallbackKind,
    CaptureRequest,
    ChannelResult,
    HoldKind,
    Operation,
    Outcome,
    PaymentState,
    RefundRequest,
    RefundState,
    ReleaseRequest,
)
from channels.transport import Transport
from channels.wechatpay import CST, WeChatPayChannel, load_merchant
from channels.wechatpay.keygen import key_pem
from tests.channels.callback_receiver import Received, Receiver
from tests.channels.provider_sim import ProviderSimProcess
from tests.channels.wechatpay.interop_support import (
    channel,
    config,
    hold_request,
    unique_key,
    until,
    verified,
)

NOW = datetime.now(UTC)


class Wired:
    """A channel whose notify_url is a receiver that verifies and acknowledges like a switch."""

    def __init__(self, sim: ProviderSimProcess, receiver: Receiver, **kw: Any) -> None:
        self.sim = sim
        self.receiver = receiver
        self.cfg = config(sim, notify_url=receiver.url("/callbacks/wechatpay"), **kw)
        self.channel, self.transport = channel(self.cfg)
        receiver.answer = self.answer

    def answer(self, received: Received) -> tuple[int, bytes]:
        reply = self.channel.ack(verified(self.channel, received) is not None, "rejected")
        return reply.status, reply.body

    async def events(self, key: str, kind: CallbackKind, count: int = 1) -> list[Any]:
        with trio.fail_after(10):
            while True:
                events = [verified(self.channel, r) for r in self.receiver.requests]
                mine = [e for e in events if e and e.out_trade_no == key and e.kind is kind]
                if len(mine) >= count:
                    return mine
                await self.receiver.wait_for(len(self.receiver.requests) + 1)

    async def paid_hold(self, amount_fen: int = 20000) -> tuple[str, ChannelResult]:
        key = unique_key("FS")
        held = await self.channel.hold(hold_request(key, amount_fen, self.cfg.notify_url))
        assert held.outcome is Outcome.PENDING, held
        await self.sim.control.acustomer("wechatpay", key, "pay")
        query = await self.channel.query(key)
        assert query.payment is not None and query.payment.state is PaymentState.HELD
        return key, query

    async def refund_done(self, key: str, refund_key: str) -> ChannelResult:
        return await until(
            lambda: self.channel.refund_query(key, refund_key),
            lambda r: r.refund is RefundState.SUCCESS,
        )


@pytest.fixture(scope="module")
def provider_sim_args() -> tuple[str, ...]:
    return ("--merchants", "3")


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    running = Receiver()
    await nursery.start(running.run)
    return running


@pytest.fixture
async def wired(provider_sim: ProviderSimProcess, receiver: Receiver) -> Any:
    provider_sim.control.clear_faults()
    w = Wired(provider_sim, receiver)
    yield w
    await w.channel.aclose()


def _trade(sim: ProviderSimProcess, key: str) -> dict[str, Any]:
    (trade,) = [t for t in sim.control.ledger("wechatpay") if t["out_trade_no"] == key]
    return trade


async def test_hold_paid_confirmed_by_callback_and_by_query(wired: Wired) -> None:
    generic: Channel = wired.channel  # the router's view (checked by mypy)
    assert generic.caps.hold_kind is HoldKind.PREPAY_CEILING
    key = unique_key("FS")
    held = await wired.channel.hold(hold_request(key, 20000, wired.cfg.notify_url))
    assert (held.operation, held.outcome, held.amount_fen) == (
        Operation.HOLD,
        Outcome.PENDING,
        20000,
    )
    assert held.client_data["prepay_id"].startswith("wx")
    assert held.client_data["pay_params"]["package"] == f"prepay_id={held.client_data['prepay_id']}"
    waiting = await wired.channel.query(key)
    assert waiting.payment is not None and waiting.payment.state is PaymentState.AWAITING_CUSTOMER
    await wired.sim.control.acustomer("wechatpay", key, "pay")
    (event,) = await wired.events(key, CallbackKind.PAYMENT)
    assert (event.status, event.succeeded, event.amount_fen) == ("SUCCESS", True, 20000)
    query = await wired.channel.query(key)
    assert query.outcome is Outcome.APPROVED
    assert query.payment is not None
    assert (query.payment.state, query.payment.held_fen) == (PaymentState.HELD, 20000)
    assert query.provider_ref == event.provider_ref
    by_id = await wired.channel.query(key, query.provider_ref)
    assert by_id.payment is not None and by_id.payment.state is PaymentState.HELD
    delivered = await wired.sim.control.await_callbacks(
        lambda records: any(r["accepted"] for r in records), event_key=event.event_id
    )
    assert delivered[-1]["status"] == 204


async def test_capture_less_than_held_and_release_the_rest(wired: Wired) -> None:
    key, held = await wired.paid_hold(20000)
    capture = await wired.channel.capture(
        CaptureRequest(key, f"{key}-S", 15230, 20000, NOW, held.provider_ref)
    )
    assert (capture.outcome, capture.amount_fen) == (Outcome.APPROVED, 15230)
    too_much = await wired.channel.capture(CaptureRequest(key, f"{key}-S", 20001, 20000, NOW))
    assert (too_much.outcome, too_much.reason) == (Outcome.DECLINED, "exceeds_hold")
    release = await wired.channel.release(ReleaseRequest(key, f"{key}-R", 4770, 20000, NOW))
    assert release.outcome in (Outcome.PENDING, Outcome.APPROVED)
    assert (release.operation, release.amount_fen) == (Operation.RELEASE, 4770)
    done = await wired.refund_done(key, f"{key}-R")
    assert (done.outcome, done.amount_fen) == (Outcome.APPROVED, 4770)
    (event,) = await wired.events(key, CallbackKind.REFUND)
    assert (event.out_refund_no, event.refund_fen, event.status) == (f"{key}-R", 4770, "SUCCESS")
    trade = _trade(wired.sim, key)
    assert (trade["paid_fen"], trade["refunded_fen"], trade["state"]) == (20000, 4770, "REFUND")
    again = await wired.channel.release(ReleaseRequest(key, f"{key}-R", 4770, 20000, NOW))
    assert again.outcome is Outcome.APPROVED and again.provider_ref == done.provider_ref
    assert _trade(wired.sim, key)["refunded_fen"] == 4770  # the same key is the same refund
    nothing = await wired.channel.release(ReleaseRequest(key, f"{key}-R2", 0, 20000, NOW))
    assert nothing.outcome is Outcome.APPROVED


async def test_full_release(wired: Wired) -> None:
    key, _ = await wired.paid_hold(30000)
    release = await wired.channel.release(ReleaseRequest(key, f"{key}-R", 30000, 30000, NOW))
    assert release.outcome in (Outcome.PENDING, Outcome.APPROVED)
    await wired.refund_done(key, f"{key}-R")
    trade = _trade(wired.sim, key)
    assert trade["refunded_fen"] == trade["paid_fen"] == 30000
    query = await wired.channel.query(key)
    assert query.payment is not None and query.payment.provider_status == "REFUND"
    more = await wired.channel.refund(RefundRequest(key, f"{key}-X", 1, 30000, "再退", NOW))
    assert (more.outcome, more.reason) == (Outcome.DECLINED, "INVALID_REQUEST")


async def test_concurrent_refunds_never_exceed_the_capture(wired: Wired) -> None:
    key, _ = await wired.paid_hold(20000)
    await wired.channel.capture(CaptureRequest(key, f"{key}-S", 15000, 20000, NOW))
    await wired.channel.release(ReleaseRequest(key, f"{key}-R", 5000, 20000, NOW))
    results: dict[str, ChannelResult] = {}

    async def refund(refund_key: str) -> None:
        request = RefundRequest(key, refund_key, 10000, 20000, "退款", NOW)
        results[refund_key] = await wired.channel.refund(request)

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(refund, f"{key}-C{n}")
    accepted = [r for r in results.values() if r.outcome in (Outcome.PENDING, Outcome.APPROVED)]
    refused = [r for r in results.values() if r.outcome is Outcome.DECLINED]
    assert (len(accepted), len(refused)) == (1, 3)
    assert {r.reason for r in refused} == {"INVALID_REQUEST"}
    trade = _trade(wired.sim, key)
    customer_refunds = sum(r["amount_fen"] for k, r in trade["refunds"].items() if k != f"{key}-R")
    assert customer_refunds == 10000 <= 15000
    assert trade["refunded_fen"] == 15000 <= trade["paid_fen"]


async def test_prepay_replay_and_key_reuse(wired: Wired) -> None:
    key = unique_key("FS")
    first = await wired.channel.hold(hold_request(key, 20000, wired.cfg.notify_url))
    again = await wired.channel.hold(hold_request(key, 20000, wired.cfg.notify_url))
    assert again.client_data["prepay_id"] == first.client_data["prepay_id"]
    other = await wired.channel.hold(hold_request(key, 19999, wired.cfg.notify_url))
    assert (other.outcome, other.reason) == (Outcome.DECLINED, "OUT_TRADE_NO_USED")
    await wired.sim.control.acustomer("wechatpay", key, "pay")
    paid = await wired.channel.hold(hold_request(key, 20000, wired.cfg.notify_url))
    assert (paid.outcome, paid.reason) == (Outcome.UNKNOWN, "ORDERPAID")  # query, it is paid


async def test_close(wired: Wired) -> None:
    unpaid = unique_key("FS")
    await wired.channel.hold(hold_request(unpaid, 20000, wired.cfg.notify_url))
    closed = await wired.channel.close(unpaid)
    assert closed.outcome is Outcome.APPROVED
    query = await wired.channel.query(unpaid)
    assert query.payment is not None and query.payment.state is PaymentState.CLOSED
    paid, _ = await wired.paid_hold()
    refused = await wired.channel.close(paid)
    assert (refused.outcome, refused.reason) == (Outcome.DECLINED, "ORDERPAID")
    missing = await wired.channel.query(unique_key("FS"))
    assert missing.payment is not None and missing.payment.state is PaymentState.NOT_FOUND
    assert (
        await wired.channel.refund_query(paid, "NO-SUCH-REFUND")
    ).refund is RefundState.NOT_FOUND


async def test_declined_payment_is_learnt_by_query(wired: Wired) -> None:
    key = unique_key("FS")
    await wired.channel.hold(hold_request(key, 20000, wired.cfg.notify_url))
    await wired.sim.control.acustomer("wechatpay", key, "decline")
    query = await wired.channel.query(key)
    assert query.payment is not None and query.payment.state is PaymentState.FAILED


async def test_unknown_outcomes_resolved_by_query(
    provider_sim: ProviderSimProcess, receiver: Receiver
) -> None:
    w = Wired(provider_sim, receiver, read_timeout_s=0.5)
    control = provider_sim.control
    try:
        # the request is done at WeChat, the answer never arrives in time
        await control.aset_faults("wechatpay", timeout_rate=1.0, timeout_hold_s=1.5)
        key = unique_key("FS")
        hold = await w.channel.hold(hold_request(key, 20000, w.cfg.notify_url))
        assert (hold.outcome, hold.reason) == (Outcome.UNKNOWN, "timeout")
        await control.aset_faults("wechatpay")
        found = await w.channel.query(key)
        assert found.payment is not None and found.payment.state is PaymentState.AWAITING_CUSTOMER
        await control.acustomer("wechatpay", key, "pay")
        await control.aset_faults("wechatpay", timeout_rate=1.0, timeout_hold_s=1.5)
        refund = await w.channel.refund(RefundRequest(key, f"{key}-R", 500, 20000, "退", NOW))
        assert refund.outcome is Outcome.UNKNOWN
        await control.aset_faults("wechatpay")
        resolved = await w.refund_done(key, f"{key}-R")
        assert resolved.amount_fen == 500
        # a 5xx: not done, and the query says so
        await control.aset_faults("wechatpay", error_rate=1.0)
        lost = unique_key("FS")
        failed = await w.channel.hold(hold_request(lost, 20000, w.cfg.notify_url))
        assert (failed.outcome, failed.reason) == (Outcome.UNKNOWN, "SYSTEM_ERROR")
        await control.aset_faults("wechatpay")
        absent = await w.channel.query(lost)
        assert absent.payment is not None and absent.payment.state is PaymentState.NOT_FOUND
    finally:
        await control.aset_faults("wechatpay")
        await w.channel.aclose()


async def test_unsigned_answers_are_not_believed(
    provider_sim: ProviderSimProcess, nursery: trio.Nursery
) -> None:
    """A server that answers 200 without WeChat's signature: a prepay may have happened
    (UNKNOWN), a query's content is worthless (TECHNICAL_FAILURE)."""
    forged = Receiver(lambda r: (200, b'{"prepay_id":"wx-forged","trade_state":"SUCCESS"}'))
    url = await nursery.start(forged.run)
    cfg = replace(config(provider_sim), base_url=url)
    ch = WeChatPayChannel.from_config(cfg)
    try:
        hold = await ch.hold(hold_request(unique_key("FS"), 100, cfg.notify_url))
        assert (hold.outcome, hold.reason) == (Outcome.UNKNOWN, "bad_response_signature")
        query = await ch.query(unique_key("FS"))
        assert (query.outcome, query.reason) == (
            Outcome.TECHNICAL_FAILURE,
            "bad_response_signature",
        )
        assert forged.requests[0].headers["authorization"].startswith("WECHATPAY2-SHA256-RSA2048 ")
    finally:
        await ch.aclose()


async def test_bad_request_signature_is_401(provider_sim: ProviderSimProcess) -> None:
    base = provider_sim.url("wechatpay")
    m = provider_sim.ready["merchants"]["wechatpay"][0]
    async with httpx.AsyncClient(base_url=base) as client:
        unsigned = await client.get(
            f"/v3/pay/transactions/out-trade-no/FS000000?mchid={m['merchant_id']}"
        )
        assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"
    # a request signed with another merchant's key, under this merchant's name and serial
    cfg = config(provider_sim, 0)
    own = load_merchant(cfg.keys_dir)
    stolen = load_merchant(config(provider_sim, 1).keys_dir).private_key
    impostor = WeChatPayChannel(cfg, replace(own, private_key=stolen), Transport(cfg.base_url))
    try:
        result = await impostor.query(unique_key("FS"))
        assert (result.outcome, result.reason) == (Outcome.TECHNICAL_FAILURE, "SIGN_ERROR")
    finally:
        await impostor.aclose()


async def test_bill_of_the_day(wired: Wired) -> None:
    key, _ = await wired.paid_hold(12345)
    await wired.channel.release(ReleaseRequest(key, f"{key}-R", 345, 12345, NOW))
    today = datetime.fromtimestamp((await wired.sim.control.aclock())["now"], CST).date()
    bill = await wired.channel.bill(today)
    mine = [r for r in bill.rows if r.out_trade_no == key]
    assert sorted((r.kind.value, r.amount_fen, r.fee_mfen) for r in mine) == [
        ("payment", 12345, 74000),  # 0.60% of 123.45 = 0.7407 → 0.74
        ("refund", -345, -2068),  # 74000 * 345 / 12345 = 2068.04 milli-fen
    ]
    assert bill.summary is not None and bill.summary.count == len(bill.rows)
    ledger = wired.sim.control.ledger("wechatpay", wired.cfg.merchant_id)
    paid_today = [
        t
        for t in ledger
        if t["paid_at"] and datetime.fromtimestamp(t["paid_at"], CST).date() == today
    ]
    assert bill.summary.settled_fen == sum(t["paid_fen"] for t in paid_today)
    empty = await wired.channel.bill(datetime(2020, 1, 1).date())
    assert (empty.rows, empty.summary) == ((), None)


def _sdk_client(sim: ProviderSimProcess, tmp: Path) -> Any:
    cfg = config(sim)
    creds = load_merchant(cfg.keys_dir)
    for cert in creds.platform.certs.values():
        (tmp / f"{cert.serial}.pem").write_bytes(cert.pem())
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=creds.mchid,
        private_key=key_pem(creds.private_key).decode(),
        cert_serial_no=creds.merchant_serial,
        appid=creds.appid,
        apiv3_key=creds.apiv3_key.decode(),
        notify_url="http://127.0.0.1:9/notify",
        cert_dir=str(tmp),
    )
    sdk._core._gate_way = sim.url("wechatpay")
    return sdk


async def test_the_sdk_as_a_client_of_the_simulator(
    provider_sim: ProviderSimProcess, tmp_path: Path
) -> None:
    """What the SDK signs the simulator verifies (with our code); what the simulator signs the
    SDK verifies (with its code); its /v3/certificates parser reads our answer."""
    sdk = _sdk_client(provider_sim, tmp_path)
    key = unique_key("FS")

    def calls() -> list[tuple[int, Any]]:
        out = [
            sdk.pay(
                description="92# 汽油",
                out_trade_no=key,
                amount={"total": 888, "currency": "CNY"},
                payer={"openid": "o1"},
            )
        ]
        out.append(sdk.query(out_trade_no=key))
        return out

    (prepaid, queried) = await trio.to_thread.run_sync(calls)
    assert prepaid[0] == 200 and "prepay_id" in prepaid[1]
    assert queried[0] == 200 and '"trade_state":"NOTPAY"' in queried[1]
    await provider_sim.control.acustomer("wechatpay", key, "pay")

    def refund() -> tuple[int, Any]:
        result: tuple[int, Any] = sdk.refund(
            out_refund_no=f"{key}-R",
            amount={"refund": 88, "total": 888, "currency": "CNY"},
            out_trade_no=key,
        )
        return result

    code, text = await trio.to_thread.run_sync(refund)
    assert code == 200 and '"status":"PROCESSING"' in text

    def certificates() -> int:
        sdk._core._update_certificates()
        return len(sdk._core._certificates)

    assert await trio.to_thread.run_sync(certificates) >= 1
    # the trade the SDK made is ours to query too
    ours = WeChatPayChannel.from_config(config(provider_sim))
    try:
        query = await ours.query(key)
        assert query.payment is not None and query.payment.state is PaymentState.CAPTURED
    finally:
        await ours.aclose()


async def test_a_refused_callback_is_retried_on_the_schedule(wired: Wired) -> None:
    """WeChat's schedule starts 15 s, 15 s, 30 s: each retry is signed afresh and the body is
    the same event; once the receiver acknowledges, the sending stops."""
    refusals = 2

    def answer(received: Received) -> tuple[int, bytes]:
        if len(wired.receiver.requests) <= refusals:
            return 500, b'{"code":"FAIL","message":"busy"}'
        return wired.answer(received)

    wired.receiver.answer = answer
    key = unique_key("FS")
    await wired.channel.hold(hold_request(key, 20000, wired.cfg.notify_url))
    await wired.sim.control.acustomer("wechatpay", key, "pay")
    (first,) = await wired.receiver.wait_for(1)
    event_id = orjson.loads(first.body)["id"]
    for count in (1, 2):  # once the send is logged, the engine sleeps until the next one

        def logged(records: list[dict[str, Any]], n: int = count) -> bool:
            return len(records) >= n

        await wired.sim.control.await_callbacks(logged, event_key=event_id)
        await wired.sim.control.aadvance(15)
    records = await wired.sim.control.await_callbacks(
        lambda r: any(x["accepted"] for x in r), event_key=event_id
    )
    assert [(r["attempt"], r["status"], r["accepted"]) for r in records] == [
        (1, 500, False),
        (2, 500, False),
        (3, 204, True),
    ]
    sent = wired.receiver.requests[:3]
    assert len({r.body for r in sent}) == 1
    assert len({r.headers["wechatpay-nonce"] for r in sent}) == 3
    assert all(verified(wired.channel, r) is not None for r in sent)
