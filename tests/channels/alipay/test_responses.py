"""Gateway codes → outcomes, and the status words → the switch's payment scale."""

from __future__ import annotations

from typing import Any

import pytest

from channels.alipay import GatewayReply, ResponseError, classify, read_reply, sign_response
from channels.alipay.responses import (
    combine_preauth,
    freeze_info,
    freeze_status,
    is_not_found,
    refund_info,
    refund_query_info,
    trade_status,
)
from channels.model import Outcome, PaymentState, RefundState
from tests.channels.alipay.support import rsa_key

ALIPAY = rsa_key("alipay")


def reply(code: str, sub_code: str = "", **body: Any) -> GatewayReply:
    return GatewayReply("alipay.trade.pay", code, "msg", sub_code, "sub msg", body)


@pytest.mark.parametrize(
    ("code", "sub_code", "outcome", "reason"),
    [
        ("10000", "", Outcome.APPROVED, None),
        ("10003", "", Outcome.PENDING, "10003"),
        ("20000", "isp.unknow-error", Outcome.UNKNOWN, "isp.unknow-error"),
        ("40004", "ACQ.TRADE_HAS_CLOSE", Outcome.DECLINED, "ACQ.TRADE_HAS_CLOSE"),
        ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH", Outcome.DECLINED, "ACQ.BUYER_BALANCE_NOT_ENOUGH"),
        ("40004", "ACQ.SYSTEM_ERROR", Outcome.UNKNOWN, "ACQ.SYSTEM_ERROR"),
        ("40002", "isv.invalid-signature", Outcome.TECHNICAL_FAILURE, "isv.invalid-signature"),
        ("40006", "isv.insufficient-isv-permissions", Outcome.TECHNICAL_FAILURE, None),
        ("99999", "", Outcome.UNKNOWN, "99999"),
    ],
)
def test_codes_classify_into_outcomes(
    code: str, sub_code: str, outcome: Outcome, reason: str | None
) -> None:
    verdict = classify(reply(code, sub_code))
    assert verdict.outcome is outcome
    if reason is not None:
        assert verdict.reason == reason


def test_not_found_is_recognised_only_for_business_failures() -> None:
    assert is_not_found(reply("40004", "ACQ.TRADE_NOT_EXIST"))
    assert is_not_found(reply("40004", "ORDER_NOT_EXIST"))
    assert not is_not_found(reply("20000", "ACQ.TRADE_NOT_EXIST"))


@pytest.mark.parametrize(
    ("word", "state", "captured"),
    [
        ("WAIT_BUYER_PAY", PaymentState.AWAITING_CUSTOMER, 0),
        ("TRADE_SUCCESS", PaymentState.CAPTURED, 25640),
        ("TRADE_FINISHED", PaymentState.CAPTURED, 25640),
        ("TRADE_CLOSED", PaymentState.CLOSED, 0),
    ],
)
def test_trade_status_maps_onto_the_payment_scale(
    word: str, state: PaymentState, captured: int
) -> None:
    status = trade_status({"trade_status": word, "total_amount": "256.40", "trade_no": "T1"})
    assert (status.state, status.captured_fen, status.provider_status) == (state, captured, word)


@pytest.mark.parametrize(
    ("order_status", "rest", "paid", "state", "held"),
    [
        ("INIT", "0.00", "0.00", PaymentState.AWAITING_CUSTOMER, 0),
        ("AUTHORIZED", "300.00", "0.00", PaymentState.HELD, 30000),
        ("FINISH", "0.00", "256.40", PaymentState.CAPTURED, 0),
        ("CLOSED", "0.00", "0.00", PaymentState.CLOSED, 0),
        ("CLOSED", "0.00", "100.00", PaymentState.CAPTURED, 0),
    ],
)
def test_freeze_status_maps_captures_to_captured(
    order_status: str, rest: str, paid: str, state: PaymentState, held: int
) -> None:
    status = freeze_status(
        {
            "order_status": order_status,
            "rest_amount": rest,
            "total_pay_amount": paid,
            "auth_no": "A1",
        }
    )
    assert (status.state, status.held_fen, status.provider_ref) == (state, held, "A1")


def test_a_captured_trade_closed_by_a_full_refund_stays_captured() -> None:
    hold = freeze_status({"order_status": "FINISH", "total_pay_amount": "256.40", "auth_no": "A"})
    trade = trade_status({"trade_status": "TRADE_CLOSED", "total_amount": "256.40"})
    combined = combine_preauth(hold, trade)
    assert (combined.state, combined.captured_fen) == (PaymentState.CAPTURED, 25640)
    assert combined.provider_status == "FINISH/TRADE_CLOSED"
    assert combine_preauth(hold, None) is hold


def test_refund_and_refund_query_reading() -> None:
    info = refund_info({"trade_no": "T", "fund_change": "Y", "refund_fee": "43.20"})
    assert (info.fund_change, info.refund_fee_fen) == (True, 4320)
    done = refund_query_info({"refund_amount": "43.20", "refund_status": "REFUND_SUCCESS"})
    assert (done.state, done.amount_fen) == (RefundState.SUCCESS, 4320)
    legacy = refund_query_info({"refund_amount": "43.20"})
    assert legacy.state is RefundState.SUCCESS
    assert refund_query_info({"out_trade_no": "FS1"}).state is RefundState.NOT_FOUND


def test_inexact_amounts_in_a_response_are_refused() -> None:
    with pytest.raises(ResponseError) as caught:
        freeze_info({"auth_no": "A", "amount": "1.005"})
    assert caught.value.reason == "bad_amount"
    with pytest.raises(ResponseError):
        trade_status({"trade_status": "SOMETHING_NEW", "total_amount": "1.00"})


def test_a_verified_reply_without_code_is_a_bad_response() -> None:
    raw = sign_response("alipay_trade_pay_response", {"msg": "Success"}, ALIPAY)
    with pytest.raises(ResponseError) as caught:
        read_reply(raw, "alipay.trade.pay", ALIPAY.public_key())
    assert caught.value.reason == "bad_response"
