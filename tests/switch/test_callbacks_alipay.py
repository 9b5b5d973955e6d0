"""Alipay callback cases 19-25 (specs/callback-cases.md) against the switch's HTTP endpoint.

The switch runs on a real socket with a real database (tests/switch/callback_harness.py) and
verifies with an ``AlipayChannel`` configured from the provider simulator's keys. Notifies are
built with the simulator's own code (``channels.sim.alipay_notify``, signed with the simulator's
Alipay key) and, where it can, python-alipay-sdk signing as Alipay; each bad one is a good one
broken in one respect. Case 25 uses the simulator process itself, whose notify reaches the
switch as it would in production and is retried on Alipay's schedule.

"Reject" means: a 200 answer whose body is not ``success`` (Alipay retries anything else), the
attempt unchanged, no inbox row, and the rejection counted under its reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay import AlipayChannel, encode_form, load_provider, sign_notify
from channels.alipay.requests import CHINA
from channels.config import ChannelConfig
from channels.model import CaptureRequest, HoldRequest, Outcome, Provider, RefundRequest
from channels.sim.alipay_notify import fund_auth_fields, notify_send, trade_sync_fields
from switch.store import Store
from switch.store.payments import advance_attempt
from tests.channels.provider_sim import ControlClient, ProviderSimProcess
from tests.switch.callback_harness import (
    CallbackServer,
    alerts,
    attempt_row,
    attempt_state,
    callback_server,
    create_attempt,
    create_order_with_hold,
    inbox_rows,
    order_money,
    set_order_money,
    unique_key,
)

ALIPAY = Provider.ALIPAY
CHANNEL = "alipay-main"
AMOUNT = 30000


@pytest.fixture(scope="module")
def sim() -> Iterator[ProviderSimProcess]:
    """The provider simulators: Alipay's keys, and Alipay itself for case 25."""
    with ProviderSimProcess() as process:
        yield process


@dataclass(frozen=True, slots=True)
class AlipaySide:
    """What the simulator holds: the merchant's ids and Alipay's signing key."""

    seller_id: str
    app_id: str
    keys_dir: Path
    key: rsa.RSAPrivateKey

    def config(self, base_url: str = "http://127.0.0.1:9", notify_url: str = "") -> ChannelConfig:
        return ChannelConfig(
            name=CHANNEL,
            provider=ALIPAY,
            base_url=base_url,
            merchant_id=self.seller_id,
            app_id=self.app_id,
            keys_dir=self.keys_dir,
            notify_url=notify_url or "http://127.0.0.1:9/callbacks/alipay",
        )

    def trade(self, key: str, status: str = "TRADE_SUCCESS", **overrides: Any) -> dict[str, str]:
        """A trade_status_sync for ``key`` as the simulator sends it (unsigned)."""
        now = _stamp()
        fields = trade_sync_fields(
            app_id=self.app_id,
            seller_id=self.seller_id,
            notify_id=unique_key("N"),
            trade_no=f"2026112022001{key[-15:]}",
            out_trade_no=key,
            trade_status=status,
            total_fen=overrides.pop("total_fen", AMOUNT),
            receipt_fen=AMOUNT if status != "WAIT_BUYER_PAY" else 0,
            subject="92#汽油 300元",
            buyer_id="2088102177846880",
            buyer_logon_id="z***@example.com",
            gmt_create=now,
            gmt_payment=now if status != "WAIT_BUYER_PAY" else "",
            refund_fee_fen=overrides.pop("refund_fee_fen", 0),
            out_biz_no=overrides.pop("out_biz_no", ""),
            gmt_refund=now,
            charset=overrides.pop("charset", "utf-8"),
        )
        fields.update({k: str(v) for k, v in overrides.items()})
        return fields

    def freeze(self, key: str, amount_fen: int = AMOUNT, **overrides: str) -> dict[str, str]:
        now = _stamp()
        fields = fund_auth_fields(
            notify_type="fund_auth_freeze",
            app_id=self.app_id,
            seller_id=self.seller_id,
            notify_id=unique_key("N"),
            auth_no=f"2026112010002001{key[-12:]}",
            out_order_no=key,
            operation_id=f"20261120100020{key[-12:]}",
            out_request_no=key,
            amount_fen=amount_fen,
            status="SUCCESS",
            total_freeze_fen=amount_fen,
            total_unfreeze_fen=0,
            total_pay_fen=0,
            rest_fen=amount_fen,
            payer_user_id="2088102177846880",
            gmt_create=now,
            gmt_trans=now,
        )
        fields.update(overrides)
        return fields

    def unfreeze_rest(self, key: str, amount_fen: int, captured_fen: int) -> dict[str, str]:
        """The unfreeze Alipay makes by itself when a capture completes the hold: it names the
        hold (out_order_no, auth_no) and no request of ours (out_request_no empty)."""
        now = _stamp()
        return fund_auth_fields(
            notify_type="fund_auth_unfreeze",
            app_id=self.app_id,
            seller_id=self.seller_id,
            notify_id=unique_key("N"),
            auth_no=f"2026112010002001{key[-12:]}",
            out_order_no=key,
            operation_id=f"20261120100021{key[-12:]}",
            out_request_no="",
            amount_fen=amount_fen,
            status="SUCCESS",
            total_freeze_fen=amount_fen + captured_fen,
            total_unfreeze_fen=amount_fen,
            total_pay_fen=captured_fen,
            rest_fen=0,
            payer_user_id="2088102177846880",
            gmt_create=now,
            gmt_trans=now,
        )

    def send(self, fields: dict[str, str]) -> tuple[dict[str, str], bytes]:
        """Signed and encoded exactly as the simulator sends a notify."""
        return notify_send(fields, self.key, _stamp())

    def signed(self, fields: dict[str, str]) -> dict[str, str]:
        """The field set with notify_time, sign_type and sign, to break after signing."""
        return sign_notify({"notify_time": _stamp(), **fields}, self.key, fields["charset"])


