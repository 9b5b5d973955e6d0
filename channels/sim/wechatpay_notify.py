"""WeChat's side of a notification, sans-IO: the resource, its AES-GCM envelope, the signature.

The simulator builds every TRANSACTION.* and REFUND.* callback here, and the callback-case
tests build their good and their deliberately broken callbacks with the same code, so a test
that breaks one byte breaks it in a message that is otherwise exactly what the simulator sends.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from channels.wechatpay import EncryptedResource, sign_response, to_rfc3339

__all__ = [
    "PlatformSigner",
    "notification_body",
    "random_nonce",
    "refund_resource",
    "signed_headers",
    "transaction_resource",
]

_NONCE_ALPHABET = string.ascii_letters + string.digits
SUMMARIES: Mapping[str, str] = {
    "TRANSACTION.SUCCESS": "支付成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}


@dataclass(frozen=True, slots=True)
class PlatformSigner:
    """A key WeChat signs with, named by the serial it puts in ``Wechatpay-Serial``: a
    platform certificate's upper-case hex serial, or a ``PUB_KEY_ID_...``."""

    serial: str
    private_key: RSAPrivateKey = field(repr=False)


def random_nonce(rng: random.Random, length: int = 12) -> str:
    return "".join(rng.choices(_NONCE_ALPHABET, k=length))


def transaction_resource(
    *,
    mchid: str,
    appid: str,
    out_trade_no: str,
    transaction_id: str,
    trade_state: str,
    total_fen: int,
    payer_total_fen: int,
    openid: str,
    success_time: float | None,
    attach: str = "",
    currency: str = "CNY",
) -> dict[str, Any]:
    """A transaction as the query endpoints answer it and TRANSACTION.* callbacks carry it."""
    out: dict[str, Any] = {
        "mchid": mchid,
        "appid": appid,
        "out_trade_no": out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": trade_state,
        "trade_state_desc": _STATE_DESC.get(trade_state, trade_state),
        "attach": attach,
        "payer": {"openid": openid},
        "amount": {
            "total": total_fen,
            "payer_total": payer_total_fen,
            "currency": currency,
            "payer_currency": currency,
        },
    }
    if transaction_id:
        out["transaction_id"] = transaction_id
        out["bank_type"] = "OTHERS"
    if success_time is not None:
        out["success_time"] = to_rfc3339(success_time)
    return out


_STATE_DESC: Mapping[str, str] = {
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "NOTPAY": "未支付",
    "CLOSED": "已关闭",
    "REVOKED": "已撤销",
    "USERPAYING": "用户支付中",
    "PAYERROR": "支付失败",
}


def refund_resource(
    *,
    mchid: str,
    out_trade_no: str,
    transaction_id: str,
    out_refund_no: str,
    refund_id: str,
    refund_status: str,
    refund_fen: int,
    total_fen: int,
    success_time: float | None,
) -> dict[str, Any]:
    """The decrypted resource of a REFUND.* callback (it carries no appid)."""
    out: dict[str, Any] = {
        "mchid": mchid,
        "out_trade_no": out_trade_no,
        "transaction_id": transaction_id,
        "out_refund_no": out_refund_no,
        "refund_id": refund_id,
        "refund_status": refund_status,
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": total_fen,
            "refund": refund_fen,
            "payer_total": total_fen,
            "payer_refund": refund_fen,
        },
    }
    if success_time is not None:
        out["success_time"] = to_rfc3339(success_time)
    return out


def notification_body(
    event_type: str,
    resource: Mapping[str, Any],
    *,
    apiv3_key: bytes,
    event_id: str,
    create_time: float,
    nonce: str,
    original_type: str | None = None,
    associated_data: str | None = None,
) -> bytes:
    """The JSON body of a callback, with ``resource`` sealed under the merchant's APIv3 key."""
    kind = original_type or ("refund" if event_type.startswith("REFUND.") else "transaction")
    sealed = EncryptedResource.seal(
        apiv3_key,
        orjson.dumps(dict(resource)),
        associated_data=kind if associated_data is None else associated_data,
        nonce=nonce,
        original_type=kind,
    )
    return orjson.dumps(
        {
            "id": event_id,
            "create_time": to_rfc3339(create_time),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": SUMMARIES.get(event_type, event_type),
            "resource": sealed.to_json(),
        }
    )


def signed_headers(
    body: bytes, signer: PlatformSigner, *, timestamp: int, nonce: str
) -> dict[str, str]:
    """The headers of a callback (or a signed answer) sent at ``timestamp``."""
    signed = sign_response(
        body, serial=signer.serial, private_key=signer.private_key, timestamp=timestamp, nonce=nonce
    )
    return {**signed.as_headers(), "Content-Type": "application/json"}
