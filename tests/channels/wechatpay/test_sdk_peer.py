"""The wechatpayv3 SDK as an independent peer, without a network: what it signs we verify,
what we sign and encrypt it verifies and decrypts. The SDK has no AES-GCM *encryption* (a
merchant never encrypts resources) and no request *verifier* (a merchant never receives
requests), so those two directions use its primitives as far as they go. Over HTTP, with the
SDK as a client of the simulator, see test_interop.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import aes_decrypt, build_authorization, rsa_sign, rsa_verify

from channels.wechatpay import (
    Authorization,
    EncryptedResource,
    SignedHeaders,
    jsapi_pay_params,
    request_message,
    sign_request,
    verify_callback,
)
from channels.wechatpay import rsa_verify as our_rsa_verify
from channels.wechatpay.keygen import key_pem, public_key_pem
from tests.channels.wechatpay.support import APPID, MCHID, WxWorld


def _sdk(wx: WxWorld, cert_dir: Path | None = None, *, public_key: bool = False) -> Any:
    """An SDK client that needs no network: platform certificates from ``cert_dir``, or the
    merchant's WeChat Pay public key."""
    extra: dict[str, Any] = {}
    if public_key:
        pub = wx.pub_signer
        extra = {
            "public_key": public_key_pem(pub.private_key.public_key()).decode(),
            "public_key_id": pub.serial,
        }
    else:
        assert cert_dir is not None
        for cert in wx.keys.certs.values():
            (cert_dir / f"{cert.serial}.pem").write_bytes(cert.pem())
        extra = {"cert_dir": str(cert_dir)}
    return WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=MCHID,
        private_key=key_pem(wx.merchant.private_key).decode(),
        cert_serial_no=wx.merchant.merchant_serial,
        appid=APPID,
        apiv3_key=wx.merchant.apiv3_key.decode(),
        notify_url="https://switch.example/callbacks/wechatpay",
        **extra,
    )


def test_sdk_request_signature_verifies_with_our_code(wx: WxWorld) -> None:
    data = {"mchid": MCHID, "description": "92# 汽油", "amount": {"total": 1, "currency": "CNY"}}
    path = "/v3/pay/transactions/jsapi"
    header = build_authorization(
        path, "POST", MCHID, wx.merchant.merchant_serial, wx.merchant.private_key, data=data
    )
    auth = Authorization.parse(header)
    assert (auth.mchid, auth.serial_no) == (MCHID, wx.merchant.merchant_serial)
    body = json.dumps(data).encode()  # what the SDK signs (and what requests sends as json=)
    our_rsa_verify(
        wx.merchant.private_key.public_key(), auth.message("POST", path, body), auth.signature
    )
    # PKCS#1 v1.5 is deterministic: with the SDK's timestamp and nonce we sign the same bytes
    ours = sign_request(
        "POST",
        path,
        body,
        mchid=MCHID,
        serial_no=wx.merchant.merchant_serial,
        private_key=wx.merchant.private_key,
        timestamp=int(auth.timestamp),
        nonce=auth.nonce_str,
    )
    assert ours.signature == auth.signature


def test_our_request_signature_verifies_with_the_sdk_primitive(wx: WxWorld) -> None:
    """The SDK has no request verifier; its response verifier checks ``A\\nB\\nC\\n``, and a
    request message is ``METHOD\\nPATH\\nTS\\nNONCE\\nBODY\\n`` — the same shape with the
    first three lines folded into its three slots."""
    body = b'{"mchid":"1900000109"}'
    auth = sign_request(
        "POST",
        "/v3/pay/transactions/out-trade-no/FS20261120000001/close",
        body,
        mchid=MCHID,
        serial_no=wx.merchant.merchant_serial,
        private_key=wx.merchant.private_key,
        timestamp=int(time.time()),
        nonce="0123456789ABCDEF",
    )
    message = request_message(
        "POST",
        "/v3/pay/transactions/out-trade-no/FS20261120000001/close",
        auth.timestamp,
        auth.nonce_str,
        body,
    )
    head, _, rest = message.decode().partition("\n")
    path, _, rest = rest.partition("\n")
    assert rsa_verify(
        f"{head}\n{path}",
        auth.timestamp,
        f"{auth.nonce_str}\n{body.decode()}",
        auth.signature,
        wx.merchant.private_key.public_key(),
    )


def test_sdk_accepts_our_callback_signed_with_a_platform_certificate(
    wx: WxWorld, tmp_path: Path
) -> None:
    sdk = _sdk(wx, tmp_path)
    headers, body = wx.callback()
    result = sdk.callback(headers, body)
    assert result is not None
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource"]["out_trade_no"] == "FS20261120000001"
    assert result["resource"]["amount"]["total"] == 20000
    # and refuses what we refuse
    assert sdk.callback(headers, body.replace(b"EV-", b"EW-")) is None


def test_sdk_accepts_our_callback_signed_with_the_public_key(wx: WxWorld) -> None:
    sdk = _sdk(wx, public_key=True)
    body = wx.body("REFUND.SUCCESS", wx.refund())
    result = sdk.callback(wx.headers(body, signer=wx.pub_signer), body)
    assert result is not None
    assert result["resource"]["refund_status"] == "SUCCESS"


def test_sdk_decrypts_our_resource(wx: WxWorld) -> None:
    plaintext = orjson.dumps(wx.payment())
    sealed = EncryptedResource.seal(
        wx.merchant.apiv3_key, plaintext, associated_data="transaction", nonce="abcdefghijkl"
    )
    decrypted = aes_decrypt(
        sealed.nonce, sealed.ciphertext, sealed.associated_data, wx.merchant.apiv3_key.decode()
    )
    assert decrypted == plaintext.decode()
    assert (
        aes_decrypt(sealed.nonce, sealed.ciphertext, "refund", wx.merchant.apiv3_key.decode())
        is None
    )


def test_callback_signed_by_the_sdk_verifies_with_our_code(wx: WxWorld) -> None:
    """The SDK's signing primitive plays WeChat: the platform key signs ``TS\\nNONCE\\nBODY\\n``."""
    body = wx.body("TRANSACTION.SUCCESS", wx.payment())
    timestamp, nonce = str(int(time.time())), "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
    signature = rsa_sign(wx.signer.private_key, f"{timestamp}\n{nonce}\n{body.decode()}\n")
    headers = {
        k.lower(): v
        for k, v in SignedHeaders(wx.signer.serial, signature, timestamp, nonce)
        .as_headers()
        .items()
    }
    event = verify_callback(headers, body, time.time(), keys=wx.keys, policy=wx.policy())
    assert event.succeeded and event.out_trade_no == "FS20261120000001"


def test_sdk_verifies_our_response_signature(wx: WxWorld) -> None:
    body = '{"prepay_id":"wx26112221580621e9b071c00d9e093b0000"}'
    headers = wx.headers(body.encode())
    public = wx.signer.private_key.public_key()
    assert rsa_verify(
        headers["wechatpay-timestamp"],
        headers["wechatpay-nonce"],
        body,
        headers["wechatpay-signature"],
        public,
    )


def test_jsapi_pay_params_match_the_sdk(wx: WxWorld, tmp_path: Path) -> None:
    sdk = _sdk(wx, tmp_path)
    params = jsapi_pay_params(
        APPID,
        "wx26112221580621e9b071c00d9e093b0000",
        wx.merchant.private_key,
        timestamp=1795000000,
        nonce="NONCE123",
    )
    expected = sdk.sign(
        [APPID, "1795000000", "NONCE123", "prepay_id=wx26112221580621e9b071c00d9e093b0000"]
    )
    assert params["paySign"] == expected