def _stamp() -> str:
    return datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")


FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="module")
def side(sim: ProviderSimProcess) -> AlipaySide:
    (merchant,) = sim.control.material()["alipay"]["merchants"]
    return AlipaySide(
        seller_id=merchant["merchant_id"],
        app_id=merchant["app_id"],
        keys_dir=Path(merchant["keys_dir"]),
        key=load_provider(sim.keys).alipay_private_key,
    )


@asynccontextmanager
async def switch(store: Store, side: AlipaySide) -> AsyncIterator[CallbackServer]:
    config = side.config()
    verifier = AlipayChannel.from_config(config)
    try:
        async with callback_server(store, [verifier], configs=[config]) as server:
            yield server
    finally:
        await verifier.aclose()


async def _order(store: Store, amount_fen: int = AMOUNT) -> str:
    key = unique_key("FS")
    await create_order_with_hold(
        store,
        order_id=key,
        channel=CHANNEL,
        provider=ALIPAY,
        out_trade_no=key,
        amount_fen=amount_fen,
    )
    return key


async def _accepted(server: CallbackServer, headers: dict[str, str], body: bytes) -> None:
    response = await server.post(ALIPAY, body, headers)
    assert (response.status_code, response.content) == (200, b"success")


async def _rejected(
    store: Store,
    server: CallbackServer,
    key: str,
    headers: dict[str, str],
    body: bytes,
    reason: str,
) -> None:
    before = server.count(ALIPAY, "rejected", reason)
    response = await server.post(ALIPAY, body, headers)
    assert response.status_code == 200
    assert response.content != b"success"
    assert await attempt_state(store, key) == "requested"
    assert await inbox_rows(store, order_id=key) == []
    assert server.count(ALIPAY, "rejected", reason) == before + 1


def _alipay_sdk(side: AlipaySide, sign_type: str) -> Any:
    """python-alipay-sdk holding Alipay's private key as its signing key: it signs as Alipay."""
    pem = side.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = side.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return AliPay(
        appid=side.app_id,
        app_notify_url=None,
        app_private_key_string=pem,
        alipay_public_key_string=public.decode(),
        sign_type=sign_type,
    )


