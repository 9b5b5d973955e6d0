"""Parsing and classifying WeChat Pay v3 answers.

Two rules shape this module. Every 2xx answer must carry a valid platform signature: an
unsigned one did not come from WeChat, whatever it says. And an error's *code* decides the
outcome, with the HTTP status only as a fallback: SYSTEM_ERROR and any 5xx mean "may or may not
have happened" (UNKNOWN: query, then retry with the same parameters), FREQUENCY_LIMITED and
request-format errors mean "refused before processing" (TECHNICAL_FAILURE), and business
refusals are DECLINED. The tables are data, so a new code is one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from channels.model import Outcome, PaymentState, RefundState
from channels.transport import Response
from channels.wechatpay.certificates import PlatformKeys
from channels.wechatpay.errors import ProtocolError
from channels.wechatpay.signing import SignedHeaders

__all__ = [
    "ERROR_OUTCOMES",
    "REFUND_STATES",
    "TRADE_STATES",
    "ApiError",
    "BillTicket",
    "RefundInfo",
    "Transaction",
    "check_signed",
    "classify_error",
    "parse_error",
    "parse_prepay",
    "parse_refund",
    "parse_tradebill_ticket",
    "parse_transaction",
    "refund_of",
    "transaction_of",
]

ERROR_OUTCOMES: Mapping[str, Outcome] = {
    "SYSTEM_ERROR": Outcome.UNKNOWN,
    "SYSTEMERROR": Outcome.UNKNOWN,
    "BANK_ERROR": Outcome.UNKNOWN,
    "BANKERROR": Outcome.UNKNOWN,
    "FREQUENCY_LIMITED": Outcome.TECHNICAL_FAILURE,
    "PARAM_ERROR": Outcome.TECHNICAL_FAILURE,
    "SIGN_ERROR": Outcome.TECHNICAL_FAILURE,
    "MCH_NOT_EXISTS": Outcome.TECHNICAL_FAILURE,
    "APPID_MCHID_NOT_MATCH": Outcome.TECHNICAL_FAILURE,
    "NO_AUTH": Outcome.TECHNICAL_FAILURE,
    "OUT_TRADE_NO_USED": Outcome.DECLINED,
    "ORDER_NOT_EXIST": Outcome.DECLINED,
    "ORDERNOTEXIST": Outcome.DECLINED,
    "RESOURCE_NOT_EXISTS": Outcome.DECLINED,
    "ORDER_CLOSED": Outcome.DECLINED,
    "ORDERPAID": Outcome.DECLINED,
    "INVALID_REQUEST": Outcome.DECLINED,
    "NOT_ENOUGH": Outcome.DECLINED,
    "USER_ACCOUNT_ABNORMAL": Outcome.DECLINED,
    "TRADE_ERROR": Outcome.DECLINED,
}

TRADE_STATES: Mapping[str, PaymentState] = {
    # a prepaid ceiling is, for the switch, a hold: captured is decided by what is refunded
    "SUCCESS": PaymentState.HELD,
    "REFUND": PaymentState.CAPTURED,
    "NOTPAY": PaymentState.AWAITING_CUSTOMER,
    "USERPAYING": PaymentState.AWAITING_CUSTOMER,
    "CLOSED": PaymentState.CLOSED,
    "REVOKED": PaymentState.CLOSED,
    "PAYERROR": PaymentState.FAILED,
}

REFUND_STATES: Mapping[str, RefundState] = {
    "PROCESSING": RefundState.PROCESSING,
    "SUCCESS": RefundState.SUCCESS,
    "ABNORMAL": RefundState.FAILED,
    "CLOSED": RefundState.FAILED,
}


@dataclass(frozen=True, slots=True)
class ApiError:
    status: int
    code: str
    message: str


def parse_error(response: Response) -> ApiError:
    """``{"code": .., "message": ..}``; a body that is not that still yields an error named
    after the status, so a proxy's HTML 502 classifies like any 5xx."""
    try:
        document = orjson.loads(response.body) if response.body else None
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("code"), str):
        message = document.get("message")
        return ApiError(response.status, document["code"], str(message or "")[:200])
    return ApiError(response.status, f"HTTP_{response.status}", "")


