"""The channel's classification of replies and failures, over a scripted transport.

Pure logic: the transport is a script of canned replies (signed by hand with the test PKI), so
each outcome rule is pinned down without a server. The wire itself is tested against the
simulator process in test_interop.py.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from channels.config import ChannelConfig
from channels.model import (
    CallbackRejected,
    CaptureRequest,
    ChannelError,
    HoldRequest,
    Operation,
    Outcome,
    PaymentState,
    Provider,
    RefundRequest,
    RefundState,
    ReleaseRequest,
)
from channels.transport import Request, Response, Transport
from channels.unionpay import (
    IssuedCert,
    MerchantCredentials,
    TestPki,
    UnionPayChannel,
    decode_form,
    encode_form,
)
from tests.channels.unionpay.support import MER_ID, notify_fields, signed_by

NOW = datetime(2026, 11, 20, 2, 15, tzinfo=UTC)  # 10:15 in Beijing: the requests' txnTime
KEY = "FS20261120000001"
HOLD_QID = "782611201015000000011"

ECHOED = ("version", "encoding", "signMethod", "txnType", "merId", "orderId", "txnTime")
Reply = Response | ChannelError | Callable[[dict[str, str]], Response]


@dataclass
class ScriptedTransport(Transport):
    """Answers each request with the next scripted reply; records what was sent."""

    script: list[Reply] = field(default_factory=list)
    sent: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__("http://unionpay.invalid")

    async def send(self, request: Request) -> Response:
        fields = decode_form(request.body)
        self.sent.append(fields)
        self.paths.append(request.target)
        reply = self.script.pop(0)
        if isinstance(reply, ChannelError):
            raise reply
        return reply if isinstance(reply, Response) else reply(fields)


def _form(fields: dict[str, str]) -> Response:
    return Response(200, {"content-type": "application/x-www-form-urlencoded"}, encode_form(fields))


def answer(signer: IssuedCert, **extra: str) -> Callable[[dict[str, str]], Response]:
    """A reply echoing the request's ids, signed by ``signer`` (by hand)."""

    def reply(request: dict[str, str]) -> Response:
        fields: dict[str, str] = {k: request[k] for k in ECHOED if k in request}
        fields.update(respCode="00", respMsg="成功[0000000]")
        fields.update(extra)
        return _form(signed_by(fields, signer))

    return reply


def found(
    signer: IssuedCert, txn_type: str, orig: str, amount: int, qid: str, **extra: str
) -> Reply:
    """A queryTrans reply about the asked orderId."""

    def reply(request: dict[str, str]) -> Response:
        fields = notify_fields(
            txnType=txn_type,
            orderId=request["orderId"],
            txnTime=request["txnTime"],
            txnAmt=str(amount),
            queryId=qid,
            respCode="00",
            origRespCode=orig,
            origRespMsg="x",
            **extra,
        )
        return _form(signed_by(fields, signer))

    return reply


@pytest.fixture
def channel_factory(
    pki: TestPki, merchant: IssuedCert, tmp_path: Path
) -> Callable[[list[Reply]], tuple[UnionPayChannel, ScriptedTransport]]:
    creds = MerchantCredentials(MER_ID, merchant.cert_id, merchant.key, merchant.cert, pki.anchors)
    cfg = ChannelConfig(
        name="unionpay-main",
        provider=Provider.UNIONPAY,
        base_url="http://unionpay.invalid",
        merchant_id=MER_ID,
        app_id="",
        keys_dir=tmp_path,
        notify_url="https://switch.example/callbacks/unionpay",
    )

    def make(script: list[Reply]) -> tuple[UnionPayChannel, ScriptedTransport]:
        transport = ScriptedTransport(list(script))
        return UnionPayChannel(cfg, creds, transport), transport

    return make


def _hold() -> HoldRequest:
    return HoldRequest(KEY, 20000, "92号 加满", "", "unused", NOW)


def _capture(amount: int = 15000, ref: str | None = HOLD_QID) -> CaptureRequest:
    return CaptureRequest(KEY, KEY + "C1", amount, 20000, NOW, ref)