# --- case 19 ---------------------------------------------------------------------------------


async def test_case19_missing_sign_or_sign_type_and_sha1_are_rejected(
    store: Store, side: AlipaySide
) -> None:
    key = await _order(store)
    async with switch(store, side) as server:
        for drop in ("sign", "sign_type"):
            fields = side.signed(side.trade(key))
            del fields[drop]
            await _rejected(store, server, key, FORM, encode_form(fields), "missing_field")
        # a valid SHA-1 ("RSA") signature by Alipay's key, from the SDK: a downgrade
        unsigned = {"notify_time": _stamp(), **side.trade(key)}
        sha1 = _alipay_sdk(side, "RSA").sign_data(dict(unsigned)).encode() + b"&sign_type=RSA"
        await _rejected(store, server, key, FORM, sha1, "signature_type")
        # the same SHA-1 signature relabelled RSA2 does not verify either
        relabelled = sha1.replace(b"sign_type=RSA", b"sign_type=RSA2")
        await _rejected(store, server, key, FORM, relabelled, "bad_signature")
        headers, good = side.send(side.trade(key))
        await _accepted(server, headers, good)
    assert await attempt_state(store, key) == "approved"


# --- case 20 ---------------------------------------------------------------------------------


async def test_case20_fields_changed_after_signing_are_rejected(
    store: Store, side: AlipaySide
) -> None:
    key = await _order(store)
    other = await _order(store)
    changes = {
        "total_amount": "3.00",
        "trade_status": "TRADE_FINISHED",
        "out_trade_no": other,
        "seller_id": "2088999999999999",
    }
    async with switch(store, side) as server:
        for name, value in changes.items():
            fields = side.signed(side.trade(key))
            fields[name] = value
            await _rejected(store, server, key, FORM, encode_form(fields), "bad_signature")
    assert await attempt_state(store, other) == "requested"
    assert await inbox_rows(store, order_id=other) == []


# --- case 21 ---------------------------------------------------------------------------------


async def test_case21_injected_or_duplicated_fields_are_rejected(
    store: Store, side: AlipaySide
) -> None:
    key = await _order(store)
    async with switch(store, side) as server:
        injected = side.signed(side.trade(key))
        injected["refund_fee"] = "300.00"
        await _rejected(store, server, key, FORM, encode_form(injected), "bad_signature")
        headers, body = side.send(side.trade(key))
        for duplicate in (b"&trade_status=TRADE_SUCCESS", b"&total_amount=3.00"):
            await _rejected(store, server, key, headers, body + duplicate, "duplicate_field")
        await _accepted(server, headers, body)  # the same notify, unbroken
    assert await attempt_state(store, key) == "approved"


# --- case 22 ---------------------------------------------------------------------------------


async def test_case22_escapes_html_entities_and_gbk_are_verified(
    store: Store, side: AlipaySide
) -> None:
    escaped, gbk, sdk_signed = await _order(store), await _order(store), await _order(store)
    async with switch(store, side) as server:
        # '+', '/' and '=' in sign (percent-encoded in the form), '&quot;' in fund_bill_list
        while True:
            fields = side.signed(side.trade(escaped))
            if {"+", "/"} <= set(fields["sign"]):
                break
        body = encode_form(fields)
        assert b"%2B" in body and b"%2F" in body and b"%3D" in body
        assert "&quot;" in fields["fund_bill_list"]
        await _accepted(server, FORM, body)
        # a GBK notify: the charset field names it, the signature is over GBK bytes
        headers, body = side.send(side.trade(gbk, charset="gbk", subject="95#汽油 一号站"))
        assert "汽油".encode("gbk") not in body and b"%C6%FB%D3%CD" in body
        await _accepted(server, headers, body)
        # the SDK, holding Alipay's key, signs the notify (sign_type added after signing)
        unsigned = {"notify_time": _stamp(), **side.trade(sdk_signed)}
        body = _alipay_sdk(side, "RSA2").sign_data(unsigned).encode() + b"&sign_type=RSA2"
        await _accepted(server, FORM, body)
    for key in (escaped, gbk, sdk_signed):
        assert await attempt_state(store, key) == "approved"
        (row,) = await inbox_rows(store, order_id=key)
        assert row["status"] == "TRADE_SUCCESS"


