"""WECHATPAY2-SHA256-RSA2048: request Authorization and response signatures."""

from __future__ import annotations

import base64

import pytest

from channels.wechatpay import (
    SCHEMA,
    Authorization,
    SignatureError,
    SignedHeaders,
    request_message,
    response_message,
    rsa_sign,
    rsa_verify,
    sign_request,
    sign_response,
)
from tests.channels.wechatpay.support import MCHID, WxWorld


def test_request_message_is_five_newline_terminated_lines() -> None:
    message = request_message("post", "/v3/pay/transactions/jsapi", "1700000000", "N1", b'{"a":1}')
    assert message == b'POST\n/v3/pay/transactions/jsapi\n1700000000\nN1\n{"a":1}\n'


def test_empty_body_is_an_empty_line() -> None:
    message = request_message("GET", "/v3/certificates", "1700000000", "N1", b"")
    assert message == b"GET\n/v3/certificates\n1700000000\nN1\n\n"


def test_response_message_keeps_raw_bytes() -> None:
    body = '{ "b" : "支付" }'.encode()
    assert response_message("1", "n", body) == b"1\nn\n" + body + b"\n"


def test_authorization_round_trip(wx: WxWorld) -> None:
    body = b'{"mchid":"1900000109"}'
    auth = sign_request(
        "POST",
        "/v3/pay/transactions/out-trade-no/FS1234567/close",
        body,
        mchid=MCHID,
        serial_no=wx.merchant.merchant_serial,
        private_key=wx.merchant.private_key,
        timestamp=1_700_000_000,
        nonce="ABCDEF0123456789",
    )
    header = auth.header()
    assert header.startswith(f'{SCHEMA} mchid="{MCHID}",nonce_str="ABCDEF0123456789",signature="')
    parsed = Authorization.parse(header)
    assert parsed == auth
    public = wx.merchant.private_key.public_key()
    rsa_verify(
        public,
        parsed.message("POST", "/v3/pay/transactions/out-trade-no/FS1234567/close", body),
        parsed.signature,
    )
    with pytest.raises(SignatureError) as info:
        rsa_verify(public, parsed.message("POST", "/v3/other", body), parsed.signature)
    assert info.value.reason == "bad_signature"


_FIELDS = 'nonce_str="n",signature="s",timestamp="1",serial_no="S"'
_SOON = 'nonce_str="n",signature="s",timestamp="soon",serial_no="S"'


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f'WECHATPAY2-SHA1-RSA1024 mchid="1",{_FIELDS}', "signature_type"),
        (f'{SCHEMA} mchid="1",nonce_str="n",signature="s",timestamp="1"', "bad_authorization"),
        (f'{SCHEMA} mchid="1",{_FIELDS},x="y"', "bad_authorization"),
        (f'{SCHEMA} mchid="1",mchid="2",{_FIELDS}', "bad_authorization"),
        (f'{SCHEMA} mchid="1",{_SOON}', "bad_timestamp"),
        (f'{SCHEMA} mchid="",{_FIELDS}', "bad_authorization"),
        (f"{SCHEMA} mchid=1", "bad_authorization"),
        ("", "signature_type"),
    ],
)
def test_authorization_parse_is_strict(header: str, reason: str) -> None:
    with pytest.raises(SignatureError) as info:
        Authorization.parse(header)
    assert info.value.reason == reason


def test_signature_must_be_strict_base64_of_the_full_length(wx: WxWorld) -> None:
    key = wx.signer.private_key
    good = rsa_sign(key, b"message")
    rsa_verify(key.public_key(), b"message", good)
    raw = base64.b64decode(good)
    for bad in (
        good[:-8],  # truncated text
        base64.b64encode(raw[:-1]).decode(),  # one byte short, valid base64
        good.replace("=", "") if "=" in good else good + "=",
        "not base64 at all!",
        good[:10] + "*" + good[11:],
        "签名",
    ):
        with pytest.raises(SignatureError) as info:
            rsa_verify(key.public_key(), b"message", bad)
        assert info.value.reason == "bad_signature"


def test_signed_headers_round_trip(wx: WxWorld) -> None:
    body = b'{"prepay_id":"wx2611"}'
    signed = sign_response(
        body, serial=wx.signer.serial, private_key=wx.signer.private_key, timestamp=17, nonce="n"
    )
    lowered = {k.lower(): v for k, v in signed.as_headers().items()}
    parsed = SignedHeaders.from_headers(lowered)
    assert parsed == signed
    rsa_verify(wx.signer.private_key.public_key(), parsed.message(body), parsed.signature)


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce", "serial"])
def test_signed_headers_need_every_header_non_empty(missing: str) -> None:
    headers = {
        "wechatpay-signature": "c2ln",
        "wechatpay-timestamp": "1700000000",
        "wechatpay-nonce": "n",
        "wechatpay-serial": "ABC",
    }
    for value in (None, "", "  "):
        broken = dict(headers)
        if value is None:
            del broken[f"wechatpay-{missing}"]
        else:
            broken[f"wechatpay-{missing}"] = value
        with pytest.raises(SignatureError) as info:
            SignedHeaders.from_headers(broken)
        assert info.value.reason == "missing_header"


@pytest.mark.parametrize("timestamp", ["17e8", "-1", "1700000000.5", "\uff10\uff11\uff12"])
def test_signed_headers_need_a_numeric_timestamp(timestamp: str) -> None:
    headers = {
        "wechatpay-signature": "c2ln",
        "wechatpay-timestamp": timestamp,
        "wechatpay-nonce": "n",
        "wechatpay-serial": "ABC",
    }
    with pytest.raises(SignatureError) as info:
        SignedHeaders.from_headers(headers)
    assert info.value.reason == "bad_timestamp"
