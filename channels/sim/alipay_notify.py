"""Alipay's side of a notify, sans-IO: the field sets it posts, signed and form-encoded.

The simulator sends every ``trade_status_sync``, ``fund_auth_freeze`` and ``fund_auth_unfreeze``
from here, and the callback-case tests build their good and deliberately broken notifies with the
same functions, so a test that changes one field changes it in a notify that is otherwise exactly
what the simulator sends. ``fund_bill_list`` goes out HTML-escaped (``&quot;``) and signed that
way, as Alipay does.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay.forms import encode_form
from channels.alipay.signing import sign_notify
from channels.money import fen_to_yuan

__all__ = [
    "fund_auth_fields",
    "notify_accepted",
    "notify_send",
    "trade_sync_fields",
]


def trade_sync_fields(
    *,
    app_id: str,
    seller_id: str,
    notify_id: str,
    trade_no: str,
    out_trade_no: str,
    trade_status: str,
    total_fen: int,
    receipt_fen: int,
    subject: str,
    buyer_id: str,
    buyer_logon_id: str,
    gmt_create: str,
    gmt_payment: str = "",
    refund_fee_fen: int = 0,
    out_biz_no: str = "",
    gmt_refund: str = "",
    gmt_close: str = "",
    charset: str = "utf-8",
) -> dict[str, str]:
    """A ``trade_status_sync`` notify's fields (unsigned, without notify_time)."""
    fields = {
        "notify_type": "trade_status_sync",
        "notify_id": notify_id,
        "charset": charset,
        "version": "1.0",
        "app_id": app_id,
        "auth_app_id": app_id,
        "trade_no": trade_no,
        "out_trade_no": out_trade_no,
        "buyer_id": buyer_id,
        "buyer_logon_id": buyer_logon_id,
        "seller_id": seller_id,
        "trade_status": trade_status,
        "total_amount": fen_to_yuan(total_fen),
        "receipt_amount": fen_to_yuan(receipt_fen),
        "invoice_amount": fen_to_yuan(receipt_fen),
        "buyer_pay_amount": fen_to_yuan(receipt_fen),
        "point_amount": "0.00",
        "subject": subject,
        "gmt_create": gmt_create,
    }
    if gmt_payment:
        fields["gmt_payment"] = gmt_payment
        channel = {"amount": fen_to_yuan(receipt_fen), "fundChannel": "ALIPAYACCOUNT"}
        fields["fund_bill_list"] = _html_escaped(orjson.dumps([channel]).decode())
    if refund_fee_fen:
        fields["refund_fee"] = fen_to_yuan(refund_fee_fen)
        fields["out_biz_no"] = out_biz_no
        fields["gmt_refund"] = gmt_refund
    if gmt_close:
        fields["gmt_close"] = gmt_close
    return fields


def fund_auth_fields(
    *,
    notify_type: str,
    app_id: str,
    seller_id: str,
    notify_id: str,
    auth_no: str,
    out_order_no: str,
    operation_id: str,
    out_request_no: str,
    amount_fen: int,
    status: str,
    total_freeze_fen: int,
    total_unfreeze_fen: int,
    total_pay_fen: int,
    rest_fen: int,
    payer_user_id: str,
    gmt_create: str,
    gmt_trans: str,
    charset: str = "utf-8",
) -> dict[str, str]:
    """A ``fund_auth_freeze`` / ``fund_auth_unfreeze`` notify's fields (unsigned)."""
    operation = {"fund_auth_freeze": "FREEZE", "fund_auth_unfreeze": "UNFREEZE"}[notify_type]
    return {
        "notify_type": notify_type,
        "notify_id": notify_id,
        "charset": charset,
        "version": "1.0",
        "app_id": app_id,
        "auth_no": auth_no,
        "out_order_no": out_order_no,
        "operation_id": operation_id,
        "out_request_no": out_request_no,
        "operation_type": operation,
        "amount": fen_to_yuan(amount_fen),
        "status": status,
        "gmt_create": gmt_create,
        "gmt_trans": gmt_trans,
        "payer_user_id": payer_user_id,
        "payee_user_id": seller_id,
        "total_freeze_amount": fen_to_yuan(total_freeze_fen),
        "total_unfreeze_amount": fen_to_yuan(total_unfreeze_fen),
        "total_pay_amount": fen_to_yuan(total_pay_fen),
        "rest_amount": fen_to_yuan(rest_fen),
        "trans_currency": "CNY",
    }


def notify_send(
    fields: Mapping[str, str], key: rsa.RSAPrivateKey, notify_time: str
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one send: stamped with its own notify_time and signed for it."""
    charset = fields.get("charset", "utf-8")
    stamped = {"notify_time": notify_time, **fields}
    body = encode_form(sign_notify(stamped, key, charset), charset)
    return {"content-type": f"application/x-www-form-urlencoded; charset={charset}"}, body


def notify_accepted(status: int, body: bytes) -> bool:
    """Alipay's rule: only a body of exactly ``success`` stops the retries."""
    return status == 200 and body == b"success"


def _html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;")
