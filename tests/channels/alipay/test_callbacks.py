"""Notify verification, sans-IO: the order of checks, every reason code, every notify kind."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from channels.alipay import (
    ack_reply,
    encode_form,
    notify_sign_content,
    sign_content,
    sign_notify,
    verify_notify,
)
from channels.model import CallbackEvent, CallbackKind, CallbackRejected, Provider
from tests.channels.alipay.support import (
    APP_ID,
    CHANNEL,
    SELLER_ID,
    freeze_notify_fields,
    rsa_key,
    sdk_as_alipay,
    signed_notify,
    trade_notify_fields,
)

ALIPAY = rsa_key("alipay")


def verify(body: bytes, content_type: str = "") -> CallbackEvent:
    return verify_notify(
        body,
        alipay_public_key=ALIPAY.public_key(),
        app_id=APP_ID,
        seller_id=SELLER_ID,
        channel=CHANNEL,
        content_type=content_type,
    )


def rejected(body: bytes) -> CallbackRejected:
    with pytest.raises(CallbackRejected) as caught:
        verify(body)
    return caught.value


def test_paid_trade_notify_becomes_a_payment_event() -> None:
    event = verify(signed_notify(trade_notify_fields()))
    assert event.provider is Provider.ALIPAY
    assert event.channel == CHANNEL
    assert event.kind is CallbackKind.PAYMENT
    assert event.event_id == "2026112000222080215000001234567890"
    assert (event.status, event.succeeded) == ("TRADE_SUCCESS", True)
    assert (event.out_trade_no, event.provider_ref) == (
        "FS20261120000101",
        "2026112022001400001000000001",
    )
    assert (event.amount_fen, event.paid_fen, event.refund_fen) == (30000, 30000, None)
    assert event.raw["subject"] == "92#汽油 300元"
    assert not event.refund_cumulative


@pytest.mark.parametrize(
    ("status", "paid"),
    [
        ("TRADE_SUCCESS", True),
        ("TRADE_FINISHED", True),
        ("WAIT_BUYER_PAY", False),
        ("TRADE_CLOSED", False),
    ],
)
def test_only_success_and_finished_mean_paid(status: str, paid: bool) -> None:
    event = verify(signed_notify(trade_notify_fields(trade_status=status)))
    assert event.kind is CallbackKind.PAYMENT
    assert event.succeeded is paid


def test_partial_refund_is_trade_success_with_refund_fee() -> None:
    fields = trade_notify_fields(
        refund_fee="43.20", out_biz_no="FS20261120000101-R1", gmt_refund="2026-11-20 08:40:00.123"
    )
    event = verify(signed_notify(fields))
    assert event.kind is CallbackKind.REFUND
    assert (event.status, event.succeeded) == ("TRADE_SUCCESS", True)
    assert (event.refund_fen, event.out_refund_no, event.amount_fen) == (
        4320,
        "FS20261120000101-R1",
        30000,
    )
    # refund_fee is the trade's refunded total so far, not this refund's amount
    assert event.refund_cumulative


def test_full_refund_is_trade_closed_with_refund_fee() -> None:
    fields = trade_notify_fields(trade_status="TRADE_CLOSED", refund_fee="300.00", out_biz_no="R2")
    event = verify(signed_notify(fields))
    assert event.kind is CallbackKind.REFUND
    assert (event.status, event.refund_fen, event.succeeded) == ("TRADE_CLOSED", 30000, True)
    assert (event.out_refund_no, event.refund_cumulative) == ("R2", True)


def test_refund_named_by_out_request_no_when_out_biz_no_is_absent() -> None:
    fields = trade_notify_fields(refund_fee="43.20", out_request_no="FS20261120000101-R1")
    del fields["out_biz_no"]
    event = verify(signed_notify(fields))
    assert (event.kind, event.out_refund_no) == (CallbackKind.REFUND, "FS20261120000101-R1")


def test_freeze_notify_becomes_a_hold_event_keyed_by_out_order_no() -> None:
    event = verify(signed_notify(freeze_notify_fields()))
    assert event.kind is CallbackKind.HOLD
    assert (event.out_trade_no, event.provider_ref) == (
        "FS20261120000102",
        "2026112010002001230012345678",
    )
    assert (event.amount_fen, event.status, event.succeeded) == (30000, "SUCCESS", True)
    assert not event.refund_cumulative


def test_unfreeze_notify_becomes_a_release_event() -> None:
    fields = freeze_notify_fields(
        notify_type="fund_auth_unfreeze",
        operation_type="UNFREEZE",
        out_request_no="FS20261120000102-REL",
        amount="43.60",
        rest_amount="0.00",
    )
    event = verify(signed_notify(fields))
    assert event.kind is CallbackKind.RELEASE
    assert (event.amount_fen, event.succeeded) == (4360, True)
    assert event.out_refund_no == "FS20261120000102-REL"  # the release's own key


def test_unfreeze_alipay_made_itself_names_no_release_key() -> None:
    fields = freeze_notify_fields(
        notify_type="fund_auth_unfreeze", operation_type="UNFREEZE", out_request_no=""
    )
    assert verify(signed_notify(fields)).out_refund_no is None


def test_freeze_notify_with_status_closed_is_rejected_with_alert() -> None:
    error = rejected(signed_notify(freeze_notify_fields(status="CLOSED")))
    assert (error.reason, error.alert) == ("bad_status", True)


def test_freeze_notify_describing_another_operation_is_rejected() -> None:
    error = rejected(signed_notify(freeze_notify_fields(operation_type="UNFREEZE")))
    assert error.reason == "wrong_event_type"


def test_unknown_notify_type_is_rejected() -> None:
    error = rejected(signed_notify(trade_notify_fields(notify_type="trade_refund_sync")))
    assert error.reason == "wrong_event_type"


# --- case 19: sign / sign_type missing, SHA-1 downgrade -------------------------------------


@pytest.mark.parametrize("drop", ["sign", "sign_type"])
def test_missing_sign_or_sign_type_is_rejected(drop: str) -> None:
    fields = sign_notify(trade_notify_fields(), ALIPAY)
    del fields[drop]
    assert rejected(encode_form(fields)).reason == "missing_field"


def test_sha1_rsa_signature_is_rejected_even_when_it_is_valid() -> None:
    """The SDK, holding Alipay's key, signs with sign_type RSA (SHA-1): a valid signature of a
    downgraded kind."""
    fields = trade_notify_fields()
    sdk_signed = sdk_as_alipay("RSA").sign_data(dict(fields))
    body = sdk_signed.encode() + b"&sign_type=RSA"
    assert rejected(body).reason == "signature_type"


def test_rsa2_label_on_a_sha1_signature_fails_the_signature_check() -> None:
    fields = trade_notify_fields()
    sdk_signed = sdk_as_alipay("RSA").sign_data(dict(fields))
    assert rejected(sdk_signed.encode() + b"&sign_type=RSA2").reason == "bad_signature"


# --- case 20: fields changed after signing --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("total_amount", "3.00"),
        ("trade_status", "TRADE_FINISHED"),
        ("out_trade_no", "FS20261120000999"),
        ("seller_id", "2088000000000000"),
        ("out_biz_no", "X"),  # an empty field is signed too
    ],
)
def test_field_changed_after_signing_is_rejected(name: str, value: str) -> None:
    fields = sign_notify(trade_notify_fields(), ALIPAY)
    fields[name] = value
    assert rejected(encode_form(fields)).reason == "bad_signature"


# --- case 21: injected and duplicated fields ------------------------------------------------


def test_injected_field_is_rejected() -> None:
    fields = sign_notify(trade_notify_fields(), ALIPAY)
    fields["refund_fee"] = "300.00"
    assert rejected(encode_form(fields)).reason == "bad_signature"


def test_field_dropped_after_signing_is_rejected() -> None:
    fields = sign_notify(trade_notify_fields(), ALIPAY)
    del fields["out_biz_no"]
    assert rejected(encode_form(fields)).reason == "bad_signature"


@pytest.mark.parametrize("value", ["300.00", "3.00"])
def test_duplicated_field_is_rejected_whatever_its_value(value: str) -> None:
    body = signed_notify(trade_notify_fields()) + f"&total_amount={value}".encode()
    assert rejected(body).reason == "duplicate_field"


# --- case 22: encodings that must verify ----------------------------------------------------


def test_sign_with_plus_slash_and_equals_verifies_after_one_url_decode() -> None:
    notify_id = next(
        f"n{i}"
        for i in range(500)
        if {"+", "/"} <= set(sign_notify(trade_notify_fields(notify_id=f"n{i}"), ALIPAY)["sign"])
    )
    fields = sign_notify(trade_notify_fields(notify_id=notify_id), ALIPAY)
    assert fields["sign"].endswith("=")
    body = encode_form(fields)
    assert b"%2B" in body and b"%2F" in body and b"%3D" in body
    assert verify(body).event_id == notify_id
    # a sender that forgot to escape '+' still verifies: base64 has no spaces to confuse
    raw_plus = body.replace(b"%2B", b"+")
    assert verify(raw_plus).event_id == notify_id


def test_html_escaped_fund_bill_list_is_verified_as_sent() -> None:
    bills = (
        "[{&quot;amount&quot;:&quot;300.00&quot;,"
        "&quot;fundChannel&quot;:&quot;ALIPAYACCOUNT&quot;}]"
    )
    event = verify(signed_notify(trade_notify_fields(fund_bill_list=bills)))
    assert event.raw["fund_bill_list"] == bills


def test_gbk_notify_verifies_over_gbk_bytes() -> None:
    fields = trade_notify_fields(charset="gbk", subject="95#汽油 预授权转支付", body="一号站 油枪7")
    body = signed_notify(fields, "gbk")
    assert quote("汽油", encoding="gbk").encode() in body
    event = verify(body)
    assert event.raw["subject"] == "95#汽油 预授权转支付"


def test_gbk_notify_signed_over_utf8_bytes_is_rejected() -> None:
    fields = dict(trade_notify_fields(charset="gbk"))
    fields["sign_type"] = "RSA2"
    fields["sign"] = sign_content(notify_sign_content(fields), ALIPAY, "utf-8")
    assert rejected(encode_form(fields, "gbk")).reason == "bad_signature"


def test_content_type_charset_applies_when_the_form_names_none() -> None:
    fields = trade_notify_fields(subject="汽油")
    del fields["charset"]
    body = signed_notify(fields, "gbk")
    event = verify(body, "application/x-www-form-urlencoded; charset=GBK")
    assert event.raw["subject"] == "汽油"


# --- content checks after the signature -----------------------------------------------------


def test_someone_elses_app_id_is_rejected_with_alert() -> None:
    error = rejected(signed_notify(trade_notify_fields(app_id="2021999999999999")))
    assert (error.reason, error.alert) == ("unknown_merchant", True)


def test_someone_elses_seller_id_is_rejected_with_alert() -> None:
    error = rejected(signed_notify(trade_notify_fields(seller_id="2088999999999999")))
    assert (error.reason, error.alert) == ("unknown_merchant", True)


def test_someone_elses_payee_on_a_freeze_is_rejected_with_alert() -> None:
    error = rejected(signed_notify(freeze_notify_fields(payee_user_id="2088999999999999")))
    assert (error.reason, error.alert) == ("unknown_merchant", True)


@pytest.mark.parametrize("amount", ["300.001", "abc", "", "-1.00"])
def test_inexact_or_missing_amounts_are_rejected(amount: str) -> None:
    error = rejected(signed_notify(trade_notify_fields(total_amount=amount)))
    assert error.reason in ("bad_amount", "missing_field")


def test_bad_signature_is_checked_before_the_merchant() -> None:
    fields = sign_notify(trade_notify_fields(), rsa_key("other"))
    fields["app_id"] = "someone-else"
    error = rejected(encode_form(fields))
    assert (error.reason, error.alert) == ("bad_signature", False)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "bad_form"),
        (b"notify_id", "bad_form"),
        (b"charset=koi8-r&a=b", "bad_charset"),
        (b"charset=utf-8&subject=%C6%FB%D3%CD", "bad_encoding"),  # GBK bytes labelled utf-8
        (b"a%00b=1", "bad_form"),
    ],
)
def test_malformed_forms_are_rejected(body: bytes, reason: str) -> None:
    assert rejected(body).reason == reason


def test_ack_is_exactly_success_or_fail() -> None:
    assert ack_reply(True).body == b"success"
    assert ack_reply(True).status == 200
    assert ack_reply(False).body == b"fail"