# --- case 23 ---------------------------------------------------------------------------------


async def test_case23_old_notifies_never_move_an_order_back(store: Store, side: AlipaySide) -> None:
    key = await _order(store)
    async with switch(store, side) as server:
        waiting = side.send(side.trade(key, "WAIT_BUYER_PAY"))
        await _accepted(server, *waiting)
        assert await attempt_state(store, key) == "pending"
        await _accepted(server, *side.send(side.trade(key)))
        assert await attempt_state(store, key) == "approved"
        await _accepted(server, *waiting)  # the same old notify, delivered again
        await _accepted(server, *side.send(side.trade(key, "WAIT_BUYER_PAY")))  # a late one
        assert server.count(ALIPAY, "duplicate", "duplicate") == 1
        assert server.count(ALIPAY, "ignored", "ignored") == 1
    assert await attempt_state(store, key) == "approved"
    assert (await order_money(store, key))["held_fen"] == AMOUNT


async def test_case23_nothing_after_trade_closed_changes_the_order(
    store: Store, side: AlipaySide
) -> None:
    closed, refunded = await _order(store), await _order(store)
    async with switch(store, side) as server:
        # closed unpaid: a WAIT_BUYER_PAY or TRADE_SUCCESS arriving later changes nothing
        await _accepted(server, *side.send(side.trade(closed, "TRADE_CLOSED")))
        assert await attempt_state(store, closed) == "reversed"
        for status in ("WAIT_BUYER_PAY", "TRADE_SUCCESS"):
            await _accepted(server, *side.send(side.trade(closed, status)))
        assert await attempt_state(store, closed) == "reversed"
        assert await alerts(store, subject=closed) == []

        # paid, then refunded in full (TRADE_CLOSED with refund_fee): the old TRADE_SUCCESS
        # arriving again changes nothing either
        paid = side.send(side.trade(refunded))
        await _accepted(server, *paid)
        await set_order_money(store, refunded, captured_fen=AMOUNT)
        refund_key = f"{refunded}R1"
        await create_attempt(
            store, order_id=refunded, operation="refund", key=refund_key, amount_fen=AMOUNT
        )
        full_refund = side.trade(
            refunded, "TRADE_CLOSED", refund_fee_fen=AMOUNT, out_biz_no=refund_key
        )
        await _accepted(server, *side.send(full_refund))
        assert await attempt_state(store, refund_key) == "approved"
        money = await order_money(store, refunded)
        await _accepted(server, *paid)
        await _accepted(server, *side.send(side.trade(refunded)))
        await _accepted(server, *side.send(side.trade(refunded, "WAIT_BUYER_PAY")))
    assert await attempt_state(store, refunded) == "approved"
    assert await attempt_state(store, refund_key) == "approved"
    assert await order_money(store, refunded) == money
    assert money["refunded_fen"] == AMOUNT


# --- case 24 ---------------------------------------------------------------------------------


async def test_case24_bad_freeze_notifies_are_rejected_and_alerted(
    store: Store, side: AlipaySide
) -> None:
    key = await _order(store)
    stranger = unique_key("FS")  # an out_order_no (and auth_no) the switch never asked for
    async with switch(store, side) as server:
        headers, body = side.send(side.freeze(key, AMOUNT + 1))
        await _rejected(store, server, key, headers, body, "amount_mismatch")
        assert [a.details["reason"] for a in await alerts(store, subject=key)] == [
            "amount_mismatch"
        ]
        headers, body = side.send(side.freeze(key, status="CLOSED"))
        await _rejected(store, server, key, headers, body, "bad_status")
        assert any(
            a.details["reason"] == "bad_status" for a in await alerts(store, subject="alipay")
        )
        headers, body = side.send(side.freeze(stranger))
        response = await server.post(ALIPAY, body, headers)
        assert response.content != b"success"
        assert server.count(ALIPAY, "rejected", "unknown_order") == 1
        assert [a.details["reason"] for a in await alerts(store, subject=stranger)] == [
            "unknown_order"
        ]
        await _accepted(server, *side.send(side.freeze(key)))  # the right one is applied
    assert await attempt_state(store, key) == "approved"
    assert (await order_money(store, key))["held_fen"] == AMOUNT


