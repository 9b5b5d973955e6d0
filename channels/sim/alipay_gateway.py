"""The simulated ``/gateway.do``: request verification, method dispatch, signed answers, bills.

Checks in the gateway's order: the form is unambiguous; app_id names a registered app; sign and
sign_type are there and RSA2; the signature verifies with the public key that app uploaded (over
the request sign string, in the request's charset); the method is known; the timestamp has the
gateway's format; biz_content is a JSON object. Each refusal is the gateway's own code (40001
missing, 40002 invalid) and, like every answer, signed with Alipay's key over the exact JSON of
the response member, in the request's charset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Any

import orjson

from channels.alipay import requests as methods
from channels.alipay.errors import FormError
from channels.alipay.forms import codec_for, parse_form
from channels.alipay.requests import CHINA, TIMESTAMP_FORMAT
from channels.alipay.signing import (
    SIGN_TYPE,
    request_sign_content,
    response_key,
    sign_response,
    verify_content,
)
from channels.sim.alipay_bill import BillLine, build_bill_zip
from channels.sim.alipay_book import ALIPAY, AlipayBook, Call, fail, ok, text_of
from channels.sim.alipay_fundauth import detail_query, freeze, operation_cancel, unfreeze
from channels.sim.alipay_trades import (
    trade_cancel,
    trade_close,
    trade_create,
    trade_pay,
    trade_query,
    trade_refund,
    trade_refund_query,
    trade_total,
)
from channels.sim.ledger import Trade

__all__ = ["HANDLERS", "bill_lines", "handle_gateway"]

Handler = Callable[[AlipayBook, Call], Awaitable[dict[str, Any]]]
MAX_KEPT_BILLS = 64


async def bill_download_url(book: AlipayBook, call: Call) -> dict[str, Any]:
    """A download URL for a past day's bill; none for today, the future, or an empty day."""
    try:
        day = date.fromisoformat(text_of(call.biz, "bill_date"))
    except ValueError:
        return fail("isv.invalid-bill-date", "bill_date must be yyyy-MM-dd", "40002")
    if text_of(call.biz, "bill_type") != "trade":
        return fail("isv.invalid-bill-type", "only bill_type=trade is simulated", "40002")
    today = datetime.fromtimestamp(book.now(), CHINA).date()
    lines = bill_lines(book, call.merchant.merchant_id, day)
    if day >= today or not lines:
        return fail("isp.bill_not_exist", "账单不存在")
    token = "".join(book.ctx.rng.choices("0123456789abcdef", k=32))
    book.bills[token] = build_bill_zip(call.merchant.merchant_id, day, lines, book.now())
    while len(book.bills) > MAX_KEPT_BILLS:
        del book.bills[next(iter(book.bills))]
    base = book.ctx.base_urls.get(ALIPAY, "")
    return ok(bill_download_url=f"{base}/bills/{token}.csv.zip")


HANDLERS: Mapping[str, Handler] = {
    methods.TRADE_CREATE: trade_create,
    methods.TRADE_PAY: trade_pay,
    methods.TRADE_QUERY: trade_query,
    methods.TRADE_CLOSE: trade_close,
    methods.TRADE_CANCEL: trade_cancel,
    methods.TRADE_REFUND: trade_refund,
    methods.TRADE_REFUND_QUERY: trade_refund_query,
    methods.FUND_FREEZE: freeze,
    methods.FUND_UNFREEZE: unfreeze,
    methods.FUND_DETAIL_QUERY: detail_query,
    methods.FUND_OPERATION_CANCEL: operation_cancel,
    methods.BILL_DOWNLOADURL_QUERY: bill_download_url,
}


async def handle_gateway(book: AlipayBook, query: bytes, body: bytes) -> tuple[Call | None, bytes]:
    """One gateway request (fields from the query string and the form body) → the verified
    call (None when refused) and the signed answer."""
    charset = "utf-8"
    try:
        fields = _fields(query, body)
        charset = codec_for(fields.get("charset") or "utf-8")
    except FormError as exc:
        return None, _answer(book, "", fail(f"isv.{exc.reason}", exc.message, "40002"), charset)
    method = fields.get("method", "")
    refused = _refusal(book, fields, charset)
    if refused is not None:
        return None, _answer(book, method, refused, charset)
    merchant = book.ctx.merchant_by_app(ALIPAY, fields["app_id"])
    assert merchant is not None  # _refusal checked the app
    biz = orjson.loads(fields["biz_content"])
    call = Call(method, merchant, fields["app_id"], biz, fields.get("notify_url", ""), charset)
    return call, _answer(book, method, await HANDLERS[method](book, call), charset)


