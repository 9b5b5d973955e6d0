"""respCode / origRespCode classification and the PaymentState mapping."""

from __future__ import annotations

import pytest

from channels.model import Operation, Outcome, PaymentState
from channels.unionpay import (
    AcpError,
    QueryReply,
    Verdict,
    compose_status,
    failure_result,
    parse_query_reply,
    parse_reply,
    payment_state,
    verdict_of,
)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("00", Verdict.SUCCESS),
        ("A6", Verdict.SUCCESS),
        ("03", Verdict.IN_DOUBT),
        ("04", Verdict.IN_DOUBT),
        ("05", Verdict.IN_DOUBT),
        ("12", Verdict.DUPLICATE),
        ("34", Verdict.NOT_FOUND),
        ("01", Verdict.FAILED),
        ("64", Verdict.FAILED),
        ("", Verdict.FAILED),
    ],
)
def test_verdicts(code: str, verdict: Verdict) -> None:
    assert verdict_of(code) is verdict


def test_failures_are_unknown_while_in_doubt_else_declined() -> None:
    doubt = failure_result(Operation.CAPTURE, "K", parse_reply({"respCode": "04", "respMsg": "?"}))
    assert doubt.outcome is Outcome.UNKNOWN
    declined = failure_result(
        Operation.REFUND, "K", parse_reply({"respCode": "33", "respMsg": "交易金额超限"})
    )
    assert declined.outcome is Outcome.DECLINED
    assert declined.reason == "33"
    assert declined.message == "交易金额超限"
    with pytest.raises(AcpError):
        parse_reply({"respMsg": "no code"})


def _query(txn_type: str, orig: str, amount: str = "20000", **extra: str) -> QueryReply:
    fields = {
        "respCode": "00",
        "respMsg": "成功",
        "txnType": txn_type,
        "origRespCode": orig,
        "origRespMsg": "x",
        "orderId": "FS20261120000001",
        "queryId": "Q" + txn_type,
        "txnAmt": amount,
        **extra,
    }
    return parse_query_reply(fields)


@pytest.mark.parametrize(
    ("txn_type", "orig", "state"),
    [
        ("02", "00", PaymentState.HELD),
        ("02", "A6", PaymentState.HELD),
        ("02", "05", PaymentState.AWAITING_CUSTOMER),
        ("02", "64", PaymentState.FAILED),
        ("01", "00", PaymentState.CAPTURED),
        ("01", "03", PaymentState.AWAITING_CUSTOMER),
        ("01", "30", PaymentState.FAILED),
    ],
)
def test_the_state_table(txn_type: str, orig: str, state: PaymentState) -> None:
    assert payment_state(_query(txn_type, orig)) is state


def test_query_level_answers() -> None:
    missing = parse_query_reply({"respCode": "34", "respMsg": "查无此交易"})
    assert payment_state(missing) is PaymentState.NOT_FOUND
    busy = parse_query_reply({"respCode": "06", "respMsg": "系统繁忙"})
    assert payment_state(busy) is None
    doubt = parse_query_reply({"respCode": "04", "respMsg": "?"})
    assert payment_state(doubt) is None


def test_a_hold_key_naming_a_refund_is_an_error() -> None:
    with pytest.raises(AcpError):
        payment_state(_query("04", "00"))


def test_a_successful_query_needs_its_fields() -> None:
    with pytest.raises(AcpError):
        parse_query_reply({"respCode": "00", "txnType": "02"})
    with pytest.raises(AcpError):
        parse_query_reply({"respCode": "00", "origRespCode": "00", "txnType": "99"})


def test_compose_capture_and_refunds() -> None:
    hold = _query("02", "00", "20000")
    capture = _query("03", "00", "15000")
    refund = _query("04", "00", "2000")
    failed_refund = _query("04", "33", "99999")
    status = compose_status(hold, [capture, refund, failed_refund])
    assert status is not None
    assert status.state is PaymentState.CAPTURED
    assert (status.held_fen, status.captured_fen, status.refunded_fen) == (20000, 15000, 2000)
    assert status.provider_ref == "Q02"
    assert status.provider_status == "00"


def test_compose_cancel_and_pending_follow_up() -> None:
    hold = _query("02", "00", "20000")
    cancelled = compose_status(hold, [_query("32", "00", "20000")])
    assert cancelled is not None
    assert cancelled.state is PaymentState.CLOSED
    in_progress = compose_status(hold, [_query("03", "05", "20000")])
    assert in_progress is not None
    assert in_progress.state is PaymentState.HELD
    assert compose_status(parse_query_reply({"respCode": "06"}), []) is None