async def test_case24_freeze_naming_our_hold_with_another_auth_no(
    store: Store, side: AlipaySide
) -> None:
    """Once the freeze response recorded the hold's auth_no, a freeze notify for our
    out_order_no with another auth_no is about a hold that is not ours: reject and alert."""
    key = await _order(store)
    auth_no = side.freeze(key)["auth_no"]
    recorded = await advance_attempt(store.db, key, "pending", provider_ref=auth_no)
    assert recorded.changed
    async with switch(store, side) as server:
        foreign = side.send(side.freeze(key, auth_no="2026112010002001999999999999"))
        response = await server.post(ALIPAY, foreign[1], foreign[0])
        assert (response.status_code, response.content) == (200, b"fail")
        assert server.count(ALIPAY, "rejected", "provider_ref_mismatch") == 1
        assert await attempt_state(store, key) == "pending"
        assert await inbox_rows(store, order_id=key) == []
        [alert] = await alerts(store, subject=key)
        assert (alert.kind, alert.details["reason"]) == (
            "callback_rejected",
            "provider_ref_mismatch",
        )
        await _accepted(server, *side.send(side.freeze(key)))
    row = await attempt_row(store, key)
    assert row is not None and (row["state"], row["provider_ref"]) == ("approved", auth_no)


async def test_case15_freeze_notify_before_the_response_records_the_auth_no(
    store: Store, side: AlipaySide
) -> None:
    key = await _order(store)
    async with switch(store, side) as server:
        notify = side.freeze(key)
        await _accepted(server, *side.send(notify))
    row = await attempt_row(store, key)
    assert row is not None and (row["state"], row["provider_ref"]) == (
        "approved",
        notify["auth_no"],
    )
    late = await advance_attempt(store.db, key, "pending", provider_ref=notify["auth_no"])
    assert (late.state, late.changed) == ("approved", False)
    assert await alerts(store, subject=key) == []


# --- the rest of a pre-authorization, unfrozen by Alipay ----------------------------------------


async def test_the_rest_unfrozen_after_a_completing_capture_is_acknowledged(
    store: Store, side: AlipaySide
) -> None:
    """trade.pay with auth_confirm_mode COMPLETE makes Alipay unfreeze the rest by itself, with
    no request number of ours; the order journaled no release for it. The notify confirms what
    the capture implied: recorded against the capture, no alert, no 25 hours of retries."""
    key = await _order(store)
    captured, rest = 21000, AMOUNT - 21000
    async with switch(store, side) as server:
        await _accepted(server, *side.send(side.freeze(key)))
        capture = await create_attempt(
            store,
            order_id=key,
            operation="capture",
            key=f"{key}S",
            amount_fen=captured,
            state="approved",
        )
        await set_order_money(store, key, captured_fen=captured)
        unfrozen = side.send(side.unfreeze_rest(key, rest, captured))
        await _accepted(server, *unfrozen)
        await _accepted(server, *unfrozen)  # Alipay sending it again: the same notify_id
        assert server.count(ALIPAY, "accepted", "applied") == 2
        assert server.count(ALIPAY, "duplicate", "duplicate") == 1
        assert server.applied[-1].outcome.attempt_id == capture

        # an unfreeze for an order with neither a capture nor a release is still unknown
        other = await _order(store)
        await _accepted(server, *side.send(side.freeze(other)))
        headers, body = side.send(side.unfreeze_rest(other, AMOUNT, 0))
        response = await server.post(ALIPAY, body, headers)
        assert response.content == b"fail"
        assert server.count(ALIPAY, "rejected", "unknown_attempt") == 1
    assert await order_money(store, key) == {
        "held_fen": AMOUNT,
        "captured_fen": captured,
        "released_fen": rest,
        "refunded_fen": 0,
    }
    assert await attempt_state(store, f"{key}S") == "approved"
    states = [(r["state"], r["attempt_id"]) for r in await inbox_rows(store, order_id=key)]
    assert states == [("applied", f"{key}-1"), ("applied", capture)]
    assert await alerts(store, subject=key) == []
    assert [a.details["reason"] for a in await alerts(store, subject=other)] == ["unknown_attempt"]
    assert (await order_money(store, other))["released_fen"] == 0


