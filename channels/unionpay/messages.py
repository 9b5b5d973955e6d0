"""ACP 5.1.0 messages: the form codec, field formats and request builders.

Requests, replies and notifies are ``application/x-www-form-urlencoded`` UTF-8. Every field is
signed, so a field that appears twice is refused outright: which copy a parser keeps is exactly
what an attacker would exploit.

Each ACP transaction has an ``orderId`` of its own: a pre-authorization, its completion, its
cancellation and each refund are separate transactions, the follow-ups pointing back with
``origQryId`` (the queryId UnionPay gave the original). So the switch's idempotency keys map
one-to-one onto orderIds: hold key, capture key, release key, refund key. Follow-ups also carry
the hold's key in ``reqReserved``, which UnionPay echoes in replies, notifies and the bill, so a
refund notify can be tied back to its payment without a lookup.

The customer-facing transactions (consume 01, pre-authorization 02) go to ``appTransReq.do``,
which answers with a ``tn`` the payer's UnionPay app control uses to confirm; the merchant-only
follow-ups go to ``backTransReq.do``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

from .errors import AcpError
from .signing import SIGN_METHOD_RSA, VERSION

__all__ = [
    "APP_TRANS_PATH",
    "BACK_TRANS_PATH",
    "BEIJING",
    "BIZ_TYPE",
    "CURRENCY_CNY",
    "FILE_TRANS_PATH",
    "QUERY_TRANS_PATH",
    "SUB_TYPE",
    "AcpRequest",
    "TxnType",
    "build_file_download",
    "build_follow_up",
    "build_hold",
    "build_query",
    "check_order_id",
    "decode_form",
    "encode_form",
    "format_amount",
    "format_txn_time",
    "parse_amount",
    "parse_txn_time",
]

APP_TRANS_PATH = "/gateway/api/appTransReq.do"
BACK_TRANS_PATH = "/gateway/api/backTransReq.do"
QUERY_TRANS_PATH = "/gateway/api/queryTrans.do"
FILE_TRANS_PATH = "/gateway/api/fileTransRequest.do"

CURRENCY_CNY = "156"
ENCODING = "UTF-8"
BEIJING = timezone(timedelta(hours=8), "CST")
MAX_FIELDS = 128


class TxnType(enum.Enum):
    QUERY = "00"
    CONSUME = "01"
    PREAUTH = "02"
    PREAUTH_COMPLETE = "03"
    REFUND = "04"
    PREAUTH_CANCEL = "32"
    PREAUTH_COMPLETE_CANCEL = "33"
    FILE_DOWNLOAD = "76"


# txnSubType and bizType per transaction type (bizType 000201: B2C gateway payments;
# 000000: the non-financial query and file services).
SUB_TYPE: Mapping[TxnType, str] = {
    TxnType.QUERY: "00",
    TxnType.CONSUME: "01",
    TxnType.PREAUTH: "01",
    TxnType.PREAUTH_COMPLETE: "00",
    TxnType.REFUND: "00",
    TxnType.PREAUTH_CANCEL: "00",
    TxnType.PREAUTH_COMPLETE_CANCEL: "00",
    TxnType.FILE_DOWNLOAD: "01",
}
BIZ_TYPE: Mapping[TxnType, str] = {
    t: ("000000" if t in (TxnType.QUERY, TxnType.FILE_DOWNLOAD) else "000201") for t in TxnType
}
FOLLOW_UPS = frozenset(
    {
        TxnType.PREAUTH_COMPLETE,
        TxnType.PREAUTH_CANCEL,
        TxnType.PREAUTH_COMPLETE_CANCEL,
        TxnType.REFUND,
    }
)

_ORDER_ID = re.compile(r"[0-9A-Za-z]{8,40}")
_AMOUNT = re.compile(r"[0-9]{1,12}")
_TXN_TIME = re.compile(r"[0-9]{14}")


@dataclass(frozen=True, slots=True)
class AcpRequest:
    """An unsigned request: where it goes and its fields (certId and signature come later)."""

    path: str
    txn_type: TxnType
    fields: Mapping[str, str]


def encode_form(fields: Mapping[str, str]) -> bytes:
    return urlencode(list(fields.items()), encoding="utf-8").encode("ascii")


def decode_form(body: bytes) -> dict[str, str]:
    """Form body → fields; ``AcpError`` for non-UTF-8 or malformed bodies and duplicate names."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise AcpError("bad_form", f"not a form-encoded UTF-8 body: {exc}") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise AcpError("duplicate_field", f"field {name!r} appears more than once")
        fields[name] = value
    return fields


def check_order_id(order_id: str) -> str:
    """ACP orderIds are 8-40 letters and digits (no ``-`` or ``_``)."""
    if not _ORDER_ID.fullmatch(order_id):
        raise AcpError("bad_order_id", f"orderId {order_id!r} is not 8-40 letters/digits")
    return order_id


