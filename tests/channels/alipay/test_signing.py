"""Sign strings and RSA2, checked against python-alipay-sdk as an independent peer."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from channels.alipay import (
    ResponseError,
    notify_sign_content,
    parse_form,
    read_reply,
    request_sign_content,
    sign_content,
    sign_notify,
    sign_request,
    sign_response,
    split_signed_response,
    trade_query,
    trade_refund,
    verify_content,
)
from channels.alipay.signing import response_key
from tests.channels.alipay.support import APP_ID, rsa_key, sdk_as_alipay, sdk_as_merchant

APP = rsa_key("app")
ALIPAY = rsa_key("alipay")


def test_request_sign_string_skips_sign_and_empty_fields_sorted_unencoded() -> None:
    fields = {
        "timestamp": "2026-11-20 08:00:00",
        "app_id": APP_ID,
        "notify_url": "",
        "sign": "ignored",
        "biz_content": '{"subject":"a&b=c d+e"}',
    }
    assert request_sign_content(fields) == (
        'app_id=2021000000000001&biz_content={"subject":"a&b=c d+e"}&timestamp=2026-11-20 08:00:00'
    )


def test_notify_sign_string_keeps_empty_fields_and_drops_sign_type() -> None:
    fields = {"b": "", "a": "1", "sign_type": "RSA2", "sign": "x", "c": "%41"}
    assert notify_sign_content(fields) == "a=1&b=&c=%41"


def test_sdk_signed_request_verifies_with_our_rule() -> None:
    """The SDK signs a request as a merchant would; the simulator's check (our rule) accepts it,
    including a Chinese subject and characters that are special in forms."""
    sdk = sdk_as_merchant()
    query = sdk.client_api(
        "alipay.trade.create",
        {"out_trade_no": "FS1", "total_amount": "1.00", "subject": "92#汽油 a&b=c+d/e%"},
        notify_url="http://switch.example/callbacks/alipay",
    )
    fields = parse_form(query.encode()).fields
    assert fields["method"] == "alipay.trade.create"
    content = request_sign_content(fields)
    assert verify_content(content, fields["sign"], APP.public_key())
    assert not verify_content(content + "x", fields["sign"], APP.public_key())


def test_our_request_signature_equals_the_sdks() -> None:
    """PKCS#1 v1.5 is deterministic: the SDK signing our exact fields gives our exact sign."""
    call = trade_refund("FS20261120000101", 4320, "FS20261120000101-R1", "少加油 退款")
    fields = sign_request(call, app_id=APP_ID, key=APP, timestamp=datetime(2026, 11, 20, 8, 40))
    unsigned = {k: v for k, v in fields.items() if k != "sign"}
    sdk_string = sdk_as_merchant().sign_data(dict(unsigned))
    assert parse_form(sdk_string.encode()).fields["sign"] == fields["sign"]


def test_sdk_verifies_our_notify_signature() -> None:
    fields = {
        "notify_type": "trade_status_sync",
        "notify_id": "n1",
        "app_id": APP_ID,
        "out_biz_no": "",
        "subject": "95#汽油",
        "total_amount": "256.40",
    }
    signed = sign_notify(fields, ALIPAY)
    sign = signed.pop("sign")
    assert sdk_as_merchant().verify(dict(signed), sign) is True
    signed["total_amount"] = "256.41"
    assert sdk_as_merchant().verify(dict(signed), sign) is False


def test_sdk_signed_notify_verifies_with_our_rule() -> None:
    fields = {
        "notify_id": "n2",
        "app_id": APP_ID,
        "refund_fee": "",
        "trade_status": "TRADE_SUCCESS",
    }
    signed_string = sdk_as_alipay().sign_data(dict(fields))
    parsed = dict(parse_form(signed_string.encode()).fields)
    parsed["sign_type"] = "RSA2"
    assert verify_content(notify_sign_content(parsed), parsed["sign"], ALIPAY.public_key())


def test_response_signed_by_us_verifies_in_the_sdk_and_here() -> None:
    body = {"code": "10000", "msg": "Success", "trade_no": "2026", "subject": '中{文}"x'}
    raw = sign_response("alipay_trade_query_response", body, ALIPAY)
    sdk_view = sdk_as_merchant()._verify_and_return_sync_response(
        raw.decode(), "alipay_trade_query_response"
    )
    assert sdk_view == body
    assert read_reply(raw, "alipay.trade.query", ALIPAY.public_key()).body == body