# --- refunds: refund_fee is the trade's running total ---------------------------------------


def _sends(records: list[dict[str, Any]], url: str) -> list[dict[str, Any]]:
    return [r for r in records if r["url"] == url and r["status"] is not None]


async def _await_sends(control: ControlClient, url: str, count: int) -> list[dict[str, Any]]:
    records = await control.await_callbacks(
        lambda rs: len(_sends(rs, url)) >= count, provider="alipay"
    )
    return _sends(records, url)


async def test_partial_refunds_notified_by_the_simulator_are_applied(
    store: Store, side: AlipaySide, sim: ProviderSimProcess
) -> None:
    """The simulator freezes, captures and refunds twice, and notifies the switch as Alipay
    does: each refund notify's refund_fee is the trade's refunded total (100.00, then 150.00),
    which the switch checks against the refunds on its books."""
    key = await _order(store)
    control = sim.control
    refunds = ((f"{key}R1", 10000), (f"{key}R2", 5000))
    async with switch(store, side) as server:
        url = f"{server.url}/callbacks/alipay"
        client = AlipayChannel.from_config(side.config(sim.url("alipay"), url))
        try:
            now = datetime.now(CHINA)
            hold = await client.hold(
                HoldRequest(key, AMOUNT, "92#汽油", "", url, now, now + timedelta(minutes=5))
            )
            assert hold.outcome is Outcome.PENDING
            await control.acustomer("alipay", key, "pay")
            assert [r["accepted"] for r in await _await_sends(control, url, 1)] == [True]
            # the order layer captures all of it (nothing is left to unfreeze) and records it
            sale = f"{key}S"
            await create_attempt(
                store, order_id=key, operation="capture", key=sale, amount_fen=AMOUNT
            )
            paid = await client.capture(
                CaptureRequest(key, sale, AMOUNT, AMOUNT, now, provider_ref=hold.provider_ref)
            )
            assert paid.outcome is Outcome.APPROVED and paid.provider_ref is not None
            await advance_attempt(store.db, sale, "approved", provider_ref=paid.provider_ref)
            await set_order_money(store, key, captured_fen=AMOUNT)
            await _await_sends(control, url, 2)  # the trade's TRADE_SUCCESS
            for sent, (refund_key, amount) in enumerate(refunds, start=3):
                await create_attempt(
                    store, order_id=key, operation="refund", key=refund_key, amount_fen=amount
                )
                done = await client.refund(
                    RefundRequest(key, refund_key, amount, AMOUNT, "退款", now)
                )
                assert done.outcome is Outcome.APPROVED
                await _await_sends(control, url, sent)
        finally:
            await client.aclose()
        records = await _await_sends(control, url, 4)
        assert [r["accepted"] for r in records] == [True] * 4
        assert server.count(ALIPAY, "accepted", "applied") == 3  # the freeze, the two refunds

        # the first refund's figure in a later notify: older than the books, changes nothing
        money = await order_money(store, key)
        old = side.trade(key, refund_fee_fen=10000, out_biz_no=refunds[0][0])
        await _accepted(server, *side.send({**old, "trade_no": paid.provider_ref}))
        assert server.count(ALIPAY, "ignored", "ignored") == 2  # with the trade's own notify
    for refund_key, _ in refunds:
        row = await attempt_row(store, refund_key)
        assert row is not None
        assert (row["state"], row["provider_ref"]) == ("approved", paid.provider_ref)
    assert await order_money(store, key) == money
    assert money["refunded_fen"] == 15000
    totals = [
        r["body"] for r in await inbox_rows(store, order_id=key) if b"refund_fee" in r["body"]
    ]
    assert [b"refund_fee=100.00" in t for t in totals] == [True, False, True]
    assert [b"refund_fee=150.00" in t for t in totals] == [False, True, False]
    assert await alerts(store, subject=key) == []