def format_amount(fen: int) -> str:
    if isinstance(fen, bool) or not isinstance(fen, int) or fen <= 0 or fen >= 10**12:
        raise AcpError("bad_amount", f"txnAmt must be a positive integer of fen, got {fen!r}")
    return str(fen)


def parse_amount(text: str) -> int:
    if not _AMOUNT.fullmatch(text):
        raise AcpError("bad_amount", f"txnAmt {text!r} is not an integer of fen")
    return int(text)


def format_txn_time(when: datetime) -> str:
    """yyyyMMddHHmmss in Beijing time; naive datetimes are taken as Beijing time already."""
    if when.tzinfo is not None:
        when = when.astimezone(BEIJING)
    return when.strftime("%Y%m%d%H%M%S")


def parse_txn_time(text: str) -> datetime:
    if not _TXN_TIME.fullmatch(text):
        raise AcpError("bad_txn_time", f"txnTime {text!r} is not yyyyMMddHHmmss")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError as exc:
        raise AcpError("bad_txn_time", f"txnTime {text!r} is not a date") from exc


def _common(txn_type: TxnType, mer_id: str, txn_time: str) -> dict[str, str]:
    return {
        "version": VERSION,
        "encoding": ENCODING,
        "signMethod": SIGN_METHOD_RSA,
        "txnType": txn_type.value,
        "txnSubType": SUB_TYPE[txn_type],
        "bizType": BIZ_TYPE[txn_type],
        "accessType": "0",
        "merId": mer_id,
        "txnTime": txn_time,
    }


def build_hold(
    txn_type: TxnType,
    *,
    mer_id: str,
    order_id: str,
    txn_time: str,
    amount_fen: int,
    back_url: str,
    pay_timeout: str | None = None,
    order_desc: str = "",
) -> AcpRequest:
    """Consume (01) or pre-authorization (02) through the app control: the reply's ``tn`` goes
    to the payer's device, and the result comes by notify (or query)."""
    if txn_type not in (TxnType.CONSUME, TxnType.PREAUTH):
        raise AcpError("bad_txn_type", f"{txn_type} is not a customer transaction")
    fields = _common(txn_type, mer_id, txn_time)
    fields.update(
        channelType="08",
        orderId=check_order_id(order_id),
        txnAmt=format_amount(amount_fen),
        currencyCode=CURRENCY_CNY,
        backUrl=back_url,
    )
    if pay_timeout:
        fields["payTimeout"] = pay_timeout
    if order_desc:
        fields["orderDesc"] = order_desc[:32]
    return AcpRequest(APP_TRANS_PATH, txn_type, fields)


def build_follow_up(
    txn_type: TxnType,
    *,
    mer_id: str,
    order_id: str,
    txn_time: str,
    amount_fen: int,
    orig_qry_id: str,
    back_url: str,
    reserved: str,
) -> AcpRequest:
    """Completion (03), pre-auth cancel (32), completion cancel (33) or refund (04) of the
    transaction UnionPay calls ``orig_qry_id``; ``reserved`` is the hold/payment key."""
    if txn_type not in FOLLOW_UPS:
        raise AcpError("bad_txn_type", f"{txn_type} is not a follow-up transaction")
    if not orig_qry_id:
        raise AcpError("missing_field", "a follow-up needs the original queryId")
    fields = _common(txn_type, mer_id, txn_time)
    fields.update(
        channelType="07",
        orderId=check_order_id(order_id),
        origQryId=orig_qry_id,
        txnAmt=format_amount(amount_fen),
        currencyCode=CURRENCY_CNY,
        backUrl=back_url,
        reqReserved=reserved,
    )
    return AcpRequest(BACK_TRANS_PATH, txn_type, fields)


def build_query(
    *, mer_id: str, txn_time: str, order_id: str | None = None, query_id: str | None = None
) -> AcpRequest:
    """queryTrans by orderId (``txn_time`` = the original's txnTime, which with the orderId
    identifies it) or by UnionPay's queryId (``txn_time`` = when the query is sent)."""
    fields = _common(TxnType.QUERY, mer_id, txn_time)
    if order_id:
        fields["orderId"] = check_order_id(order_id)
    elif query_id:
        fields["queryId"] = query_id
    else:
        raise AcpError("missing_field", "a query needs an orderId or a queryId")
    return AcpRequest(QUERY_TRANS_PATH, TxnType.QUERY, fields)


def build_file_download(*, mer_id: str, txn_time: str, settle_date: str) -> AcpRequest:
    """Reconciliation file (txnType 76) for the clearing day ``settle_date`` (MMDD)."""
    if not re.fullmatch(r"(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])", settle_date):
        raise AcpError("bad_settle_date", f"settleDate {settle_date!r} is not MMDD")
    fields = _common(TxnType.FILE_DOWNLOAD, mer_id, txn_time)
    fields.update(settleDate=settle_date, fileType="00")
    return AcpRequest(FILE_TRANS_PATH, TxnType.FILE_DOWNLOAD, fields)
