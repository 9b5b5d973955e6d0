"""Gateway requests: one builder per method, and the signed form that carries it.

Every method goes to ``POST /gateway.do`` as a form: the common fields (app_id, method,
format, charset, sign_type, timestamp, version, notify_url) plus ``biz_content``, the method's
own parameters as JSON, all covered by ``sign``. Builders only assemble ``biz_content``; the
idempotency keys in it come from the caller (the switch journaled them before sending), never
from here. Amounts go out as exact yuan strings built from integer fen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay.errors import RequestError
from channels.alipay.signing import SIGN_TYPE, request_sign_content, sign_content
from channels.money import fen_to_yuan

__all__ = [
    "BILL_DOWNLOADURL_QUERY",
    "CHINA",
    "FUND_DETAIL_QUERY",
    "FUND_FREEZE",
    "FUND_OPERATION_CANCEL",
    "FUND_UNFREEZE",
    "GATEWAY_PATH",
    "PRE_AUTH_ONLINE",
    "TRADE_CANCEL",
    "TRADE_CLOSE",
    "TRADE_CREATE",
    "TRADE_PAY",
    "TRADE_QUERY",
    "TRADE_REFUND",
    "TRADE_REFUND_QUERY",
    "BizCall",
    "bill_download_url",
    "fund_detail_query",
    "fund_freeze",
    "fund_operation_cancel",
    "fund_unfreeze",
    "gateway_timestamp",
    "sign_request",
    "trade_cancel",
    "trade_close",
    "trade_create",
    "trade_pay_capture",
    "trade_query",
    "trade_refund",
    "trade_refund_query",
]

GATEWAY_PATH = "/gateway.do"
CHINA = timezone(timedelta(hours=8), "CST")  # Alipay's clock: timestamps and bills
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
PRE_AUTH_ONLINE = "PRE_AUTH_ONLINE"

TRADE_CREATE = "alipay.trade.create"
TRADE_PAY = "alipay.trade.pay"
TRADE_QUERY = "alipay.trade.query"
TRADE_CLOSE = "alipay.trade.close"
TRADE_CANCEL = "alipay.trade.cancel"
TRADE_REFUND = "alipay.trade.refund"
TRADE_REFUND_QUERY = "alipay.trade.fastpay.refund.query"
FUND_FREEZE = "alipay.fund.auth.order.app.freeze"
FUND_UNFREEZE = "alipay.fund.auth.order.unfreeze"
FUND_DETAIL_QUERY = "alipay.fund.auth.operation.detail.query"
FUND_OPERATION_CANCEL = "alipay.fund.auth.operation.cancel"
BILL_DOWNLOADURL_QUERY = "alipay.data.dataservice.bill.downloadurl.query"

_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True, slots=True)
class BizCall:
    """One gateway method and its ``biz_content``; ``notifies`` when Alipay will call back."""

    method: str
    biz: Mapping[str, Any]
    notifies: bool = False


def gateway_timestamp(when: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time; a naive datetime is taken as Beijing time."""
    if when.tzinfo is not None:
        when = when.astimezone(CHINA)
    return when.strftime(TIMESTAMP_FORMAT)


def sign_request(
    call: BizCall,
    *,
    app_id: str,
    key: rsa.RSAPrivateKey,
    timestamp: datetime,
    notify_url: str | None = None,
    charset: str = "utf-8",
) -> dict[str, str]:
    """The complete signed field set of a gateway request."""
    fields = {
        "app_id": app_id,
        "method": call.method,
        "format": "JSON",
        "charset": charset,
        "sign_type": SIGN_TYPE,
        "timestamp": gateway_timestamp(timestamp),
        "version": "1.0",
        "biz_content": orjson.dumps(dict(call.biz)).decode("utf-8"),
    }
    if call.notifies and notify_url:
        fields["notify_url"] = notify_url
    fields["sign"] = sign_content(request_sign_content(fields), key, charset)
    return fields


def trade_create(
    out_trade_no: str,
    amount_fen: int,
    subject: str,
    buyer_id: str,
    *,
    time_expire: datetime | None = None,
) -> BizCall:
    """A mini-program trade (``buyer_id`` is the payer's Alipay user id) → ``trade_no``."""
    biz: dict[str, Any] = {
        "out_trade_no": _key(out_trade_no, "out_trade_no"),
        "total_amount": _yuan(amount_fen),
        "subject": _subject(subject),
        "buyer_id": buyer_id,
        "product_code": "JSAPI_PAY",
    }
    if time_expire is not None:
        biz["time_expire"] = gateway_timestamp(time_expire)
    return BizCall(TRADE_CREATE, biz, notifies=True)


def trade_pay_capture(
    out_trade_no: str, auth_no: str, amount_fen: int, subject: str, *, seller_id: str = ""
) -> BizCall:
    """Turn frozen funds into a payment of ``amount_fen``; ``COMPLETE`` unfreezes the rest in
    the same step, so no hold is left open after a capture."""
    biz: dict[str, Any] = {
        "out_trade_no": _key(out_trade_no, "out_trade_no"),
        "total_amount": _yuan(amount_fen),
        "subject": _subject(subject),
        "product_code": PRE_AUTH_ONLINE,
        "auth_no": _key(auth_no, "auth_no"),
        "auth_confirm_mode": "COMPLETE",
    }
    if seller_id:
        biz["seller_id"] = seller_id
    return BizCall(TRADE_PAY, biz, notifies=True)


