"""How answers become ChannelResults: the rules that keep the switch from charging twice."""

from __future__ import annotations

import orjson
import pytest

from channels.model import ChannelError, Operation, Outcome, PaymentState, RefundState
from channels.sim.wechatpay_notify import refund_resource
from channels.wechatpay import ApiError, SignatureError
from channels.wechatpay.results import (
    bad_request,
    bad_signature,
    from_api_error,
    from_transport,
    malformed,
    payment_result,
    refund_result,
)
from tests.channels.wechatpay.support import APPID, MCHID, WxWorld

MOVING = (Operation.HOLD, Operation.RELEASE, Operation.REFUND, Operation.CLOSE)
READING = (Operation.QUERY, Operation.REFUND_QUERY)


@pytest.mark.parametrize(
    ("sent", "outcome"), [(True, Outcome.UNKNOWN), (False, Outcome.TECHNICAL_FAILURE)]
)
def test_transport_failures(sent: bool, outcome: Outcome) -> None:
    result = from_transport(Operation.HOLD, "FS1", ChannelError("timeout", "read", sent=sent))
    assert (result.outcome, result.reason, result.key) == (outcome, "timeout", "FS1")


def test_a_bad_signature_is_unknown_only_where_money_may_have_moved() -> None:
    exc = SignatureError("unknown_serial", "no platform key")
    for op in MOVING:
        assert bad_signature(op, "k", exc).outcome is Outcome.UNKNOWN
    for op in READING:
        assert bad_signature(op, "k", exc).outcome is Outcome.TECHNICAL_FAILURE
    assert bad_signature(Operation.QUERY, "k", exc).reason == "bad_response_signature"
    assert malformed(Operation.REFUND, "k", "x").outcome is Outcome.UNKNOWN
    assert malformed(Operation.QUERY, "k", "x").outcome is Outcome.TECHNICAL_FAILURE
    assert bad_request(Operation.HOLD, "k", ValueError("no")).outcome is Outcome.TECHNICAL_FAILURE


def test_not_found_is_an_answer_for_queries_only() -> None:
    missing = ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
    query = from_api_error(Operation.QUERY, "k", missing)
    assert query.outcome is Outcome.APPROVED
    assert query.payment is not None and query.payment.state is PaymentState.NOT_FOUND
    refund = from_api_error(Operation.REFUND_QUERY, "k", ApiError(404, "RESOURCE_NOT_EXISTS", ""))
    assert (refund.outcome, refund.refund) == (Outcome.APPROVED, RefundState.NOT_FOUND)
    assert (
        from_api_error(Operation.REFUND, "k", ApiError(404, "RESOURCE_NOT_EXISTS", "")).outcome
        is Outcome.DECLINED
    )


def test_orderpaid_on_a_hold_means_query() -> None:
    paid = ApiError(400, "ORDERPAID", "该订单已支付")
    assert from_api_error(Operation.HOLD, "k", paid).outcome is Outcome.UNKNOWN
    assert from_api_error(Operation.CLOSE, "k", paid).outcome is Outcome.DECLINED
    busy = from_api_error(Operation.REFUND, "k", ApiError(500, "SYSTEM_ERROR", "系统繁忙"))
    assert (busy.outcome, busy.reason, busy.message) == (
        Outcome.UNKNOWN,
        "SYSTEM_ERROR",
        "系统繁忙",
    )


def test_payment_result_checks_it_is_ours(wx: WxWorld) -> None:
    body = orjson.dumps(wx.payment("FS20261120000001"))
    ok = payment_result("FS20261120000001", body, mchid=MCHID, appid=APPID)
    assert ok.outcome is Outcome.APPROVED and ok.payment is not None
    assert (ok.payment.state, ok.payment.held_fen, ok.provider_ref) == (
        PaymentState.HELD,
        20000,
        "4200002026112000000001",
    )
    for key, mchid, appid in (
        ("FS20261120000009", MCHID, APPID),
        ("FS20261120000001", "1", APPID),
        ("FS20261120000001", MCHID, "wx0"),
    ):
        assert payment_result(key, body, mchid=mchid, appid=appid).reason == "bad_response"
    assert (
        payment_result("FS20261120000001", b"{}", mchid=MCHID, appid=APPID).outcome
        is Outcome.TECHNICAL_FAILURE
    )


def _refund_body(status: str) -> bytes:
    resource = refund_resource(
        mchid=MCHID,
        out_trade_no="FS20261120000001",
        transaction_id="4200002026112000000001",
        out_refund_no="FS20261120000001-R1",
        refund_id="503",
        refund_status=status,
        refund_fen=500,
        total_fen=20000,
        success_time=None,
    )
    resource["status"] = resource.pop("refund_status")
    return orjson.dumps(resource)


@pytest.mark.parametrize(
    ("status", "outcome", "state"),
    [
        ("PROCESSING", Outcome.PENDING, RefundState.PROCESSING),
        ("SUCCESS", Outcome.APPROVED, RefundState.SUCCESS),
        ("ABNORMAL", Outcome.DECLINED, RefundState.FAILED),
        ("CLOSED", Outcome.DECLINED, RefundState.FAILED),
    ],
)
def test_refund_results(status: str, outcome: Outcome, state: RefundState) -> None:
    body = _refund_body(status)
    result = refund_result(Operation.REFUND, "FS20261120000001", "FS20261120000001-R1", body)
    assert (result.outcome, result.refund, result.amount_fen, result.provider_ref) == (
        outcome,
        state,
        500,
        "503",
    )
    queried = refund_result(Operation.REFUND_QUERY, "FS20261120000001", "FS20261120000001-R1", body)
    assert (queried.outcome, queried.refund) == (Outcome.APPROVED, state)
    other = refund_result(Operation.REFUND, "FS20261120000001", "FS20261120000001-R2", body)
    assert (other.outcome, other.reason) == (Outcome.UNKNOWN, "bad_response")