# --- a partial capture: its trade is notified under the hold's key ---------------------------


def _sent_keys(records: list[dict[str, Any]], url: str) -> set[str]:
    return {r["event_key"] for r in _sends(records, url)}


def _accepted_keys(records: list[dict[str, Any]], url: str) -> set[str]:
    return {r["event_key"] for r in _sends(records, url) if r["accepted"]}


async def test_a_partial_capture_notified_by_the_simulator_moves_the_capture(
    store: Store, side: AlipaySide, sim: ProviderSimProcess
) -> None:
    """The simulator freezes 300.00 and the switch captures 210.00 through AlipayChannel
    (trade.pay with the auth_no, COMPLETE): Alipay notifies the capture's trade with the hold's
    key as out_trade_no and total_amount 210.00, and unfreezes the other 90.00 by itself. The
    trade's notify is the journaled capture's: it approves it, acknowledged at once with
    ``success`` and no alert (not an amount mismatch retried for 25 hours); the unfreeze is
    recorded against the capture."""
    key = await _order(store)
    control = sim.control
    captured, rest = 21000, AMOUNT - 21000
    sale = f"{key}S"
    async with switch(store, side) as server:
        url = f"{server.url}/callbacks/alipay"
        client = AlipayChannel.from_config(side.config(sim.url("alipay"), url))
        try:
            now = datetime.now(CHINA)
            hold = await client.hold(
                HoldRequest(key, AMOUNT, "92#汽油", "", url, now, now + timedelta(minutes=5))
            )
            assert hold.outcome is Outcome.PENDING
            await control.acustomer("alipay", key, "pay")
            (frozen,) = await _await_sends(control, url, 1)
            assert frozen["accepted"] and await attempt_state(store, key) == "approved"
            # the order layer journals the capture before calling Alipay, and leaves it there:
            # the notify, not the response, is what moves it in this test
            capture = await create_attempt(
                store, order_id=key, operation="capture", key=sale, amount_fen=captured
            )
            paid = await client.capture(
                CaptureRequest(key, sale, captured, AMOUNT, now, provider_ref=hold.provider_ref)
            )
            assert paid.outcome is Outcome.APPROVED and paid.provider_ref is not None
            assert paid.amount_fen == captured
        finally:
            await client.aclose()
        # the trade's notify and the unfreeze's are sent together, in either order
        records = await control.await_callbacks(
            lambda rs: len(_sent_keys(rs, url)) >= 3, provider="alipay"
        )
        trade_rows = [
            r
            for r in await inbox_rows(store, order_id=key)
            if b"notify_type=trade_status_sync" in r["body"]
        ]
        assert [(r["state"], r["attempt_id"]) for r in trade_rows] == [("applied", capture)]
        trade_sends = [
            r for r in _sends(records, url) if r["event_key"] == trade_rows[0]["event_id"]
        ]
        assert [(r["attempt"], r["accepted"]) for r in trade_sends] == [(1, True)]
        row = await attempt_row(store, sale)
        assert row is not None
        assert (row["state"], row["provider_ref"], row["reason"]) == (
            "approved",
            paid.provider_ref,
            "callback:TRADE_SUCCESS",
        )
        assert server.count(ALIPAY, "rejected", "amount_mismatch") == 0

        # the unfreeze refused while the capture was still in flight lands on Alipay's retry
        if _accepted_keys(records, url) != _sent_keys(records, url):
            assert server.count(ALIPAY, "rejected", "out_of_order") == 1
            await control.aadvance(240.0)
            records = await control.await_callbacks(
                lambda rs: _accepted_keys(rs, url) == _sent_keys(rs, url), provider="alipay"
            )
        assert len(_accepted_keys(records, url)) == 3
        assert server.count(ALIPAY, "accepted", "applied") == 3
    assert await order_money(store, key) == {
        "held_fen": AMOUNT,
        "captured_fen": captured,
        "released_fen": rest,
        "refunded_fen": 0,
    }
    assert await attempt_state(store, key) == "approved"
    assert await attempt_state(store, sale) == "approved"
    inbox = await inbox_rows(store, order_id=key)
    assert sorted((r["state"], r["attempt_id"]) for r in inbox) == sorted(
        [("applied", f"{key}-1"), ("applied", capture), ("applied", capture)]
    )
    (unfrozen,) = [r for r in inbox if b"notify_type=fund_auth_unfreeze" in r["body"]]
    assert parse_qs(unfrozen["body"].decode(), keep_blank_values=True)["out_request_no"] == [""]
    assert await alerts(store, subject=key) == []


