"""WeChat Pay callback cases 1-18 (specs/callback-cases.md) against the switch's HTTP endpoint.

The switch runs on a real socket with a real database (tests/switch/callback_harness.py) and
verifies with a ``WeChatPayChannel`` configured from the provider simulator's keys. Callbacks
are built with the simulator's own notification code (channels/sim/wechatpay_notify.py) and
WeChat's key from the simulator's key tree, then broken in one respect each; one good callback
is signed by the wechatpayv3 SDK instead. Cases 15 and 16 use the simulator process itself:
its callbacks reach the switch as they would in production.

"Reject" means: a non-2xx answer in WeChat's format (``{"code":"FAIL","message":reason}``),
the attempt unchanged, no inbox row, and the rejection counted under its reason.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import trio
from wechatpayv3.utils import rsa_sign as sdk_rsa_sign

from channels.config import ChannelConfig
from channels.model import Outcome, Provider, RefundRequest
from channels.wechatpay import SignedHeaders, WeChatPayChannel
from switch.http import BodyLimits
from switch.store import Store
from switch.store.attempts import late_refund_key
from switch.store.payments import advance_attempt
from tests.channels.provider_sim import SAFE, ProviderSimProcess
from tests.channels.wechatpay.interop_support import hold_request
from tests.channels.wechatpay.support import (
    APPID,
    MCHID,
    OTHER_APPID,
    OTHER_MCHID,
    WxWorld,
    world_of,
)
from tests.switch.callback_harness import (
    CallbackServer,
    alerts,
    attempt_row,
    attempt_state,
    callback_server,
    create_attempt,
    create_order_with_hold,
    finish_order,
    inbox_rows,
    order_money,
    set_order_money,
    unique_key,
)

WX = Provider.WECHATPAY
CHANNEL = "wechatpay-main"
AMOUNT = 20000


@pytest.fixture(scope="module")
def sim() -> Iterator[ProviderSimProcess]:
    """The provider simulators with two WeChat merchants: the first is ours, the second
    provides "another merchant's" keys."""
    with ProviderSimProcess("--merchants", "2") as process:
        yield process


@pytest.fixture(scope="module")
def wx(sim: ProviderSimProcess) -> WxWorld:
    return world_of(sim.keys / "wechatpay")


def _config(
    sim: ProviderSimProcess, notify_url: str = "http://127.0.0.1:9/callbacks"
) -> ChannelConfig:
    return ChannelConfig(
        name=CHANNEL,
        provider=WX,
        base_url=sim.url("wechatpay"),
        merchant_id=MCHID,
        app_id=APPID,
        keys_dir=sim.keys / "wechatpay" / MCHID,
        notify_url=notify_url,
    )


@asynccontextmanager
async def switch(store: Store, sim: ProviderSimProcess, **kw: Any) -> AsyncIterator[CallbackServer]:
    verifier = WeChatPayChannel.from_config(_config(sim))
    try:
        async with callback_server(store, [verifier], **kw) as server:
            yield server
    finally:
        await verifier.aclose()


async def _order(store: Store, amount_fen: int = AMOUNT, **kw: Any) -> str:
    key = unique_key("FS")
    await create_order_with_hold(
        store,
        order_id=key,
        channel=CHANNEL,
        provider=WX,
        out_trade_no=key,
        amount_fen=amount_fen,
        **kw,
    )
    return key


def _event_id() -> str:
    return unique_key("EV-")


def _paid(wx: WxWorld, key: str, amount_fen: int = AMOUNT, **overrides: Any) -> bytes:
    """The body of a TRANSACTION.SUCCESS for ``key`` (unsigned)."""
    resource = wx.payment(key, total_fen=amount_fen, payer_total_fen=amount_fen, **overrides)
    return wx.body("TRANSACTION.SUCCESS", resource, event_id=_event_id())


def _signed(wx: WxWorld, body: bytes, **kw: Any) -> dict[str, str]:
    return wx.headers(body, **kw)


async def _accepted(
    server: CallbackServer, store: Store, key: str, headers: dict[str, str], body: bytes
) -> None:
    response = await server.post(WX, body, headers)
    assert (response.status_code, response.content) == (204, b""), response.content
    assert await attempt_state(store, key) == "approved"


async def _rejected(
    server: CallbackServer,
    store: Store,
    key: str,
    headers: dict[str, str],
    body: bytes,
    reason: str,
) -> None:
    before = server.count(WX, "rejected", reason)
    response = await server.post(WX, body, headers)
    assert response.status_code >= 400, response.content
    assert orjson.loads(response.content) == {"code": "FAIL", "message": reason}
    assert server.count(WX, "rejected", reason) == before + 1
    assert await attempt_state(store, key) == "requested"
    assert await inbox_rows(store, provider=WX, order_id=key) == []


async def test_good_callbacks_are_accepted(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    """The baseline every rejection below is a variation of: signed by the simulator's code,
    and once by the wechatpayv3 SDK's signing primitive playing WeChat."""
    key = await _order(store)
    body = _paid(wx, key)
    async with switch(store, sim) as server:
        await _accepted(server, store, key, _signed(wx, body), body)
        assert server.count(WX, "accepted", "applied") == 1
        sdk_key = await _order(store)
        sdk_body = _paid(wx, sdk_key)
        timestamp, nonce = str(int(time.time())), "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
        signature = sdk_rsa_sign(
            wx.signer.private_key, f"{timestamp}\n{nonce}\n{sdk_body.decode()}\n"
        )
        headers = SignedHeaders(wx.signer.serial, signature, timestamp, nonce).as_headers()
        await _accepted(server, store, sdk_key, headers, sdk_body)
    (row,) = await inbox_rows(store, provider=WX, order_id=key)
    assert row["body"] == body  # stored exactly as received
    assert (await order_money(store, key))["held_fen"] == AMOUNT