async def test_the_request_is_signed_the_510_way(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
    pki: TestPki,
    merchant: IssuedCert,
) -> None:
    channel, transport = channel_factory([answer(pki.signing, tn="888")])
    result = await channel.hold(_hold())
    assert (result.outcome, result.client_data) == (Outcome.PENDING, {"tn": "888"})
    sent = transport.sent[0]
    assert transport.paths == ["/gateway/api/appTransReq.do"]
    assert sent["certId"] == str(merchant.cert.serial_number)
    assert sent["txnTime"] == "20261120101500"  # Beijing time
    assert sent["backUrl"] == "https://switch.example/callbacks/unionpay"
    text = "&".join(f"{k}={sent[k]}" for k in sorted(sent) if k != "signature")
    merchant.key.public_key().verify(
        base64.b64decode(sent["signature"]),
        hashlib.sha256(text.encode()).hexdigest().encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


async def test_transport_failures(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
) -> None:
    channel, _ = channel_factory(
        [ChannelError("timeout", "t", sent=True), ChannelError("connect", "c", sent=False)]
    )
    assert (await channel.capture(_capture())).outcome is Outcome.UNKNOWN
    assert (await channel.capture(_capture())).outcome is Outcome.TECHNICAL_FAILURE


async def test_server_errors_are_unknown(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
) -> None:
    channel, _ = channel_factory([Response(502, {}, b"<html>")])
    result = await channel.hold(_hold())
    assert (result.outcome, result.reason) == (Outcome.UNKNOWN, "http_502")


@pytest.mark.parametrize("op", ["hold", "capture"])
async def test_untrusted_replies(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
    pki: TestPki,
    other_pki: TestPki,
    op: str,
) -> None:
    unsigned = _form({"version": "5.1.0", "merId": MER_ID, "respCode": "00", "tn": "1"})
    script: list[Reply] = [unsigned, answer(other_pki.signing, tn="1")]
    channel, _ = channel_factory(script)
    expected = Outcome.TECHNICAL_FAILURE if op == "hold" else Outcome.UNKNOWN
    for _ in script:
        result = await (channel.hold(_hold()) if op == "hold" else channel.capture(_capture()))
        assert (result.outcome, result.reason) == (expected, "bad_response_signature")


async def test_a_reply_about_another_order(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    channel, _ = channel_factory([answer(pki.signing, orderId="FS20261120999999", tn="1")])
    result = await channel.hold(_hold())
    assert (result.outcome, result.reason) == (Outcome.TECHNICAL_FAILURE, "bad_response")


async def test_a_capture_is_confirmed_by_query(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    channel, transport = channel_factory(
        [answer(pki.signing), found(pki.signing, "03", "00", 15000, "Q03")]
    )
    result = await channel.capture(_capture())
    assert (result.outcome, result.amount_fen, result.provider_ref) == (
        Outcome.APPROVED,
        15000,
        "Q03",
    )
    capture, query = transport.sent
    assert capture["txnType"] == "03"
    assert capture["origQryId"] == HOLD_QID
    assert capture["reqReserved"] == KEY
    assert (query["txnType"], query["orderId"]) == ("00", KEY + "C1")
    assert query["txnTime"] == capture["txnTime"]


@pytest.mark.parametrize(
    ("sync", "orig", "amount", "outcome", "reason"),
    [
        ("00", "05", 15000, Outcome.PENDING, None),
        ("00", "35", 15000, Outcome.DECLINED, "35"),
        ("12", "00", 15000, Outcome.APPROVED, None),  # resent: the first one stands
        ("12", "00", 14000, Outcome.DECLINED, "duplicate_order_id"),
    ],
)
async def test_capture_outcomes_after_acceptance(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
    pki: TestPki,
    sync: str,
    orig: str,
    amount: int,
    outcome: Outcome,
    reason: str | None,
) -> None:
    channel, _ = channel_factory(
        [answer(pki.signing, respCode=sync), found(pki.signing, "03", orig, amount, "Q03")]
    )
    result = await channel.capture(_capture())
    assert (result.outcome, result.reason) == (outcome, reason)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [("03", Outcome.UNKNOWN), ("04", Outcome.UNKNOWN), ("05", Outcome.UNKNOWN)],
)
async def test_in_doubt_codes_are_unknown(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
    pki: TestPki,
    code: str,
    outcome: Outcome,
) -> None:
    channel, transport = channel_factory([answer(pki.signing, respCode=code)])
    result = await channel.capture(_capture())
    assert (result.outcome, result.reason) == (outcome, code)
    assert len(transport.sent) == 1  # no confirmation query for an unknown outcome


async def test_a_refusal_is_declined_with_its_message(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    channel, _ = channel_factory([answer(pki.signing, respCode="33", respMsg="交易金额超限")])
    result = await channel.refund(RefundRequest(KEY, KEY + "R1", 99999, 15000, "x", NOW, "Q03"))
    assert (result.outcome, result.reason, result.message) == (
        Outcome.DECLINED,
        "33",
        "交易金额超限",
    )


async def test_local_refusals_send_nothing(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]],
) -> None:
    channel, transport = channel_factory([])
    over = await channel.capture(_capture(amount=20001))
    assert (over.outcome, over.reason) == (Outcome.DECLINED, "exceeds_hold")
    bad_key = await channel.hold(HoldRequest("FS-1-2-3", 1, "", "", "", NOW))
    assert (bad_key.outcome, bad_key.reason) == (Outcome.TECHNICAL_FAILURE, "bad_order_id")
    no_ref = await channel.refund(RefundRequest(KEY, KEY + "R1", 1, 15000, "x", NOW))
    assert (no_ref.outcome, no_ref.reason) == (Outcome.TECHNICAL_FAILURE, "missing_provider_ref")
    unknown = await channel.query("FS20261120777777")
    assert (unknown.outcome, unknown.reason) == (Outcome.UNKNOWN, "txn_time_unknown")
    rest = await channel.release(ReleaseRequest(KEY, KEY + "L1", 5000, 20000, NOW))
    assert (rest.outcome, rest.amount_fen) == (Outcome.APPROVED, 5000)
    assert transport.sent == []


async def test_full_release_cancels_the_preauth(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    channel, transport = channel_factory(
        [answer(pki.signing), found(pki.signing, "32", "00", 20000, "Q32")]
    )
    result = await channel.release(ReleaseRequest(KEY, KEY + "L1", 20000, 20000, NOW, HOLD_QID))
    assert result.outcome is Outcome.APPROVED
    assert transport.sent[0]["txnType"] == "32"
    assert transport.sent[0]["txnAmt"] == "20000"


async def test_query_composes_the_hold_and_its_follow_ups(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    channel, transport = channel_factory(
        [
            answer(s, tn="1"),  # hold
            answer(s),  # capture accepted
            found(s, "03", "00", 15000, "Q03"),  # ... and confirmed
            answer(s),  # refund accepted
            found(s, "04", "00", 2000, "Q04"),  # ... and confirmed
            found(s, "02", "00", 20000, HOLD_QID),  # query: the hold
            found(s, "03", "00", 15000, "Q03"),  # its completion
            found(s, "04", "00", 2000, "Q04"),  # its refund
        ]
    )
    await channel.hold(_hold())
    assert (await channel.capture(_capture())).outcome is Outcome.APPROVED
    refund = await channel.refund(RefundRequest(KEY, KEY + "R1", 2000, 15000, "x", NOW))
    assert (refund.outcome, refund.refund) == (Outcome.APPROVED, RefundState.SUCCESS)
    assert transport.sent[3]["origQryId"] == "Q03"  # the completion, not the hold
    status = await channel.query(KEY)
    assert status.payment is not None
    assert status.payment.state is PaymentState.CAPTURED
    assert (status.payment.captured_fen, status.payment.refunded_fen) == (15000, 2000)
    assert status.operation is Operation.QUERY


async def test_confirm_callback(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    body = encode_form(signed_by(notify_fields(orderId=KEY, queryId=HOLD_QID), s))
    channel, transport = channel_factory(
        [
            found(s, "02", "00", 20000, HOLD_QID),
            found(s, "02", "05", 20000, HOLD_QID),
            found(s, "02", "00", 1, HOLD_QID),
        ]
    )
    event = channel.verify_callback({}, body, time.time())
    assert await channel.confirm_callback(event) is event
    assert transport.sent[0]["txnTime"] == "20261120101500"  # the notify's own txnTime
    with pytest.raises(CallbackRejected) as pending:
        await channel.confirm_callback(event)
    assert pending.value.reason == "unconfirmed"
    with pytest.raises(CallbackRejected) as contradicted:
        await channel.confirm_callback(event)
    assert (contradicted.value.reason, contradicted.value.alert) == ("query_mismatch", True)


# -- after a restart: the journaled request time -------------------------------------------------


def not_found(signer: IssuedCert) -> Reply:
    return answer(signer, respCode="34", respMsg="查无此交易")


async def test_a_fresh_channel_forms_the_txn_time_from_sent_at(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    channel, transport = channel_factory(
        [found(s, "02", "00", 20000, HOLD_QID), found(s, "02", "00", 20000, HOLD_QID)]
    )
    status = await channel.query(KEY, sent_at=NOW)
    assert status.payment is not None
    assert status.payment.state is PaymentState.HELD
    assert (transport.sent[0]["orderId"], transport.sent[0]["txnTime"]) == (KEY, "20261120101500")
    await channel.query(KEY)  # found by it, so remembered
    assert transport.sent[1]["txnTime"] == "20261120101500"


async def test_the_remembered_txn_time_wins_over_sent_at(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    channel, transport = channel_factory([answer(s, tn="1"), found(s, "02", "00", 20000, "Q")])
    await channel.hold(_hold())
    await channel.query(KEY, sent_at=NOW + timedelta(hours=1))
    assert transport.sent[1]["txnTime"] == transport.sent[0]["txnTime"] == "20261120101500"


async def test_a_wrong_sent_at_is_not_remembered_and_a_query_id_settles_it(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing

    def by_query_id(request: dict[str, str]) -> Response:
        assert "orderId" not in request
        fields = notify_fields(orderId=KEY, queryId=request["queryId"], origRespCode="00")
        return _form(signed_by(fields, s))

    channel, transport = channel_factory(
        [not_found(s), not_found(s), by_query_id, found(s, "02", "00", 20000, HOLD_QID)]
    )
    wrong = NOW - timedelta(seconds=1)
    missing = await channel.query(KEY, sent_at=wrong)
    assert missing.payment is not None
    assert missing.payment.state is PaymentState.NOT_FOUND
    held = await channel.query(KEY, HOLD_QID, sent_at=wrong)  # 34 by time, then by queryId
    assert held.payment is not None
    assert held.payment.state is PaymentState.HELD
    assert transport.sent[2]["queryId"] == HOLD_QID
    await channel.query(KEY, sent_at=NOW)
    assert [f.get("txnTime") for f in (transport.sent[0], transport.sent[3])] == [
        "20261120101459",
        "20261120101500",
    ]


async def test_a_follow_up_key_says_what_became_of_it(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    channel, transport = channel_factory(
        [
            found(s, "03", "05", 15000, "Q03", reqReserved=KEY),  # in progress
            found(s, "03", "00", 15000, "Q03", reqReserved=KEY),  # done
            found(s, "02", "00", 20000, HOLD_QID),  # the hold, by its own sent_at
            found(s, "03", "00", 15000, "Q03", reqReserved=KEY),  # ... and its completion
            found(s, "32", "36", 20000, "Q32", reqReserved=KEY),  # a refused cancel
        ]
    )
    pending = await channel.query(KEY + "C1", sent_at=NOW)
    assert (pending.outcome, pending.provider_ref) == (Outcome.PENDING, "Q03")
    done = await channel.query(KEY + "C1", sent_at=NOW)
    assert (done.outcome, done.amount_fen) == (Outcome.APPROVED, 15000)
    assert done.payment is not None
    assert (done.payment.state, done.payment.captured_fen) == (PaymentState.CAPTURED, 15000)
    payment = await channel.query(KEY, sent_at=NOW - timedelta(minutes=5))
    assert payment.payment is not None
    assert (payment.payment.state, payment.payment.captured_fen) == (PaymentState.CAPTURED, 15000)
    assert transport.sent[3]["orderId"] == KEY + "C1"  # linked to its hold by reqReserved
    refused = await channel.query(KEY + "L1", sent_at=NOW)
    assert (refused.outcome, refused.reason) == (Outcome.DECLINED, "36")


async def test_a_fresh_channel_queries_a_refund_by_sent_at(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    channel, transport = channel_factory(
        [not_found(s), found(s, "04", "00", 2000, "Q04", reqReserved=KEY)]
    )
    blind = await channel.refund_query(KEY, KEY + "R1")
    assert (blind.outcome, blind.reason) == (Outcome.UNKNOWN, "txn_time_unknown")
    gone = await channel.refund_query(KEY, KEY + "R2", sent_at=NOW)
    assert gone.refund is RefundState.NOT_FOUND
    refund = await channel.refund_query(KEY, KEY + "R1", sent_at=NOW)
    assert (refund.refund, refund.amount_fen, refund.provider_ref) == (
        RefundState.SUCCESS,
        2000,
        "Q04",
    )
    assert [f["orderId"] for f in transport.sent] == [KEY + "R2", KEY + "R1"]


async def test_a_follow_up_notify_links_it_to_its_hold(
    channel_factory: Callable[..., tuple[UnionPayChannel, ScriptedTransport]], pki: TestPki
) -> None:
    s = pki.signing
    notify = notify_fields(
        txnType="03",
        orderId=KEY + "C1",
        txnTime="20261120102000",
        txnAmt="15000",
        queryId="Q03",
        origQryId=HOLD_QID,
        reqReserved=KEY,
    )
    channel, transport = channel_factory(
        [found(s, "02", "00", 20000, HOLD_QID), found(s, "03", "00", 15000, "Q03")]
    )
    event = channel.verify_callback({}, encode_form(signed_by(notify, s)), time.time())
    assert (event.out_trade_no, event.out_refund_no) == (KEY, KEY + "C1")
    status = await channel.query(KEY, sent_at=NOW)
    assert status.payment is not None
    assert (status.payment.state, status.payment.captured_fen) == (PaymentState.CAPTURED, 15000)
    assert (transport.sent[1]["orderId"], transport.sent[1]["txnTime"]) == (
        KEY + "C1",
        "20261120102000",  # the notify's own txnTime
    )