def test_response_verification_uses_the_raw_member_text_not_a_reserialisation() -> None:
    """Alipay's own spacing and escapes are signed as they are; a re-serialised member would
    differ and fail."""
    member = (
        '{"code": "10000", "msg": "Success", "subject": "a\\/b \\u4e2d", "total_amount": "1.00"}'
    )
    sign = sign_content(member, ALIPAY)
    raw = f'{{\n  "alipay_trade_query_response": {member},\n  "sign": "{sign}"\n}}'.encode()
    assert orjson.dumps(orjson.loads(member)).decode() != member
    reply = read_reply(raw, "alipay.trade.query", ALIPAY.public_key())
    assert reply.body["subject"] == "a/b 中"
    sdk_view = sdk_as_merchant()._verify_and_return_sync_response(
        raw.decode(), "alipay_trade_query_response"
    )
    assert sdk_view["total_amount"] == "1.00"


def test_tampered_response_fails_here_and_in_the_sdk() -> None:
    raw = sign_response(
        "alipay_trade_query_response", {"code": "10000", "total_amount": "1.00"}, ALIPAY
    )
    forged = raw.replace(b'"1.00"', b'"9.00"')
    with pytest.raises(ResponseError) as caught:
        read_reply(forged, "alipay.trade.query", ALIPAY.public_key())
    assert caught.value.reason == "bad_response_signature"
    from alipay.exceptions import AliPayValidationError

    with pytest.raises(AliPayValidationError):
        sdk_as_merchant()._verify_and_return_sync_response(
            forged.decode(), "alipay_trade_query_response"
        )


def test_unsigned_and_foreign_signed_responses_are_refused() -> None:
    unsigned = b'{"alipay_trade_query_response":{"code":"10000"}}'
    with pytest.raises(ResponseError) as caught:
        read_reply(unsigned, "alipay.trade.query", ALIPAY.public_key())
    assert caught.value.reason == "bad_response_signature"
    other = sign_response("alipay_trade_query_response", {"code": "10000"}, rsa_key("other"))
    with pytest.raises(ResponseError):
        read_reply(other, "alipay.trade.query", ALIPAY.public_key())


def test_duplicate_response_member_is_refused() -> None:
    member = '{"code":"10000","total_amount":"1.00"}'
    sign = sign_content(member, ALIPAY)
    raw = (
        f'{{"alipay_trade_query_response":{member},'
        f'"alipay_trade_query_response":{{"code":"10000","total_amount":"999.00"}},'
        f'"sign":"{sign}"}}'
    ).encode()
    with pytest.raises(ResponseError) as caught:
        split_signed_response(raw, "alipay.trade.query")
    assert caught.value.reason == "bad_response"


def test_member_with_braces_and_escaped_quotes_inside_strings_is_cut_exactly() -> None:
    member = '{"code":"10000","memo":"} {\\" [","list":[{"a":"]"}],"n":1.5,"t":true}'
    raw = f'{{"sign":"x","alipay_trade_query_response":{member},"alipay_cert_sn":null}}'.encode()
    signed = split_signed_response(raw, "alipay.trade.query")
    assert signed.raw == member.encode()
    assert signed.sign == "x"


def test_error_response_member_is_read_when_the_method_member_is_absent() -> None:
    body = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"}
    raw = sign_response("error_response", body, ALIPAY)
    reply = read_reply(raw, "alipay.trade.query", ALIPAY.public_key())
    assert (reply.code, reply.sub_code) == ("40002", "isv.invalid-signature")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'{"sign":"x"}', b"{}"])
def test_malformed_responses_raise_response_error(raw: bytes) -> None:
    with pytest.raises(ResponseError):
        read_reply(raw, "alipay.trade.query", ALIPAY.public_key())


def test_signature_that_is_not_base64_does_not_verify() -> None:
    assert not verify_content("a=1", "not*base64!", ALIPAY.public_key())
    assert not verify_content("a=1", "", ALIPAY.public_key())


def test_response_key_names_follow_the_method() -> None:
    assert response_key(trade_query("FS1").method) == "alipay_trade_query_response"
    assert (
        response_key("alipay.fund.auth.order.app.freeze")
        == "alipay_fund_auth_order_app_freeze_response"
    )