def bill_lines(book: AlipayBook, merchant_id: str, day: date) -> list[BillLine]:
    """The ledger's payments, captures and refunds booked on ``day`` (Beijing time)."""
    lines: list[BillLine] = []
    for trade in book.ctx.ledger.trades(ALIPAY, merchant_id):
        paid_at = book.detail(trade).captured_at if trade.kind == "preauth" else trade.paid_at
        if paid_at is None:
            continue
        if _day(paid_at) == day:
            lines.append(_line(book, trade, paid_at, trade_total(trade), -(trade.fee_mfen // 1000)))
        lines.extend(
            _line(book, trade, r.accepted_at, -r.amount_fen, r.fee_mfen // 1000, r.out_refund_no)
            for r in trade.refunds.values()
            if _day(r.accepted_at) == day
        )
    return lines


def _line(
    book: AlipayBook, trade: Trade, at: float, amount: int, fee: int, request_no: str = ""
) -> BillLine:
    detail = book.detail(trade)
    return BillLine(
        refund=bool(request_no),
        trade_no=detail.trade_no,
        out_trade_no=detail.trade_key,
        subject=detail.subject,
        created_at=trade.created_at,
        finished_at=at,
        order_fen=amount,
        received_fen=amount,
        fee_fen=fee,
        request_no=request_no,
        buyer=detail.buyer_logon_id,
        store_id=detail.store_id,
    )


def _fields(query: bytes, body: bytes) -> dict[str, str]:
    """Fields from both halves (the SDKs put system fields in the URL); a field in both is as
    ambiguous as a field twice in one."""
    fields: dict[str, str] = {}
    for part in (query, body):
        if not part.strip():
            continue
        parsed = parse_form(part).fields
        both = fields.keys() & parsed.keys()
        if both:
            raise FormError("duplicate_field", f"{sorted(both)[0]!r} in both URL and body")
        fields.update(parsed)
    return fields


def _refusal(book: AlipayBook, fields: Mapping[str, str], charset: str) -> dict[str, Any] | None:
    for name in ("app_id", "method", "sign", "sign_type", "timestamp", "version"):
        if not fields.get(name):
            return fail(f"isv.missing-{name.replace('_', '-')}", f"{name} is required", "40001")
    app = book.keys.apps.get(fields["app_id"])
    if app is None or book.ctx.merchant_by_app(ALIPAY, fields["app_id"]) is None:
        return fail("isv.invalid-app-id", "no such app", "40002")
    if fields["sign_type"] != SIGN_TYPE:
        return fail("isv.invalid-signature-type", "sign_type must be RSA2", "40002")
    if not verify_content(
        request_sign_content(fields), fields["sign"], app.app_public_key, charset
    ):
        return fail("isv.invalid-signature", "验签出错", "40002")
    if fields["method"] not in HANDLERS:
        return fail("isv.invalid-method", f"unknown method {fields['method'][:60]}", "40002")
    try:
        datetime.strptime(fields["timestamp"], TIMESTAMP_FORMAT)
    except ValueError:
        return fail("isv.invalid-timestamp", "timestamp must be yyyy-MM-dd HH:mm:ss", "40002")
    try:
        biz = orjson.loads(fields.get("biz_content") or "null")
    except orjson.JSONDecodeError:
        biz = None
    if not isinstance(biz, dict):
        return fail("isv.invalid-biz-content", "biz_content must be a JSON object", "40002")
    return None


def _answer(book: AlipayBook, method: str, body: Mapping[str, Any], charset: str) -> bytes:
    member = response_key(method) if method in HANDLERS else "error_response"
    return sign_response(member, body, book.keys.alipay_private_key, charset)


def _day(t: float) -> date:
    return datetime.fromtimestamp(t, CHINA).date()
