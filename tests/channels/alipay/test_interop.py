"""AlipayChannel against the real simulator process (``fuelswitch sim providers``) over HTTP.

The payer acts through the control API, the simulator's ledger is read through it, notifies
arrive at a receiver in this test over loopback and are verified by the channel. The tests of
this module share one process (one ledger, one clock): each uses keys of its own, and the bill
test, which moves the clock a day ahead, runs last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from channels.alipay import AlipayChannel
from channels.alipay.requests import CHINA
from channels.config import ChannelConfig
from channels.model import (
    BillKind,
    BillRow,
    CallbackEvent,
    CallbackKind,
    CaptureRequest,
    ChannelResult,
    HoldRequest,
    Outcome,
    PaymentState,
    Provider,
    RefundRequest,
    ReleaseRequest,
)
from channels.transport import HttpLimits
from tests.channels.callback_receiver import Received, Receiver
from tests.channels.provider_sim import ProviderSimProcess

NOW = datetime(2026, 11, 20, 9, 0, 0)


def success(request: Received) -> tuple[int, bytes]:
    return 200, b"success"


@asynccontextmanager
async def alipay(
    sim: ProviderSimProcess, limits: HttpLimits | None = None
) -> AsyncIterator[tuple[AlipayChannel, Receiver]]:
    """A channel configured from the simulator's material, and the receiver of its notifies."""
    receiver = Receiver(success)
    (merchant,) = sim.control.material()["alipay"]["merchants"]
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.run)
        config = ChannelConfig(
            name="alipay-interop",
            provider=Provider.ALIPAY,
            base_url=sim.url("alipay"),
            merchant_id=merchant["merchant_id"],
            app_id=merchant["app_id"],
            keys_dir=Path(merchant["keys_dir"]),
            notify_url=receiver.url("/callbacks/alipay"),
            limits=limits or HttpLimits(),
        )
        channel = AlipayChannel.from_config(config)
        try:
            yield channel, receiver
        finally:
            await channel.aclose()
            nursery.cancel_scope.cancel()


def hold_request(key: str, amount: int) -> HoldRequest:
    return HoldRequest(key, amount, "92#汽油 预授权", "", "", NOW, NOW + timedelta(minutes=15))


async def events(channel: AlipayChannel, receiver: Receiver, count: int) -> list[CallbackEvent]:
    received = await receiver.wait_for(count)
    return [channel.verify_callback(r.headers, r.body, 0.0) for r in received]


async def confirmed_hold(
    sim: ProviderSimProcess, channel: AlipayChannel, receiver: Receiver, key: str, amount: int
) -> str:
    hold = await channel.hold(hold_request(key, amount))
    assert hold.outcome is Outcome.PENDING, hold
    await sim.control.acustomer("alipay", key, "pay")
    (event,) = await events(channel, receiver, 1)
    assert (event.kind, event.out_trade_no, event.amount_fen) == (CallbackKind.HOLD, key, amount)
    assert hold.provider_ref is not None
    return hold.provider_ref


async def ledger_trade(sim: ProviderSimProcess, key: str) -> dict[str, Any]:
    (trade,) = [t for t in await sim.control.aledger("alipay") if t["out_trade_no"] == key]
    return trade


async def test_hold_confirmed_by_the_payer_is_held(provider_sim: ProviderSimProcess) -> None:
    async with alipay(provider_sim) as (channel, receiver):
        waiting = await channel.query("FS-I-H1")
        assert waiting.payment is not None
        assert waiting.payment.state is PaymentState.NOT_FOUND
        auth_no = await confirmed_hold(provider_sim, channel, receiver, "FS-I-H1", 30000)
        query = await channel.query("FS-I-H1")
        assert query.payment is not None
        assert (query.payment.state, query.payment.held_fen, query.payment.provider_ref) == (
            PaymentState.HELD,
            30000,
            auth_no,
        )
        trade = await ledger_trade(provider_sim, "FS-I-H1")
        assert (trade["state"], trade["held_fen"]) == ("AUTHORIZED", 30000)


async def test_capture_less_than_held_releases_the_rest(provider_sim: ProviderSimProcess) -> None:
    async with alipay(provider_sim) as (channel, receiver):
        auth_no = await confirmed_hold(provider_sim, channel, receiver, "FS-I-C1", 30000)
        capture = CaptureRequest("FS-I-C1", "SALE-I-C1", 25640, 30000, NOW, provider_ref=auth_no)
        result = await channel.capture(capture)
        assert (result.outcome, result.amount_fen) == (Outcome.APPROVED, 25640)
        notified = await events(channel, receiver, 3)
        assert {(e.kind, e.amount_fen) for e in notified[1:]} == {
            (CallbackKind.RELEASE, 4360),
            (CallbackKind.PAYMENT, 25640),
        }
        trade = await ledger_trade(provider_sim, "FS-I-C1")
        assert (trade["captured_fen"], trade["released_fen"], trade["held_fen"]) == (
            25640,
            4360,
            0,
        )
        assert trade["state"] == "FINISH"
        query = await channel.query("FS-I-C1")
        assert query.payment is not None
        assert (query.payment.state, query.payment.captured_fen) == (PaymentState.CAPTURED, 25640)


