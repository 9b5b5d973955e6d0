"""Request builders for the WeChat Pay v3 endpoints the switch uses, and request signing.

Builders check what WeChat would refuse with PARAM_ERROR (key shapes, amounts) before anything
is sent: a refused request is a bug to fix, not a channel to mark unhealthy. They return
``channels.transport.Request`` without ``Authorization``; :func:`sign` adds it over the exact
body bytes that will be sent. Bodies are compact JSON, serialised once.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from channels.transport import Request
from channels.wechatpay.errors import ProtocolError
from channels.wechatpay.signing import rsa_sign, sign_request
from channels.wechatpay.times import to_rfc3339

__all__ = [
    "USER_AGENT",
    "certificates",
    "close",
    "download",
    "jsapi_pay_params",
    "jsapi_prepay",
    "query_by_id",
    "query_by_out_trade_no",
    "refund",
    "refund_query",
    "sign",
    "tradebill",
]

USER_AGENT = "fuelswitch/0.1 (wechatpay-v3)"
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_TRANSACTION_ID = re.compile(r"[0-9A-Za-z]{1,32}")
_HEADERS = {"Accept": "application/json", "User-Agent": USER_AGENT}


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ProtocolError("bad_request", f"{what} {str(value)[:40]!r} is not valid")
    return value


def _amount(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProtocolError("bad_request", f"{what} must be a positive integer of fen")
    return value


def _seg(value: str) -> str:
    return quote(value, safe="-_")


def _json(method: str, target: str, body: dict[str, Any]) -> Request:
    headers = {**_HEADERS, "Content-Type": "application/json"}
    return Request(method, target, headers, orjson.dumps(body))


def jsapi_prepay(
    *,
    appid: str,
    mchid: str,
    description: str,
    out_trade_no: str,
    notify_url: str,
    total_fen: int,
    openid: str,
    attach: str | None = None,
    time_expire: datetime | None = None,
) -> Request:
    if not description or len(description) > 127:
        raise ProtocolError("bad_request", "description must have 1 to 127 characters")
    if not openid:
        raise ProtocolError("bad_request", "JSAPI needs the payer's openid")
    body: dict[str, Any] = {
        "appid": appid,
        "mchid": mchid,
        "description": description,
        "out_trade_no": _check(_OUT_TRADE_NO, out_trade_no, "out_trade_no"),
        "notify_url": notify_url,
        "amount": {"total": _amount(total_fen, "amount.total"), "currency": "CNY"},
        "payer": {"openid": openid},
    }
    if attach:
        body["attach"] = attach
    if time_expire is not None:
        body["time_expire"] = to_rfc3339(time_expire)
    return _json("POST", "/v3/pay/transactions/jsapi", body)


def query_by_out_trade_no(out_trade_no: str, mchid: str) -> Request:
    no = _check(_OUT_TRADE_NO, out_trade_no, "out_trade_no")
    target = f"/v3/pay/transactions/out-trade-no/{_seg(no)}?{urlencode({'mchid': mchid})}"
    return Request("GET", target, dict(_HEADERS))


def query_by_id(transaction_id: str, mchid: str) -> Request:
    tid = _check(_TRANSACTION_ID, transaction_id, "transaction_id")
    target = f"/v3/pay/transactions/id/{tid}?{urlencode({'mchid': mchid})}"
    return Request("GET", target, dict(_HEADERS))


def close(out_trade_no: str, mchid: str) -> Request:
    no = _check(_OUT_TRADE_NO, out_trade_no, "out_trade_no")
    return _json("POST", f"/v3/pay/transactions/out-trade-no/{_seg(no)}/close", {"mchid": mchid})


def refund(
    *,
    out_refund_no: str,
    refund_fen: int,
    total_fen: int,
    out_trade_no: str | None = None,
    transaction_id: str | None = None,
    reason: str = "",
    notify_url: str | None = None,
) -> Request:
    body: dict[str, Any] = {}
    if transaction_id:
        body["transaction_id"] = _check(_TRANSACTION_ID, transaction_id, "transaction_id")
    elif out_trade_no:
        body["out_trade_no"] = _check(_OUT_TRADE_NO, out_trade_no, "out_trade_no")
    else:
        raise ProtocolError("bad_request", "a refund names out_trade_no or transaction_id")
    body["out_refund_no"] = _check(_OUT_REFUND_NO, out_refund_no, "out_refund_no")
    if reason:
        body["reason"] = reason[:80]
    if notify_url:
        body["notify_url"] = notify_url
    refund_fen, total_fen = _amount(refund_fen, "refund"), _amount(total_fen, "total")
    if refund_fen > total_fen:
        raise ProtocolError("bad_request", "a refund cannot exceed the payment's total")
    body["amount"] = {"refund": refund_fen, "total": total_fen, "currency": "CNY"}
    return _json("POST", "/v3/refund/domestic/refunds", body)


def refund_query(out_refund_no: str) -> Request:
    no = _check(_OUT_REFUND_NO, out_refund_no, "out_refund_no")
    return Request("GET", f"/v3/refund/domestic/refunds/{_seg(no)}", dict(_HEADERS))


def certificates() -> Request:
    return Request("GET", "/v3/certificates", dict(_HEADERS))


def tradebill(bill_date: date, bill_type: str = "ALL", tar_type: str | None = "GZIP") -> Request:
    query = {"bill_date": bill_date.isoformat(), "bill_type": bill_type}
    if tar_type:
        query["tar_type"] = tar_type
    return Request("GET", f"/v3/bill/tradebill?{urlencode(query)}", dict(_HEADERS))


def download(download_url: str) -> Request:
    """The bill download is a signed GET of the URL's path and query (its answer is not
    signed: the file is checked against the ticket's hash instead)."""
    parts = urlsplit(download_url)
    if not parts.path.startswith("/"):
        raise ProtocolError("bad_response", "download_url has no path")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return Request("GET", target, {"User-Agent": USER_AGENT})


def sign(
    request: Request,
    *,
    mchid: str,
    serial_no: str,
    private_key: RSAPrivateKey,
    timestamp: int,
    nonce: str,
) -> Request:
    auth = sign_request(
        request.method,
        request.target,
        request.body,
        mchid=mchid,
        serial_no=serial_no,
        private_key=private_key,
        timestamp=timestamp,
        nonce=nonce,
    )
    headers = {**request.headers, "Authorization": auth.header()}
    return Request(request.method, request.target, headers, request.body)


def jsapi_pay_params(
    appid: str, prepay_id: str, private_key: RSAPrivateKey, *, timestamp: int, nonce: str
) -> dict[str, str]:
    """What the mini-program hands to ``wx.requestPayment``: signed over
    ``appId\\ntimeStamp\\nnonceStr\\npackage\\n`` with the merchant key."""
    package = f"prepay_id={prepay_id}"
    message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
    return {
        "appId": appid,
        "timeStamp": str(timestamp),
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": rsa_sign(private_key, message),
    }
