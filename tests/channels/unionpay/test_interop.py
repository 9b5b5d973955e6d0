"""UnionPayChannel against the real simulator process, over HTTP.

Every exchange is the wire format both sides implement: the channel signs with the merchant's
key, the simulator verifies it against the merchant certificate registered with "UnionPay" and
answers signed with its own certificate, which the channel chain-checks. Notifies go to a real
HTTP receiver. The simulator's ledger (control API) is the provider's truth the tests compare
with. The last test moves the simulated clock by a day; tests before it use real-time keys.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import trio

from channels.config import ChannelConfig
from channels.interface import Channel
from channels.model import (
    BillKind,
    BillRow,
    CallbackKind,
    CaptureRequest,
    HoldRequest,
    Outcome,
    PaymentState,
    Provider,
    RefundRequest,
    RefundState,
    ReleaseRequest,
)
from channels.transport import HttpLimits
from channels.unionpay import (
    BEIJING,
    MerchantCredentials,
    UnionPayChannel,
    build_query,
    decode_form,
    encode_form,
    signed,
)
from tests.channels.callback_receiver import Received, Receiver
from tests.channels.provider_sim import SAFE, ProviderSimProcess


def _ok(request: Received) -> tuple[int, bytes]:
    return 200, b"ok"


@dataclass
class Setup:
    channel: UnionPayChannel
    receiver: Receiver
    sim: ProviderSimProcess
    mer_id: str

    async def ledger(self, key: str) -> dict[str, Any]:
        trades = await self.sim.control.aledger("unionpay", self.mer_id)
        (trade,) = [t for t in trades if t["out_trade_no"] == key]
        return trade

    async def notify(self, txn_type: str, order_id: str) -> Received:
        """The first notify of this transaction that reached the receiver."""
        with trio.fail_after(SAFE):
            while True:
                for received in self.receiver.requests:
                    fields = decode_form(received.body)
                    if (fields.get("txnType"), fields.get("orderId")) == (txn_type, order_id):
                        return received
                await self.receiver.wait_for(len(self.receiver.requests) + 1)


@asynccontextmanager
async def setup(sim: ProviderSimProcess, read_timeout_s: float = 10.0) -> AsyncIterator[Setup]:
    mer_id = sim.ready["merchants"]["unionpay"][0]["merchant_id"]
    receiver = Receiver(_ok)
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.run)
        cfg = ChannelConfig(
            name="unionpay-main",
            provider=Provider.UNIONPAY,
            base_url=sim.url("unionpay"),
            merchant_id=mer_id,
            app_id="",
            keys_dir=sim.keys / "unionpay" / mer_id,
            notify_url=receiver.url("/callbacks/unionpay"),
            limits=HttpLimits(read_timeout_s=read_timeout_s),
        )
        channel = UnionPayChannel.from_config(cfg)
        try:
            yield Setup(channel, receiver, sim, mer_id)
        finally:
            await channel.aclose()
            nursery.cancel_scope.cancel()


def _key() -> str:
    return f"FS{secrets.token_hex(7).upper()}"


def _now() -> datetime:
    return datetime.now(UTC)


async def _held(s: Setup, key: str, amount: int = 20000) -> str:
    """A pre-authorization the customer confirmed; returns its queryId."""
    hold = await s.channel.hold(HoldRequest(key, amount, "92号汽油", "", "", _now()))
    assert hold.outcome is Outcome.PENDING
    assert hold.client_data["tn"]
    await s.sim.control.acustomer("unionpay", key, "pay")
    status = await s.channel.query(key)
    assert status.payment is not None
    assert status.payment.state is PaymentState.HELD
    assert status.provider_ref
    return status.provider_ref


async def test_hold_customer_confirms_held(provider_sim: ProviderSimProcess) -> None:
    async with setup(provider_sim) as s:
        channel: Channel = s.channel  # the adapter is a Channel
        key = _key()
        hold = await channel.hold(HoldRequest(key, 20000, "92号汽油", "", "", _now()))
        assert (hold.outcome, hold.amount_fen) == (Outcome.PENDING, 20000)
        waiting = await channel.query(key)
        assert waiting.payment is not None
        assert waiting.payment.state is PaymentState.AWAITING_CUSTOMER
        await provider_sim.control.acustomer("unionpay", key, "pay")
        received = await s.notify("02", key)
        event = channel.verify_callback(received.headers, received.body, _now().timestamp())
        assert (event.kind, event.out_trade_no, event.amount_fen) == (CallbackKind.HOLD, key, 20000)
        assert event.succeeded
        assert await s.channel.confirm_callback(event) is event
        held = await channel.query(key)
        assert held.payment is not None
        assert (held.payment.state, held.payment.held_fen) == (PaymentState.HELD, 20000)
        assert held.provider_ref == event.event_id
        trade = await s.ledger(key)
        assert (trade["state"], trade["held_fen"]) == ("AUTHORIZED", 20000)
        restarted = UnionPayChannel.from_config(s.channel.cfg)  # knows no txnTime: by queryId
        try:
            again = await restarted.query(key, held.provider_ref)
        finally:
            await restarted.aclose()
        assert again.payment is not None
        assert (again.payment.state, again.payment.held_fen) == (PaymentState.HELD, 20000)


async def test_a_restarted_channel_queries_by_the_journaled_request_times(
    provider_sim: ProviderSimProcess,
) -> None:
    """A fresh instance (a restarted switch) remembers no txnTime: given each request's
    journaled created_at as ``sent_at`` it finds the hold, the capture, the refund and the full
    release by orderId, and re-learns which follow-ups belong to which hold."""
    async with setup(provider_sim) as s:
        held, captured, released = _key(), _key(), _key()
        hold_at: dict[str, datetime] = {}
        hold_ref: dict[str, str] = {}
        for key in (held, captured, released):
            hold_at[key] = _now()
            hold = await s.channel.hold(HoldRequest(key, 20000, "92号汽油", "", "", hold_at[key]))
            assert hold.outcome is Outcome.PENDING
            await provider_sim.control.acustomer("unionpay", key, "pay")
            status = await s.channel.query(key)
            assert status.provider_ref
            hold_ref[key] = status.provider_ref
        capture_at = _now()
        capture = await s.channel.capture(
            CaptureRequest(captured, captured + "C1", 15000, 20000, capture_at, hold_ref[captured])
        )
        refund_at = _now()
        refund = await s.channel.refund(
            RefundRequest(captured, captured + "R1", 5000, 15000, "price", refund_at)
        )
        release_at = _now()
        release = await s.channel.release(
            ReleaseRequest(released, released + "L1", 20000, 20000, release_at, hold_ref[released])
        )
        assert [r.outcome for r in (capture, refund, release)] == [Outcome.APPROVED] * 3

        restarted = UnionPayChannel.from_config(s.channel.cfg)
        try:
            blind = await restarted.query(held)
            assert (blind.outcome, blind.reason) == (Outcome.UNKNOWN, "txn_time_unknown")
            # The instant counts, not its zone: txnTime is formed in Beijing time either way.
            status = await restarted.query(held, sent_at=hold_at[held].astimezone(BEIJING))
            assert status.payment is not None
            assert (status.payment.state, status.payment.held_fen) == (PaymentState.HELD, 20000)
            assert status.provider_ref == hold_ref[held]
            # Found once, the txnTime is remembered and wins over a later, different sent_at.
            again = await restarted.query(held, sent_at=hold_at[held] + timedelta(hours=1))
            assert again.payment is not None
            assert again.payment.state is PaymentState.HELD
            close = await restarted.close(held, sent_at=hold_at[held])
            assert (close.outcome, close.reason) == (Outcome.DECLINED, "held")

            completion = await restarted.query(captured + "C1", sent_at=capture_at)
            assert (completion.outcome, completion.provider_ref) == (
                Outcome.APPROVED,
                capture.provider_ref,
            )
            assert completion.payment is not None
            assert (completion.payment.state, completion.payment.captured_fen) == (
                PaymentState.CAPTURED,
                15000,
            )
            refunded = await restarted.refund_query(captured, captured + "R1", sent_at=refund_at)
            assert (refunded.outcome, refunded.refund, refunded.amount_fen) == (
                Outcome.APPROVED,
                RefundState.SUCCESS,
                5000,
            )
            assert refunded.provider_ref == refund.provider_ref
            payment = await restarted.query(captured, sent_at=hold_at[captured])
            assert payment.payment is not None  # the hold with the follow-ups found above
            assert (
                payment.payment.state,
                payment.payment.captured_fen,
                payment.payment.refunded_fen,
            ) == (PaymentState.CAPTURED, 15000, 5000)

            # A wrong time finds nothing, and is not remembered: the right one still works.
            wrong = await restarted.query(
                released, sent_at=hold_at[released] - timedelta(seconds=1)
            )
            assert wrong.payment is not None
            assert wrong.payment.state is PaymentState.NOT_FOUND
            cancel = await restarted.query(released + "L1", sent_at=release_at)
            assert cancel.outcome is Outcome.APPROVED
            assert cancel.payment is not None
            assert cancel.payment.state is PaymentState.CLOSED
            closed = await restarted.query(released, sent_at=hold_at[released])
            assert closed.payment is not None
            assert closed.payment.state is PaymentState.CLOSED
        finally:
            await restarted.aclose()


async def test_a_declined_hold(provider_sim: ProviderSimProcess) -> None:
    async with setup(provider_sim) as s:
        key = _key()
        await s.channel.hold(HoldRequest(key, 5000, "", "", "", _now()))
        await provider_sim.control.acustomer("unionpay", key, "decline")
        received = await s.notify("02", key)
        event = s.channel.verify_callback(received.headers, received.body, _now().timestamp())
        assert (event.succeeded, event.status) == (False, "64")
        status = await s.channel.query(key)
        assert status.payment is not None
        assert status.payment.state is PaymentState.FAILED


async def test_capture_less_than_held_releases_the_rest(provider_sim: ProviderSimProcess) -> None:
    async with setup(provider_sim) as s:
        key = _key()
        hold_ref = await _held(s, key)
        capture = await s.channel.capture(
            CaptureRequest(key, key + "C1", 15000, 20000, _now(), hold_ref)
        )
        assert (capture.outcome, capture.amount_fen) == (Outcome.APPROVED, 15000)
        assert capture.provider_ref and capture.provider_ref != hold_ref
        release = await s.channel.release(ReleaseRequest(key, key + "L1", 5000, 20000, _now()))
        assert (release.outcome, release.amount_fen) == (Outcome.APPROVED, 5000)
        trade = await s.ledger(key)
        assert (trade["state"], trade["captured_fen"], trade["released_fen"]) == (
            "COMPLETED",
            15000,
            5000,
        )
        received = await s.notify("03", key + "C1")
        event = s.channel.verify_callback(received.headers, received.body, _now().timestamp())
        assert (event.kind, event.out_trade_no, event.out_refund_no) == (
            CallbackKind.CAPTURE,
            key,
            key + "C1",
        )
        assert event.amount_fen == 15000
        status = await s.channel.query(key)
        assert status.payment is not None
        assert (status.payment.state, status.payment.captured_fen) == (PaymentState.CAPTURED, 15000)


async def test_capture_without_the_hold_reference(provider_sim: ProviderSimProcess) -> None:
    async with setup(provider_sim) as s:
        key = _key()
        await _held(s, key, 8000)
        capture = await s.channel.capture(CaptureRequest(key, key + "C1", 8000, 8000, _now()))
        assert capture.outcome is Outcome.APPROVED  # the channel asked UnionPay for origQryId
        assert (await s.ledger(key))["captured_fen"] == 8000


async def test_full_release(provider_sim: ProviderSimProcess) -> None:
    async with setup(provider_sim) as s:
        key = _key()
        hold_ref = await _held(s, key)
        release = await s.channel.release(
            ReleaseRequest(key, key + "L1", 20000, 20000, _now(), hold_ref)
        )
        assert (release.outcome, release.amount_fen) == (Outcome.APPROVED, 20000)
        trade = await s.ledger(key)
        assert (trade["state"], trade["released_fen"], trade["captured_fen"]) == (
            "CANCELLED",
            20000,
            0,
        )
        status = await s.channel.query(key)
        assert status.payment is not None
        assert status.payment.state is PaymentState.CLOSED
        again = await s.channel.capture(
            CaptureRequest(key, key + "C1", 100, 20000, _now(), hold_ref)
        )
        assert (again.outcome, again.reason) == (Outcome.DECLINED, "35")


async def test_concurrent_refunds_never_exceed_the_captured_amount(
    provider_sim: ProviderSimProcess,
) -> None:
    async with setup(provider_sim) as s:
        key = _key()
        hold_ref = await _held(s, key)
        capture = await s.channel.capture(
            CaptureRequest(key, key + "C1", 10000, 20000, _now(), hold_ref)
        )
        assert capture.outcome is Outcome.APPROVED
        results = []

        async def refund(n: int) -> None:
            request = RefundRequest(key, f"{key}R{n}", 4000, 10000, "price", _now())
            results.append(await s.channel.refund(request))

        async with trio.open_nursery() as nursery:
            for n in range(1, 4):
                nursery.start_soon(refund, n)
        outcomes = sorted(r.outcome.value for r in results)
        assert outcomes == ["approved", "approved", "declined"]
        (declined,) = [r for r in results if r.outcome is Outcome.DECLINED]
        assert declined.reason == "33"
        trade = await s.ledger(key)
        assert trade["refunded_fen"] == 8000 <= trade["captured_fen"]
        assert sum(r["amount_fen"] for r in trade["refunds"].values()) == 8000
        approved = next(r for r in results if r.outcome is Outcome.APPROVED)
        queried = await s.channel.refund_query(key, approved.key)
        assert (queried.refund, queried.amount_fen) == (RefundState.SUCCESS, 4000)
        missing = await s.channel.refund_query(key, declined.key)
        assert missing.refund is RefundState.NOT_FOUND


async def test_an_unknown_outcome_is_resolved_by_query(provider_sim: ProviderSimProcess) -> None:
    control = provider_sim.control
    async with setup(provider_sim, read_timeout_s=0.5) as s:
        key = _key()
        hold_ref = await _held(s, key)
        await control.aset_faults("unionpay", timeout_rate=1.0, timeout_hold_s=2.0)
        request = CaptureRequest(key, key + "C1", 12000, 20000, _now(), hold_ref)
        try:
            capture = await s.channel.capture(request)
        finally:
            await control.aset_faults("unionpay")
        assert (capture.outcome, capture.reason) == (Outcome.UNKNOWN, "timeout")
        status = await s.channel.query(key)  # UnionPay did it: the query says so
        assert status.payment is not None
        assert (status.payment.state, status.payment.captured_fen) == (
            PaymentState.CAPTURED,
            12000,
        )
        resent = await s.channel.capture(request)  # the same request again: "12", then a query
        assert (resent.outcome, resent.amount_fen) == (Outcome.APPROVED, 12000)
        assert (await s.ledger(key))["captured_fen"] == 12000


async def test_server_errors_are_unknown(provider_sim: ProviderSimProcess) -> None:
    control = provider_sim.control
    async with setup(provider_sim) as s:
        key = _key()
        await control.aset_faults("unionpay", error_rate=1.0)
        try:
            hold = await s.channel.hold(HoldRequest(key, 100, "", "", "", _now()))
        finally:
            await control.aset_faults("unionpay")
        assert (hold.outcome, hold.reason) == (Outcome.UNKNOWN, "http_500")
        status = await s.channel.query(key)
        assert status.payment is not None
        assert status.payment.state is PaymentState.NOT_FOUND  # refused before it was handled


async def test_the_simulator_checks_the_merchant_signature(
    provider_sim: ProviderSimProcess,
) -> None:
    async with setup(provider_sim) as s:
        creds = MerchantCredentials.load(provider_sim.keys / "unionpay" / s.mer_id)
        acp = build_query(mer_id=s.mer_id, txn_time="20261120101500", order_id="FS20261120000001")
        fields = signed({**acp.fields, "certId": creds.cert_id}, creds.private_key)
        fields["orderId"] = "FS20261120000002"  # changed after signing
        async with httpx.AsyncClient(base_url=provider_sim.url("unionpay")) as client:
            reply = await client.post(acp.path, content=encode_form(fields))
        answer = decode_form(reply.content)
        assert (reply.status_code, answer["respCode"]) == (200, "11")
        assert answer["signPubKeyCert"].startswith("-----BEGIN CERTIFICATE-----")


async def test_certificate_rotation(provider_sim: ProviderSimProcess) -> None:
    async with setup(provider_sim) as s:
        key = _key()
        before = await s.channel.hold(HoldRequest(key, 300, "", "", "", _now()))
        assert before.outcome is Outcome.PENDING
        rotated = await provider_sim.control.arotate_keys("unionpay")
        assert rotated["signing_cert_id"] != rotated["retired_cert_id"]
        await provider_sim.control.acustomer("unionpay", key, "pay")
        received = await s.notify("02", key)
        fields = decode_form(received.body)
        assert "-----BEGIN CERTIFICATE-----" in fields["signPubKeyCert"]
        event = s.channel.verify_callback(received.headers, received.body, _now().timestamp())
        assert event.succeeded  # the new certificate chains to the same root
        status = await s.channel.query(key)  # and replies signed with it verify too
        assert status.payment is not None
        assert status.payment.state is PaymentState.HELD


async def test_notifies_follow_unionpays_schedule(provider_sim: ProviderSimProcess) -> None:
    control = provider_sim.control
    async with setup(provider_sim) as s:
        s.receiver.answer = lambda request: (503, b"busy")
        key = _key()
        await s.channel.hold(HoldRequest(key, 700, "", "", "", _now()))
        await control.acustomer("unionpay", key, "pay")
        status = await s.channel.query(key)
        assert status.provider_ref
        event_key = status.provider_ref
        records = await control.await_callbacks(
            lambda rs: len(rs) >= 1, provider="unionpay", event_key=event_key
        )
        for sends in range(2, 6):  # each retry goes out once the clock passes its delay
            await control.aadvance(301)
            records = await control.await_callbacks(
                partial(_at_least, sends), provider="unionpay", event_key=event_key
            )
        assert [r["attempt"] for r in records] == [1, 2, 3, 4, 5]  # five sends in all
        assert all(r["status"] == 503 and not r["accepted"] for r in records)
        gaps = [b["sim_time"] - a["sim_time"] for a, b in itertools.pairwise(records)]
        assert [g >= want for g, want in zip(gaps, (60, 120, 240, 300), strict=True)] == [True] * 4


def _at_least(count: int, records: list[dict[str, Any]]) -> bool:
    return len(records) >= count


async def test_file_download_agrees_with_the_ledger(provider_sim: ProviderSimProcess) -> None:
    """Last: it moves the simulated clock past the end of today's clearing day."""
    async with setup(provider_sim) as s:
        key = _key()
        hold_ref = await _held(s, key)
        await s.channel.capture(CaptureRequest(key, key + "C1", 12345, 20000, _now(), hold_ref))
        await s.channel.refund(RefundRequest(key, key + "R1", 2345, 12345, "x", _now()))
        trades = await provider_sim.control.aledger("unionpay", s.mer_id)

        def day(t: float) -> date:
            return (datetime.fromtimestamp(t, BEIJING) + timedelta(hours=1)).date()

        expected = set()
        for trade in trades:
            if trade["captured_fen"]:
                fee = trade["fee_mfen"]
                expected.add(("payment", trade["out_trade_no"], None, trade["captured_fen"], fee))
            for refund in trade["refunds"].values():
                refund_no, amount, fee = (
                    refund["out_refund_no"],
                    refund["amount_fen"],
                    refund["fee_mfen"],
                )
                expected.add(("refund", trade["out_trade_no"], refund_no, -amount, -fee))
        days = {day(t["finished_at"]) for t in trades if t["captured_fen"]}
        days |= {day(r["accepted_at"]) for t in trades for r in t["refunds"].values()}
        await provider_sim.control.aadvance(86400 + 3600)
        rows: list[BillRow] = []
        for clearing_day in sorted(days):
            bill = await s.channel.bill(clearing_day)
            assert bill.bill_date == clearing_day
            rows.extend(bill.rows)
        found = {
            (r.kind.value, r.out_trade_no, r.out_refund_no, r.amount_fen, r.fee_mfen) for r in rows
        }
        assert found == expected
        assert len(rows) == len(expected)
        mine = [r for r in rows if r.out_trade_no == key]
        assert {(r.kind, r.amount_fen, r.fee_mfen) for r in mine} == {
            (BillKind.PAYMENT, 12345, 74000),  # 0.60 % of 123.45 = 0.7407 → 0.74 yuan
            (BillKind.REFUND, -2345, -14000),  # 0.60 % of 23.45 = 0.1407 → 0.14 yuan back
        }
        assert all(r.merchant_id == s.mer_id for r in rows)