async def test_full_release_unfreezes_everything(provider_sim: ProviderSimProcess) -> None:
    async with alipay(provider_sim) as (channel, receiver):
        auth_no = await confirmed_hold(provider_sim, channel, receiver, "FS-I-R1", 20000)
        release = ReleaseRequest("FS-I-R1", "FS-I-R1-REL", 20000, 20000, NOW, provider_ref=auth_no)
        result = await channel.release(release)
        assert (result.outcome, result.amount_fen) == (Outcome.APPROVED, 20000)
        (_, unfrozen) = await events(channel, receiver, 2)
        assert (unfrozen.kind, unfrozen.amount_fen, unfrozen.succeeded) == (
            CallbackKind.RELEASE,
            20000,
            True,
        )
        trade = await ledger_trade(provider_sim, "FS-I-R1")
        assert (trade["state"], trade["released_fen"], trade["held_fen"]) == ("CLOSED", 20000, 0)
        query = await channel.query("FS-I-R1")
        assert query.payment is not None
        assert query.payment.state is PaymentState.CLOSED


async def test_concurrent_refunds_never_exceed_the_capture(
    provider_sim: ProviderSimProcess,
) -> None:
    async with alipay(provider_sim) as (channel, receiver):
        auth_no = await confirmed_hold(provider_sim, channel, receiver, "FS-I-F1", 10000)
        capture = CaptureRequest("FS-I-F1", "SALE-I-F1", 10000, 10000, NOW, provider_ref=auth_no)
        assert (await channel.capture(capture)).outcome is Outcome.APPROVED
        results: list[ChannelResult] = []

        async def refund(n: int) -> None:
            request = RefundRequest("FS-I-F1", f"FS-I-F1-R{n}", 4000, 10000, "少加", NOW)
            results.append(await channel.refund(request))

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(refund, n)
        approved = [r for r in results if r.outcome is Outcome.APPROVED]
        declined = [r for r in results if r.outcome is Outcome.DECLINED]
        assert (len(approved), len(declined)) == (2, 3)
        trade = await ledger_trade(provider_sim, "FS-I-F1")
        assert trade["refunded_fen"] == 8000 <= trade["captured_fen"]
        assert sorted(r["amount_fen"] for r in trade["refunds"].values()) == [4000, 4000]


async def test_timeout_is_unknown_and_the_query_resolves_it(
    provider_sim: ProviderSimProcess,
) -> None:
    control = provider_sim.control
    async with alipay(provider_sim, HttpLimits(read_timeout_s=1.0)) as (channel, receiver):
        auth_no = await confirmed_hold(provider_sim, channel, receiver, "FS-I-T1", 30000)
        await control.aset_faults("alipay", timeout_rate=1.0, timeout_hold_s=3.0)
        try:
            capture = CaptureRequest("FS-I-T1", "SALE-I-T1", 21000, 30000, NOW, auth_no)
            result = await channel.capture(capture)
        finally:
            await control.aset_faults("alipay")
        assert (result.outcome, result.reason) == (Outcome.UNKNOWN, "timeout")
        query = await channel.query("FS-I-T1")
        assert query.payment is not None
        assert (query.payment.state, query.payment.captured_fen) == (PaymentState.CAPTURED, 21000)


def _day(t: float) -> date:
    return datetime.fromtimestamp(t, CHINA).date()


async def test_bill_download_agrees_with_the_ledger(provider_sim: ProviderSimProcess) -> None:
    """Runs last: it moves the simulator's clock to the next day, when the bill exists."""
    control = provider_sim.control
    async with alipay(provider_sim) as (channel, receiver):
        auth_no = await confirmed_hold(provider_sim, channel, receiver, "FS-I-B1", 30000)
        capture = CaptureRequest("FS-I-B1", "SALE-I-B1", 30000, 30000, NOW, provider_ref=auth_no)
        assert (await channel.capture(capture)).outcome is Outcome.APPROVED
        refund = RefundRequest("FS-I-B1", "FS-I-B1-R1", 4320, 30000, "少加", NOW)
        assert (await channel.refund(refund)).outcome is Outcome.APPROVED
        trades = await control.aledger("alipay")
        first = _day(min(t["created_at"] for t in trades))
        last = _day((await control.aclock())["now"])
        await control.aadvance(86400.0)
        rows: list[BillRow] = []
        day = first
        while day <= last:  # a run across Beijing midnight books on two days
            bill = await channel.bill(day)
            rows.extend(bill.rows)
            day += timedelta(days=1)
    captured = {t["out_trade_no"]: t for t in trades if t["captured_fen"] > 0}
    payments = {r.out_trade_no: r for r in rows if r.kind is BillKind.PAYMENT}
    assert {k: (r.amount_fen, r.fee_mfen) for k, r in payments.items()} == {
        k: (t["captured_fen"], t["fee_mfen"]) for k, t in captured.items()
    }
    refunds = {r.out_refund_no: r for r in rows if r.kind is BillKind.REFUND}
    expected = {
        no: (-refund_row["amount_fen"], -refund_row["fee_mfen"])
        for t in captured.values()
        for no, refund_row in t["refunds"].items()
    }
    assert {no: (r.amount_fen, r.fee_mfen) for no, r in refunds.items()} == expected
    assert payments["FS-I-B1"].fee_mfen == 180000  # 0.6 % of 300.00
    assert refunds["FS-I-B1-R1"].fee_mfen == -26000  # 0.6 % of 43.20, returned
