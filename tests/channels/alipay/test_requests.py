"""Gateway request builders and the signed form."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from channels.alipay import (
    RequestError,
    bill_download_url,
    encode_form,
    fund_detail_query,
    fund_freeze,
    fund_operation_cancel,
    fund_unfreeze,
    gateway_timestamp,
    parse_form,
    request_sign_content,
    sign_request,
    trade_cancel,
    trade_close,
    trade_create,
    trade_pay_capture,
    trade_query,
    trade_refund,
    trade_refund_query,
    verify_content,
)
from tests.channels.alipay.support import APP_ID, SELLER_ID, rsa_key

APP = rsa_key("app")
WHEN = datetime(2026, 11, 20, 9, 15, 40)


def test_timestamp_is_beijing_time_in_alipays_format() -> None:
    assert gateway_timestamp(WHEN) == "2026-11-20 09:15:40"
    utc = datetime(2026, 11, 20, 1, 15, 40, tzinfo=UTC)
    assert gateway_timestamp(utc) == "2026-11-20 09:15:40"
    other = datetime(2026, 11, 19, 20, 15, 40, tzinfo=timezone(timedelta(hours=-5)))
    assert gateway_timestamp(other) == "2026-11-20 09:15:40"


def test_signed_request_has_the_common_fields_and_verifies() -> None:
    call = fund_freeze("FS1", "FS1", 30000, "92#汽油 预授权", payee_user_id=SELLER_ID)
    fields = sign_request(
        call, app_id=APP_ID, key=APP, timestamp=WHEN, notify_url="http://sw/callbacks/alipay"
    )
    assert fields["method"] == "alipay.fund.auth.order.app.freeze"
    assert (fields["format"], fields["charset"], fields["sign_type"], fields["version"]) == (
        "JSON",
        "utf-8",
        "RSA2",
        "1.0",
    )
    assert fields["timestamp"] == "2026-11-20 09:15:40"
    assert fields["notify_url"] == "http://sw/callbacks/alipay"
    assert verify_content(request_sign_content(fields), fields["sign"], APP.public_key())
    round_trip = parse_form(encode_form(fields)).fields
    assert round_trip == fields


def test_methods_without_notifies_carry_no_notify_url() -> None:
    fields = sign_request(
        trade_query("FS1"), app_id=APP_ID, key=APP, timestamp=WHEN, notify_url="http://sw/cb"
    )
    assert "notify_url" not in fields


def test_freeze_is_an_online_preauth_for_the_exact_yuan_amount() -> None:
    call = fund_freeze("FS1", "FS1", 25640, "title", payee_user_id=SELLER_ID, timeout_minutes=30)
    assert call.notifies
    assert dict(call.biz) == {
        "out_order_no": "FS1",
        "out_request_no": "FS1",
        "order_title": "title",
        "amount": "256.40",
        "product_code": "PRE_AUTH_ONLINE",
        "payee_user_id": SELLER_ID,
        "timeout_express": "30m",
    }


def test_capture_is_trade_pay_with_auth_no_and_complete_mode() -> None:
    call = trade_pay_capture("FS1", "2026AUTH", 21360, "92#汽油 21.36L")
    assert call.method == "alipay.trade.pay"
    assert call.biz["auth_no"] == "2026AUTH"
    assert call.biz["auth_confirm_mode"] == "COMPLETE"
    assert call.biz["product_code"] == "PRE_AUTH_ONLINE"
    assert call.biz["total_amount"] == "213.60"


def test_refund_carries_its_idempotency_key() -> None:
    call = trade_refund("FS1", 4320, "FS1-R1", "少加")
    assert dict(call.biz) == {
        "out_trade_no": "FS1",
        "refund_amount": "43.20",
        "out_request_no": "FS1-R1",
        "refund_reason": "少加",
    }
    assert dict(trade_refund_query("FS1", "FS1-R1").biz) == {
        "out_trade_no": "FS1",
        "out_request_no": "FS1-R1",
    }


def test_other_builders() -> None:
    assert trade_create("FS1", 100, "s", "2088102177846880").biz["total_amount"] == "1.00"
    assert trade_close(trade_no="2026T").method == "alipay.trade.close"
    assert dict(trade_cancel("FS1").biz) == {"out_trade_no": "FS1"}
    assert dict(fund_unfreeze("A1", "FS1-REL", 4360, "rest").biz)["amount"] == "43.60"
    assert dict(fund_detail_query(out_order_no="FS1", out_request_no="FS1").biz) == {
        "out_order_no": "FS1",
        "out_request_no": "FS1",
    }
    assert dict(fund_detail_query(auth_no="A1", out_order_no="FS1").biz) == {"auth_no": "A1"}
    assert (
        fund_operation_cancel("FS1", "FS1", "close").method == "alipay.fund.auth.operation.cancel"
    )
    assert dict(bill_download_url(date(2026, 11, 20)).biz) == {
        "bill_type": "trade",
        "bill_date": "2026-11-20",
    }


@pytest.mark.parametrize("amount", [0, -1])
def test_non_positive_amounts_are_refused_before_signing(amount: int) -> None:
    with pytest.raises(RequestError) as caught:
        trade_refund("FS1", amount, "R1")
    assert caught.value.reason == "bad_amount"


@pytest.mark.parametrize("key", ["", "a b", "x" * 65, "订单"])
def test_unusable_keys_are_refused(key: str) -> None:
    with pytest.raises(RequestError) as caught:
        trade_query(key)
    assert caught.value.reason == "bad_key"


def test_a_query_needs_some_key() -> None:
    with pytest.raises(RequestError):
        trade_query()
    with pytest.raises(RequestError):
        fund_detail_query()