# --- case 25 ---------------------------------------------------------------------------------


def _fail_commit_sql(key: str) -> str:
    """A deferred trigger that refuses, at COMMIT, the inbox row of any notify about ``key``."""
    return f"""
CREATE OR REPLACE FUNCTION test_fail_{key.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF position(convert_to('{key}', 'UTF8') in NEW.body) > 0 THEN
        RAISE EXCEPTION 'commit refused for the test' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER test_fail_{key.lower()} AFTER INSERT ON callback_inbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_{key.lower()}();
"""


async def test_case25_success_only_after_commit_and_alipay_retries(
    store: Store, side: AlipaySide, sim: ProviderSimProcess
) -> None:
    """The simulator's own freeze notify reaches the switch while its commit fails: Alipay must
    see a failure (not ``success``) and deliver again on its schedule, with the same notify_id,
    and the second delivery must apply."""
    key = await _order(store)
    control = sim.control
    await store.db.execute(_fail_commit_sql(key))
    trigger_dropped = False
    try:
        async with switch(store, side) as server:
            url = f"{server.url}/callbacks/alipay"
            client = AlipayChannel.from_config(side.config(sim.url("alipay"), url))
            try:
                now = datetime.now(CHINA)
                hold = HoldRequest(key, AMOUNT, "92#汽油", "", url, now, now + timedelta(minutes=5))
                assert (await client.hold(hold)).outcome is Outcome.PENDING
            finally:
                await client.aclose()
            await control.acustomer("alipay", key, "pay")

            def sends(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [r for r in records if r["url"] == url and r["status"] is not None]

            first = await control.await_callbacks(lambda rs: len(sends(rs)) >= 1, provider="alipay")
            (refused,) = sends(first)
            assert (refused["status"], refused["accepted"]) == (200, False)
            assert server.count(ALIPAY, "error", "store_error") == 1
            assert await attempt_state(store, key) == "requested"
            assert await inbox_rows(store, order_id=key) == []

            await store.db.execute(f"DROP TRIGGER test_fail_{key.lower()} ON callback_inbox")
            trigger_dropped = True
            await control.aadvance(240.0)  # Alipay's first retry is 4 minutes later
            records = await control.await_callbacks(
                lambda rs: any(r["accepted"] for r in sends(rs)), provider="alipay"
            )
            retried = [r for r in sends(records) if r["accepted"]]
            assert [r["event_key"] for r in retried] == [refused["event_key"]]
            assert retried[0]["attempt"] == 2
    finally:
        if not trigger_dropped:
            await store.db.execute(f"DROP TRIGGER test_fail_{key.lower()} ON callback_inbox")
    assert await attempt_state(store, key) == "approved"
    (row,) = await inbox_rows(store, order_id=key)
    assert row["event_id"] == refused["event_key"]
