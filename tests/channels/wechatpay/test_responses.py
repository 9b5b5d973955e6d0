"""Answers: error classification, parsers, and the rule that every 2xx is signed."""

from __future__ import annotations

import time

import orjson
import pytest

from channels.model import Outcome, PaymentState, RefundState
from channels.sim.wechatpay_notify import refund_resource, signed_headers
from channels.transport import Response
from channels.wechatpay import (
    ProtocolError,
    SignatureError,
    check_signed,
    classify_error,
    parse_error,
    parse_prepay,
    parse_refund,
    parse_tradebill_ticket,
    parse_transaction,
)
from tests.channels.wechatpay.support import WxWorld


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(status, headers or {}, body)


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (400, "PARAM_ERROR", Outcome.TECHNICAL_FAILURE),
        (401, "SIGN_ERROR", Outcome.TECHNICAL_FAILURE),
        (404, "ORDER_NOT_EXIST", Outcome.DECLINED),
        (403, "OUT_TRADE_NO_USED", Outcome.DECLINED),
        (429, "FREQUENCY_LIMITED", Outcome.TECHNICAL_FAILURE),
        (500, "SYSTEM_ERROR", Outcome.UNKNOWN),
        (503, "SOMETHING_NEW", Outcome.UNKNOWN),
        (403, "SOMETHING_NEW", Outcome.DECLINED),
        (400, "SOMETHING_NEW", Outcome.TECHNICAL_FAILURE),
        (403, "NOT_ENOUGH", Outcome.DECLINED),
    ],
)
def test_classification_by_code_then_status(status: int, code: str, outcome: Outcome) -> None:
    error = parse_error(_response(status, orjson.dumps({"code": code, "message": "m"})))
    assert (error.status, error.code, error.message) == (status, code, "m")
    assert classify_error(error) is outcome


def test_error_without_json_is_named_after_its_status() -> None:
    error = parse_error(_response(502, b"<html>Bad Gateway</html>"))
    assert error.code == "HTTP_502"
    assert classify_error(error) is Outcome.UNKNOWN
    assert parse_error(_response(404, b"")).code == "HTTP_404"


def test_unsigned_or_badly_signed_2xx(wx: WxWorld) -> None:
    body = b'{"prepay_id":"wx1"}'
    now = time.time()
    with pytest.raises(SignatureError) as info:
        check_signed(_response(200, body), wx.keys, now)
    assert info.value.reason == "missing_header"
    headers = {
        k.lower(): v
        for k, v in signed_headers(body, wx.signer, timestamp=int(now), nonce="n").items()
    }
    check_signed(_response(200, body, headers), wx.keys, now)
    with pytest.raises(SignatureError) as info:
        check_signed(_response(200, b'{"prepay_id":"wx2"}', headers), wx.keys, now)
    assert info.value.reason == "bad_signature"


def test_parse_prepay() -> None:
    assert parse_prepay(b'{"prepay_id":"wx26112221580621e9b071c00d9e093b0000"}').startswith(
        "wx2611"
    )
    for bad in (b"{}", b'{"prepay_id":""}', b"[]", b"x"):
        with pytest.raises(ProtocolError):
            parse_prepay(bad)


def test_parse_transaction(wx: WxWorld) -> None:
    paid = parse_transaction(orjson.dumps(wx.payment()))
    assert (paid.state, paid.total_fen, paid.transaction_id) == (
        PaymentState.HELD,
        20000,
        "4200002026112000000001",
    )
    unpaid = wx.payment(trade_state="NOTPAY", transaction_id="", success_time=None)
    parsed = parse_transaction(orjson.dumps(unpaid))
    assert (parsed.state, parsed.transaction_id, parsed.success_time) == (
        PaymentState.AWAITING_CUSTOMER,
        None,
        "",
    )
    for state, expected in (
        ("CLOSED", PaymentState.CLOSED),
        ("REFUND", PaymentState.CAPTURED),
        ("PAYERROR", PaymentState.FAILED),
    ):
        assert parse_transaction(orjson.dumps(wx.payment(trade_state=state))).state is expected
    with pytest.raises(ProtocolError):
        parse_transaction(orjson.dumps(wx.payment(trade_state="HAPPY")))


def test_parse_refund() -> None:
    resource = refund_resource(
        mchid="1900000109",
        out_trade_no="FS20261120000001",
        transaction_id="4200002026112000000001",
        out_refund_no="R1",
        refund_id="503",
        refund_status="SUCCESS",
        refund_fen=100,
        total_fen=200,
        success_time=None,
    )
    document = {**resource, "status": resource.pop("refund_status")}
    refund = parse_refund(orjson.dumps(document))
    assert (refund.state, refund.refund_fen, refund.total_fen) == (RefundState.SUCCESS, 100, 200)
    assert (
        parse_refund(orjson.dumps({**document, "status": "PROCESSING"})).state
        is RefundState.PROCESSING
    )
    assert (
        parse_refund(orjson.dumps({**document, "status": "ABNORMAL"})).state is RefundState.FAILED
    )
    with pytest.raises(ProtocolError):
        parse_refund(orjson.dumps({**document, "amount": {"refund": -1, "total": 200}}))


def test_parse_tradebill_ticket() -> None:
    ticket = parse_tradebill_ticket(
        b'{"hash_type":"SHA1","hash_value":"ab","download_url":"https://x/y"}'
    )
    assert (ticket.hash_value, ticket.download_url) == ("ab", "https://x/y")
    with pytest.raises(ProtocolError):
        parse_tradebill_ticket(
            b'{"hash_type":"MD5","hash_value":"ab","download_url":"https://x/y"}'
        )