# -- 1-4: headers, downgrade, tampering, freshness ----------------------------------------------


async def test_case_01_missing_or_empty_headers_and_bad_timestamp(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    async with switch(store, sim) as server:
        for name in ("signature", "timestamp", "nonce", "serial"):
            missing = {k: v for k, v in headers.items() if k != f"wechatpay-{name}"}
            await _rejected(server, store, key, missing, body, "missing_header")
            await _rejected(
                server, store, key, {**headers, f"wechatpay-{name}": ""}, body, "missing_header"
            )
        await _rejected(
            server, store, key, {**headers, "wechatpay-timestamp": "1.7e9"}, body, "bad_timestamp"
        )
        await _accepted(server, store, key, headers, body)  # the same callback, intact


async def test_case_02_no_signature_type_downgrade(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    async with switch(store, sim) as server:
        for kind in ("WECHATPAY2-SHA1-RSA2048", "WECHATPAY2-SM2-WITH-SM3", ""):
            await _rejected(
                server,
                store,
                key,
                {**headers, "wechatpay-signature-type": kind},
                body,
                "signature_type",
            )
        no_type = {k: v for k, v in headers.items() if k != "wechatpay-signature-type"}
        await _rejected(server, store, key, no_type, body, "signature_type")


async def test_case_03_body_changed_after_signing(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    document = orjson.loads(body)
    variants = [
        body.replace(b'"resource_type"', b'"resource_typf"'),  # one byte
        body[:-1] + b" }",  # whitespace
        orjson.dumps(document, option=orjson.OPT_INDENT_2),
        orjson.dumps(dict(sorted(document.items()))),  # key order
    ]
    async with switch(store, sim) as server:
        for variant in variants:
            assert variant != body
            await _rejected(server, store, key, headers, variant, "bad_signature")


async def test_case_04_stale_timestamp(store: Store, sim: ProviderSimProcess, wx: WxWorld) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    async with switch(store, sim) as server:
        stale = _signed(wx, body, timestamp=int(time.time()) - 301)
        await _rejected(server, store, key, stale, body, "stale_timestamp")
        future = _signed(wx, body, timestamp=int(time.time()) + 400)
        await _rejected(server, store, key, future, body, "stale_timestamp")
        await _accepted(
            server, store, key, _signed(wx, body, timestamp=int(time.time()) - 200), body
        )


# -- 5: replay ---------------------------------------------------------------------------------


async def test_case_05_exact_replay_is_acknowledged_once_credited(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    async with switch(store, sim) as server:
        await _accepted(server, store, key, headers, body)
        for _ in range(2):
            again = await server.post(WX, body, headers)
            assert again.status_code == 204
        assert server.count(WX, "accepted", "applied") == 1
        assert server.count(WX, "duplicate", "duplicate") == 2
    assert len(await inbox_rows(store, provider=WX, order_id=key)) == 1
    assert (await order_money(store, key))["held_fen"] == AMOUNT


# -- 6-9: keys, signature encoding, envelope, decryption -----------------------------------------


async def test_case_06_wrong_key_expired_certificate_decimal_serial(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    async with switch(store, sim) as server:
        crossed = {**_signed(wx, body, signer=wx.pub_signer), "wechatpay-serial": wx.signer.serial}
        await _rejected(server, store, key, crossed, body, "bad_signature")
        decimal = {**headers, "wechatpay-serial": str(int(headers["wechatpay-serial"], 16))}
        await _rejected(server, store, key, decimal, body, "unknown_serial")
    # six years on, the platform certificate has expired (and a fresh timestamp is no help)
    later = time.time() + 6 * 365 * 86400
    async with switch(store, sim, clock=lambda: later) as server:
        expired = _signed(wx, body, timestamp=int(later))
        await _rejected(server, store, key, expired, body, "cert_expired")


async def test_case_07_signature_not_base64_or_truncated(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    signature = headers["wechatpay-signature"]
    raw = base64.b64decode(signature)
    async with switch(store, sim) as server:
        for bad in (
            "not-base64!" + signature[11:],
            signature[:-10],
            base64.b64encode(raw[:-16]).decode(),
            signature.replace("=", ""),
        ):
            await _rejected(
                server, store, key, {**headers, "wechatpay-signature": bad}, body, "bad_signature"
            )


async def test_case_08_malformed_envelopes(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    document = orjson.loads(_paid(wx, key))
    resource = document["resource"]
    cases = {
        b'{"id":"EV-1","event_type":"TRANSACTION.SUCCESS",': "bad_json",
        orjson.dumps({k: v for k, v in document.items() if k != "resource"}): "bad_resource",
        orjson.dumps({**document, "resource_type": "plain-resource"}): "bad_resource",
        orjson.dumps(
            {**document, "resource": {**resource, "algorithm": "AEAD_SM4_GCM"}}
        ): "bad_resource",
    }
    async with switch(store, sim) as server:
        for body, reason in cases.items():
            await _rejected(server, store, key, _signed(wx, body), body, reason)


def _flip(ciphertext: str, index: int) -> str:
    raw = bytearray(base64.b64decode(ciphertext))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


async def test_case_09_decryption_failures(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    document = orjson.loads(_paid(wx, key))
    resource = document["resource"]
    variants = [
        {**resource, "ciphertext": _flip(resource["ciphertext"], 5)},  # the ciphertext
        {**resource, "ciphertext": _flip(resource["ciphertext"], -1)},  # the tag
        {**resource, "associated_data": "refund"},
        {**resource, "nonce": resource["nonce"][1:] + resource["nonce"][0]},
    ]
    bodies = [orjson.dumps({**document, "resource": v}) for v in variants]
    bodies.append(wx.body("TRANSACTION.SUCCESS", wx.payment(key), apiv3_key=wx.other.apiv3_key))
    async with switch(store, sim) as server:
        for body in bodies:
            await _rejected(server, store, key, _signed(wx, body), body, "decrypt_failed")


# -- 10-13: business content ----------------------------------------------------------------


async def test_case_10_not_our_merchant_alerts(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    before = len(await alerts(store, subject="wechatpay"))
    async with switch(store, sim) as server:
        for overrides in ({"mchid": OTHER_MCHID}, {"appid": OTHER_APPID}):
            resource = wx.payment(key, total_fen=AMOUNT, payer_total_fen=AMOUNT, **overrides)
            body = wx.body("TRANSACTION.SUCCESS", resource, event_id=_event_id())
            await _rejected(server, store, key, _signed(wx, body), body, "unknown_merchant")
    raised = (await alerts(store, subject="wechatpay"))[before:]
    assert [a.details["reason"] for a in raised] == ["unknown_merchant", "unknown_merchant"]


async def test_case_11_unknown_out_trade_no_rejected_and_alerted(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = unique_key("FS")  # never journaled
    body = _paid(wx, key)
    async with switch(store, sim) as server:
        response = await server.post(WX, body, _signed(wx, body))
        assert response.status_code >= 400  # never 2xx-and-drop: WeChat delivers it again
        assert server.count(WX, "rejected", "unknown_order") == 1
    assert await inbox_rows(store, provider=WX, event_id=orjson.loads(body)["id"]) == []
    assert [a.details["reason"] for a in await alerts(store, subject=key)] == ["unknown_order"]


async def test_case_12_amount_or_currency_differs(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    async with switch(store, sim) as server:
        body = _paid(wx, key, AMOUNT - 1)
        await _rejected(server, store, key, _signed(wx, body), body, "amount_mismatch")
        body = _paid(wx, key, currency="USD")
        await _rejected(server, store, key, _signed(wx, body), body, "bad_amount")
    assert [a.details["reason"] for a in await alerts(store, subject=key)] == ["amount_mismatch"]
    assert any(
        a.details["reason"] == "bad_amount" for a in await alerts(store, subject="wechatpay")
    )


async def test_case_13_event_type_and_resource_disagree(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    async with switch(store, sim) as server:
        for state in ("NOTPAY", "CLOSED", "PAYERROR"):
            body = _paid(wx, key, trade_state=state)
            await _rejected(server, store, key, _signed(wx, body), body, "wrong_event_type")
        refund = wx.refund(out_trade_no=key, refund_fen=AMOUNT, total_fen=AMOUNT)
        for label in ("refund", "transaction"):  # labelled as what it is, or disguised
            body = wx.body(
                "TRANSACTION.SUCCESS",
                refund,
                event_id=_event_id(),
                original_type=label,
                associated_data=label,
            )
            await _rejected(server, store, key, _signed(wx, body), body, "wrong_event_type")


# -- 14-17: concurrency and ordering -----------------------------------------------------------


async def test_case_14_identical_deliveries_at_the_same_moment(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    headers = _signed(wx, body)
    statuses: list[int] = []
    async with switch(store, sim) as server:

        async def deliver() -> None:
            statuses.append((await server.post(WX, body, headers)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(deliver)
        assert statuses == [204] * 4
        assert server.count(WX, "accepted", "applied") == 1
        assert server.count(WX, "duplicate", "duplicate") == 3
    assert (await order_money(store, key))["held_fen"] == AMOUNT
    assert len(await inbox_rows(store, provider=WX, order_id=key)) == 1


async def _await_state(store: Store, key: str, state: str) -> None:
    """Poll the database (bounded by SAFE): the simulator's callback arrives on its own."""
    with trio.fail_after(SAFE):
        while True:
            if await attempt_state(store, key) == state:
                return
            await trio.sleep(0.05)


def api_notify(server: CallbackServer) -> str:
    return f"{server.url}/callbacks/wechatpay"


async def test_case_15_callback_before_the_prepay_response_is_persisted(
    store: Store, sim: ProviderSimProcess
) -> None:
    """Through the simulator: the hold is journaled, the prepay answered, and before the
    answer is recorded the customer pays and WeChat's callback reaches the switch."""
    key = await _order(store)  # journaled before the provider call: "requested"
    async with switch(store, sim) as server:
        api = WeChatPayChannel.from_config(_config(sim, api_notify(server)))
        try:
            held = await api.hold(hold_request(key, AMOUNT, api_notify(server)))
            assert held.outcome is Outcome.PENDING
            await sim.control.acustomer("wechatpay", key, "pay")
            await _await_state(store, key, "approved")
            # the prepay's PENDING, persisted only now, cannot move the attempt back
            late = await advance_attempt(store.db, key, "pending")
            assert (late.changed, late.state) == (False, "approved")
        finally:
            await api.aclose()
        assert server.count(WX, "accepted", "applied") == 1
    assert (await order_money(store, key))["held_fen"] == AMOUNT


async def test_case_16_success_for_a_closed_order_is_refunded_and_alerted(
    store: Store, sim: ProviderSimProcess
) -> None:
    """Through the simulator: the order was abandoned, then the customer pays after all. The
    switch approves the attempt (that is the truth), journals the refund and alerts; the
    refund, sent through the channel, completes with WeChat's own REFUND.SUCCESS callback."""
    key = await _order(store)
    async with switch(store, sim) as server:
        api = WeChatPayChannel.from_config(_config(sim, api_notify(server)))
        try:
            await api.hold(hold_request(key, AMOUNT, api_notify(server)))
            await finish_order(store, key, "abandoned")
            await sim.control.acustomer("wechatpay", key, "pay")
            await _await_state(store, key, "approved")
            assert server.count(WX, "accepted", "late_success") == 1
            (alert,) = await alerts(store, subject=key, kind="late_success")
            refund_key = late_refund_key(key)
            refund_row = await attempt_row(store, refund_key)
            assert refund_row is not None
            assert (refund_row["operation"], refund_row["state"], refund_row["amount_fen"]) == (
                "refund",
                "requested",
                AMOUNT,
            )
            assert alert.details["refund_attempt"] == refund_row["id"]
            # whoever drives refunds sends it; WeChat confirms by callback
            sent = await api.refund(
                RefundRequest(key, refund_key, AMOUNT, AMOUNT, "late", datetime.now(UTC))
            )
            assert sent.outcome in (Outcome.PENDING, Outcome.APPROVED)
            await _await_state(store, refund_key, "approved")
        finally:
            await api.aclose()
    money = await order_money(store, key)
    assert (money["held_fen"], money["released_fen"], money["captured_fen"]) == (AMOUNT, AMOUNT, 0)


async def test_case_16_success_for_an_order_paid_through_another_channel(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    order = unique_key("FS")
    await create_order_with_hold(
        store,
        order_id=order,
        channel="alipay-main",
        provider=Provider.ALIPAY,
        out_trade_no=unique_key("AP"),
        amount_fen=AMOUNT,
        state="approved",
    )
    key = unique_key("FS")
    await create_attempt(
        store,
        order_id=order,
        operation="hold",
        key=key,
        amount_fen=AMOUNT,
        channel=CHANNEL,
        provider=WX,
    )
    body = _paid(wx, key)
    async with switch(store, sim) as server:
        response = await server.post(WX, body, _signed(wx, body))
        assert response.status_code == 204
        assert server.count(WX, "accepted", "late_success") == 1
    assert await attempt_state(store, key) == "approved"
    assert await attempt_state(store, late_refund_key(key)) == "requested"
    assert len(await alerts(store, subject=order, kind="late_success")) == 1


async def test_case_17_refund_before_payment_and_abnormal_after_refunded(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    refund_key = f"{key}-R1"
    await create_attempt(store, order_id=key, operation="refund", key=refund_key, amount_fen=5000)
    refund_body = wx.body(
        "REFUND.SUCCESS",
        wx.refund(refund_key, out_trade_no=key, refund_fen=5000, total_fen=AMOUNT),
        event_id=_event_id(),
    )
    async with switch(store, sim) as server:
        # the payment is not recorded yet: refused, so WeChat delivers it again later
        early = await server.post(WX, refund_body, _signed(wx, refund_body))
        assert early.status_code >= 400
        assert server.count(WX, "rejected", "out_of_order") == 1
        assert await attempt_state(store, refund_key) == "requested"
        # the payment arrives; the same refund callback, redelivered, now applies
        paid = _paid(wx, key)
        await _accepted(server, store, key, _signed(wx, paid), paid)
        await set_order_money(store, key, captured_fen=AMOUNT)
        again = await server.post(WX, refund_body, _signed(wx, refund_body))
        assert again.status_code == 204
        assert await attempt_state(store, refund_key) == "approved"
        # REFUND.ABNORMAL after the order shows the refund: acknowledged, nothing moves back
        abnormal = wx.body(
            "REFUND.ABNORMAL",
            wx.refund(
                refund_key,
                out_trade_no=key,
                refund_fen=5000,
                total_fen=AMOUNT,
                refund_status="ABNORMAL",
            ),
            event_id=_event_id(),
        )
        late = await server.post(WX, abnormal, _signed(wx, abnormal))
        assert late.status_code == 204
        assert server.count(WX, "ignored", "ignored") == 1
    assert await attempt_state(store, refund_key) == "approved"
    assert (await order_money(store, key))["refunded_fen"] == 5000


# -- 18: oversized and slow bodies ----------------------------------------------------------------


async def test_case_18_oversized_or_slow_body(
    store: Store, sim: ProviderSimProcess, wx: WxWorld
) -> None:
    key = await _order(store)
    body = _paid(wx, key)
    limits = BodyLimits(max_bytes=16 * 1024, read_timeout_s=0.5)
    async with switch(store, sim, limits=limits) as server:
        huge = body[:-1] + b"," + b'"pad":"' + b"x" * 32 * 1024 + b'"}'
        response = await server.post(WX, huge, _signed(wx, huge))
        assert response.status_code == 413
        assert server.count(WX, "rejected", "body_too_large") == 1
        host, port = server.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            head = (
                "POST /callbacks/wechatpay HTTP/1.1\r\n"
                f"Host: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            await stream.send_all(head + body[:20])  # and then nothing more
            with trio.fail_after(SAFE):
                answer = await stream.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 408")
        assert server.count(WX, "rejected", "body_timeout") == 1
        assert (await server.client.get("/healthz")).status_code == 200
        await _accepted(server, store, key, _signed(wx, body), body)  # and it still works