def trade_query(out_trade_no: str = "", trade_no: str = "") -> BizCall:
    return BizCall(TRADE_QUERY, _trade_ref(out_trade_no, trade_no))


def trade_close(out_trade_no: str = "", trade_no: str = "") -> BizCall:
    return BizCall(TRADE_CLOSE, _trade_ref(out_trade_no, trade_no), notifies=True)


def trade_cancel(out_trade_no: str = "", trade_no: str = "") -> BizCall:
    return BizCall(TRADE_CANCEL, _trade_ref(out_trade_no, trade_no))


def trade_refund(
    out_trade_no: str, refund_fen: int, out_request_no: str, reason: str = ""
) -> BizCall:
    """``out_request_no`` is the refund's idempotency key: a retry must reuse it, or Alipay
    refunds twice."""
    biz: dict[str, Any] = {
        "out_trade_no": _key(out_trade_no, "out_trade_no"),
        "refund_amount": _yuan(refund_fen),
        "out_request_no": _key(out_request_no, "out_request_no"),
    }
    if reason:
        biz["refund_reason"] = reason[:256]
    return BizCall(TRADE_REFUND, biz)


def trade_refund_query(out_trade_no: str, out_request_no: str) -> BizCall:
    return BizCall(
        TRADE_REFUND_QUERY,
        {
            "out_trade_no": _key(out_trade_no, "out_trade_no"),
            "out_request_no": _key(out_request_no, "out_request_no"),
        },
    )


def fund_freeze(
    out_order_no: str,
    out_request_no: str,
    amount_fen: int,
    order_title: str,
    *,
    payee_user_id: str = "",
    payer_user_id: str = "",
    timeout_minutes: int | None = None,
) -> BizCall:
    """An online pre-authorization: the payer confirms in the Alipay app, then the funds are
    frozen (AUTHORIZED) and a ``fund_auth_freeze`` notify follows."""
    biz: dict[str, Any] = {
        "out_order_no": _key(out_order_no, "out_order_no"),
        "out_request_no": _key(out_request_no, "out_request_no"),
        "order_title": _subject(order_title),
        "amount": _yuan(amount_fen),
        "product_code": PRE_AUTH_ONLINE,
    }
    if payee_user_id:
        biz["payee_user_id"] = payee_user_id
    if payer_user_id:
        biz["payer_user_id"] = payer_user_id
    if timeout_minutes is not None:
        biz["timeout_express"] = f"{max(1, min(timeout_minutes, 15 * 24 * 60))}m"
    return BizCall(FUND_FREEZE, biz, notifies=True)


def fund_unfreeze(auth_no: str, out_request_no: str, amount_fen: int, remark: str) -> BizCall:
    return BizCall(
        FUND_UNFREEZE,
        {
            "auth_no": _key(auth_no, "auth_no"),
            "out_request_no": _key(out_request_no, "out_request_no"),
            "amount": _yuan(amount_fen),
            "remark": _subject(remark),
        },
        notifies=True,
    )


def fund_detail_query(
    *, out_order_no: str = "", auth_no: str = "", out_request_no: str = ""
) -> BizCall:
    """The freeze order's state (order_status, rest_amount, total_pay_amount) seen through one
    of its operations — the freeze itself when ``out_request_no`` is the freeze's."""
    if not (out_order_no or auth_no):
        raise RequestError("bad_key", "out_order_no or auth_no is required")
    biz: dict[str, Any] = {}
    if auth_no:
        biz["auth_no"] = _key(auth_no, "auth_no")
    else:
        biz["out_order_no"] = _key(out_order_no, "out_order_no")
    if out_request_no:
        biz["out_request_no"] = _key(out_request_no, "out_request_no")
    return BizCall(FUND_DETAIL_QUERY, biz)


def fund_operation_cancel(out_order_no: str, out_request_no: str, remark: str) -> BizCall:
    """Undo a freeze operation by its own keys: closes a freeze the payer has not confirmed,
    unfreezes one they have. Needs no new idempotency key, which suits ``Channel.close``."""
    return BizCall(
        FUND_OPERATION_CANCEL,
        {
            "out_order_no": _key(out_order_no, "out_order_no"),
            "out_request_no": _key(out_request_no, "out_request_no"),
            "remark": _subject(remark),
        },
    )


def bill_download_url(bill_date: date, bill_type: str = "trade") -> BizCall:
    return BizCall(
        BILL_DOWNLOADURL_QUERY,
        {"bill_type": bill_type, "bill_date": bill_date.isoformat()},
    )


def _trade_ref(out_trade_no: str, trade_no: str) -> dict[str, Any]:
    if not (out_trade_no or trade_no):
        raise RequestError("bad_key", "out_trade_no or trade_no is required")
    biz: dict[str, Any] = {}
    if out_trade_no:
        biz["out_trade_no"] = _key(out_trade_no, "out_trade_no")
    if trade_no:
        biz["trade_no"] = _key(trade_no, "trade_no")
    return biz


def _key(value: str, name: str) -> str:
    if not _KEY.fullmatch(value):
        raise RequestError("bad_key", f"{name} must be 1-64 letters, digits, '_' or '-'")
    return value


def _yuan(amount_fen: int) -> str:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise RequestError("bad_amount", f"amount must be a positive number of fen: {amount_fen!r}")
    return fen_to_yuan(amount_fen)


def _subject(text: str) -> str:
    """Alipay refuses subjects over 256 characters and some control characters."""
    cleaned = "".join(ch for ch in text if ch.isprintable()).strip()
    return cleaned[:256] or "-"
