"""Keys, SDK peers and notify fields shared by the Alipay tests.

RSA key generation is slow, so each named key is made once per test session. The SDK
(``python-alipay-sdk``) is an independent implementation used as a peer: it signs as the
merchant (requests) or, given Alipay's private key as its "app" key, as Alipay (notifies).
"""

from __future__ import annotations

import functools
from typing import Any

from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay import encode_form, sign_notify

APP_ID = "2021000000000001"
SELLER_ID = "2088123456789012"
CHANNEL = "alipay-main"


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """A 2048-bit key per name: "app", "alipay", "other"..."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sdk_as_merchant(sign_type: str = "RSA2") -> Any:
    """The SDK configured as our merchant: signs with the app key, verifies Alipay's."""
    return AliPay(
        appid=APP_ID,
        app_notify_url=None,
        app_private_key_string=private_pem(rsa_key("app")),
        alipay_public_key_string=public_pem(rsa_key("alipay")),
        sign_type=sign_type,
    )


def sdk_as_alipay(sign_type: str = "RSA2") -> Any:
    """The SDK holding Alipay's private key as its signing key: it signs what Alipay signs."""
    return AliPay(
        appid=APP_ID,
        app_notify_url=None,
        app_private_key_string=private_pem(rsa_key("alipay")),
        alipay_public_key_string=public_pem(rsa_key("app")),
        sign_type=sign_type,
    )


def trade_notify_fields(**overrides: str) -> dict[str, str]:
    """A trade_status_sync notify as Alipay sends it, unsigned."""
    fields = {
        "notify_time": "2026-11-20 08:02:16",
        "notify_type": "trade_status_sync",
        "notify_id": "2026112000222080215000001234567890",
        "charset": "utf-8",
        "version": "1.0",
        "app_id": APP_ID,
        "auth_app_id": APP_ID,
        "trade_no": "2026112022001400001000000001",
        "out_trade_no": "FS20261120000101",
        "out_biz_no": "",
        "buyer_id": "2088102177846880",
        "buyer_logon_id": "z***@example.com",
        "seller_id": SELLER_ID,
        "seller_email": "forecourt@example.com",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "300.00",
        "receipt_amount": "300.00",
        "invoice_amount": "300.00",
        "buyer_pay_amount": "300.00",
        "point_amount": "0.00",
        "subject": "92#汽油 300元",
        "gmt_create": "2026-11-20 08:02:11",
        "gmt_payment": "2026-11-20 08:02:15",
        "fund_bill_list": '[{"amount":"300.00","fundChannel":"ALIPAYACCOUNT"}]',
    }
    fields.update(overrides)
    return fields


def freeze_notify_fields(**overrides: str) -> dict[str, str]:
    """A fund_auth_freeze notify, unsigned."""
    fields = {
        "notify_time": "2026-11-20 09:15:50",
        "notify_type": "fund_auth_freeze",
        "notify_id": "2026112000222091550000009876543210",
        "charset": "utf-8",
        "version": "1.0",
        "app_id": APP_ID,
        "auth_no": "2026112010002001230012345678",
        "out_order_no": "FS20261120000102",
        "operation_id": "20261120100020001230098765",
        "out_request_no": "FS20261120000102",
        "operation_type": "FREEZE",
        "amount": "300.00",
        "status": "SUCCESS",
        "gmt_create": "2026-11-20 09:15:40",
        "gmt_trans": "2026-11-20 09:15:49",
        "payer_user_id": "2088102177846880",
        "payee_user_id": SELLER_ID,
        "total_freeze_amount": "300.00",
        "total_unfreeze_amount": "0.00",
        "total_pay_amount": "0.00",
        "rest_amount": "300.00",
        "trans_currency": "CNY",
    }
    fields.update(overrides)
    return fields


def signed_notify(fields: dict[str, str], charset: str = "utf-8") -> bytes:
    """Sign as Alipay and form-encode, the way the simulator sends a notify."""
    return encode_form(sign_notify(fields, rsa_key("alipay"), charset), charset)