def classify_error(error: ApiError) -> Outcome:
    outcome = ERROR_OUTCOMES.get(error.code)
    if outcome is not None:
        return outcome
    if error.status >= 500:
        return Outcome.UNKNOWN
    if error.status in (400, 401, 429):
        return Outcome.TECHNICAL_FAILURE
    return Outcome.DECLINED


def check_signed(response: Response, keys: PlatformKeys, now: float) -> None:
    """Raises ``SignatureError`` unless the answer is signed by a platform key we hold."""
    keys.verify(SignedHeaders.from_headers(response.headers), response.body, now)


def _document(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", "answer is not JSON") from exc
    if not isinstance(document, dict):
        raise ProtocolError("bad_response", "answer is not a JSON object")
    return document


def _str(document: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = document.get(name)
    if isinstance(value, str) and value:
        return value
    if value is None and not required:
        return ""
    raise ProtocolError("bad_response", f"{name} missing or not a string")


def _fen(document: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = document.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("bad_response", f"{name} is not an amount of fen")
    return value


def parse_prepay(body: bytes) -> str:
    return _str(_document(body), "prepay_id")


@dataclass(frozen=True, slots=True)
class Transaction:
    """A payment as the query endpoints and TRANSACTION.* callbacks describe it."""

    mchid: str
    appid: str
    out_trade_no: str
    trade_state: str
    transaction_id: str | None
    total_fen: int
    payer_total_fen: int | None
    currency: str
    success_time: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def state(self) -> PaymentState:
        return TRADE_STATES[self.trade_state]


def transaction_of(document: Mapping[str, Any]) -> Transaction:
    trade_state = _str(document, "trade_state")
    if trade_state not in TRADE_STATES:
        raise ProtocolError("bad_response", f"trade_state {trade_state[:20]!r}")
    amount = document.get("amount")
    if not isinstance(amount, dict):
        raise ProtocolError("bad_response", "amount missing")
    return Transaction(
        mchid=_str(document, "mchid"),
        appid=_str(document, "appid"),
        out_trade_no=_str(document, "out_trade_no"),
        trade_state=trade_state,
        transaction_id=_str(document, "transaction_id", required=False) or None,
        total_fen=_fen(amount, "total") or 0,
        payer_total_fen=_fen(amount, "payer_total", required=False),
        currency=_str(amount, "currency", required=False) or "CNY",
        success_time=_str(document, "success_time", required=False),
        raw=document,
    )


def parse_transaction(body: bytes) -> Transaction:
    return transaction_of(_document(body))


@dataclass(frozen=True, slots=True)
class RefundInfo:
    """A refund as the refund endpoints and REFUND.* callbacks describe it."""

    out_refund_no: str
    refund_id: str
    status: str
    out_trade_no: str
    transaction_id: str | None
    refund_fen: int
    total_fen: int
    mchid: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def state(self) -> RefundState:
        return REFUND_STATES[self.status]


def refund_of(document: Mapping[str, Any], status_field: str = "status") -> RefundInfo:
    status = _str(document, status_field)
    if status not in REFUND_STATES:
        raise ProtocolError("bad_response", f"refund status {status[:20]!r}")
    amount = document.get("amount")
    if not isinstance(amount, dict):
        raise ProtocolError("bad_response", "amount missing")
    return RefundInfo(
        out_refund_no=_str(document, "out_refund_no"),
        refund_id=_str(document, "refund_id"),
        status=status,
        out_trade_no=_str(document, "out_trade_no"),
        transaction_id=_str(document, "transaction_id", required=False) or None,
        refund_fen=_fen(amount, "refund") or 0,
        total_fen=_fen(amount, "total") or 0,
        mchid=_str(document, "mchid", required=False),
        raw=document,
    )


def parse_refund(body: bytes) -> RefundInfo:
    return refund_of(_document(body))


@dataclass(frozen=True, slots=True)
class BillTicket:
    hash_type: str
    hash_value: str
    download_url: str


def parse_tradebill_ticket(body: bytes) -> BillTicket:
    document = _document(body)
    hash_type = _str(document, "hash_type")
    if hash_type != "SHA1":
        raise ProtocolError("bad_response", f"hash_type {hash_type[:20]!r}")
    return BillTicket(hash_type, _str(document, "hash_value"), _str(document, "download_url"))
