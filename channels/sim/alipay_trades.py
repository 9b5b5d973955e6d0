"""Simulated trades: create, pay (capture of a pre-authorization), query, close, cancel, refund.

A trade is either a mini-program payment (``alipay.trade.create``, WAIT_BUYER_PAY until the
payer pays) or the capture of a fund authorization (``alipay.trade.pay`` with auth_no, paid at
once). Both are TRADE_SUCCESS once paid, refundable up to what was paid, TRADE_CLOSED once
refunded in full. Refunds are idempotent by out_request_no, and the refundable-amount check and
the update happen under the trade's ledger lock with the money "moving" in between, so two
concurrent refunds can never together exceed the trade.
"""

from __future__ import annotations

from typing import Any

from channels.money import fen_to_yuan
from channels.sim.alipay_bill import fee_fen
from channels.sim.alipay_book import (
    ALIPAY,
    AlipayBook,
    Call,
    Detail,
    amount_of,
    fail,
    ok,
    text_of,
)
from channels.sim.alipay_fundauth import PRE_AUTH_ONLINE, record_unfreeze
from channels.sim.alipay_notify import trade_sync_fields
from channels.sim.ledger import SimRefund, Trade

__all__ = [
    "close_unpaid",
    "pay",
    "trade_cancel",
    "trade_close",
    "trade_create",
    "trade_pay",
    "trade_query",
    "trade_refund",
    "trade_refund_query",
    "trade_total",
]

NOT_EXIST = ("ACQ.TRADE_NOT_EXIST", "交易不存在")


def trade_total(trade: Trade) -> int:
    """The trade's amount: the payment's, or what was captured from a pre-authorization."""
    return trade.captured_fen if trade.kind == "preauth" else trade.amount_fen


async def trade_create(book: AlipayBook, call: Call) -> dict[str, Any]:
    biz = call.biz
    out_trade_no = text_of(biz, "out_trade_no")
    amount = amount_of(biz, "total_amount")
    if not out_trade_no or amount is None or not text_of(biz, "subject"):
        return fail("ACQ.INVALID_PARAMETER", "out_trade_no, total_amount, subject required")
    merchant_id = call.merchant.merchant_id
    existing = book.trade(merchant_id, out_trade_no)
    if existing is not None and existing.kind == "payment" and existing.params == dict(biz):
        return ok(out_trade_no=out_trade_no, trade_no=existing.provider_ref)
    if existing is not None or book.ctx.ledger.get(ALIPAY, merchant_id, out_trade_no):
        return fail("ACQ.CONTEXT_INCONSISTENT", "out_trade_no used with other parameters")
    trade_no = book.new_trade_no()
    trade = Trade(
        provider=ALIPAY,
        merchant_id=merchant_id,
        out_trade_no=out_trade_no,
        provider_ref=trade_no,
        kind="payment",
        amount_fen=amount,
        state="WAIT_BUYER_PAY",
        params=dict(biz),
        created_at=book.now(),
        payer_id=text_of(biz, "buyer_id"),
    )
    detail = Detail(
        app_id=call.app_id,
        notify_url=call.notify_url,
        charset=call.charset,
        subject=text_of(biz, "subject"),
        store_id=text_of(biz, "store_id"),
        trade_no=trade_no,
        trade_key=out_trade_no,
        trade_status="WAIT_BUYER_PAY",
    )
    book.add(trade, detail)
    return ok(out_trade_no=out_trade_no, trade_no=trade_no)


def pay(book: AlipayBook, trade: Trade) -> None:
    """The payer pays a WAIT_BUYER_PAY trade (the control API's customer "pay")."""
    detail = book.detail(trade)
    if not trade.payer_id:
        trade.payer_id, detail.buyer_logon_id = book.new_buyer()
    elif not detail.buyer_logon_id:
        detail.buyer_logon_id = book.new_buyer()[1]
    trade.paid_fen = trade.amount_fen
    trade.paid_at = book.now()
    trade.fee_mfen = fee_fen(trade.amount_fen) * 1000
    trade.state = detail.trade_status = "TRADE_SUCCESS"
    book.notify(trade, _sync(book, trade))


async def trade_pay(book: AlipayBook, call: Call) -> dict[str, Any]:
    """Only the capture of a pre-authorization is simulated (barcode payments are not)."""
    biz = call.biz
    out_trade_no = text_of(biz, "out_trade_no")
    auth_no = text_of(biz, "auth_no")
    amount = amount_of(biz, "total_amount")
    if not auth_no or text_of(biz, "product_code") != PRE_AUTH_ONLINE:
        return fail("ACQ.INVALID_PARAMETER", "only auth_no captures (PRE_AUTH_ONLINE)")
    if not out_trade_no or amount is None:
        return fail("ACQ.INVALID_PARAMETER", "out_trade_no and total_amount required")
    merchant_id = call.merchant.merchant_id
    order = book.order(merchant_id, auth_no=auth_no)
    if order is None:
        return fail("ACQ.AUTH_NO_ERROR", "no such auth_no")
    async with book.ctx.ledger.lock(order):
        detail = book.detail(order)
        if detail.trade_params is not None:
            if detail.trade_key == out_trade_no and detail.trade_params == dict(biz):
                return _paid_body(book, order)
            return fail("ACQ.AUTH_ORDER_HAS_FINISHED", "the authorization was captured already")
        other = book.trade(merchant_id, out_trade_no)
        if other is not None and other is not order:
            return fail("ACQ.CONTEXT_INCONSISTENT", "out_trade_no belongs to another trade")
        if order.state != "AUTHORIZED":
            return fail("ACQ.AUTH_ORDER_STATUS_ERROR", f"the authorization is {order.state}")
        if amount > order.held_fen:
            return fail("ACQ.AUTH_AMOUNT_NOT_ENOUGH", "more than the frozen rest")
        await book.processing()
        now = book.now()
        order.captured_fen = order.paid_fen = amount
        order.held_fen -= amount
        order.fee_mfen = fee_fen(amount) * 1000
        detail.trade_no = book.new_trade_no()
        detail.trade_key = out_trade_no
        detail.trade_status = "TRADE_SUCCESS"
        detail.trade_params = dict(biz)
        detail.captured_at = now
        book.index_trade(order, out_trade_no, detail.trade_no)
        if text_of(biz, "auth_confirm_mode") == "COMPLETE":
            if order.held_fen:
                record_unfreeze(book, order, "", order.held_fen)
            order.state, order.finished_at = "FINISH", now
        book.notify(order, _sync(book, order))
    return _paid_body(book, order)


async def trade_query(book: AlipayBook, call: Call) -> dict[str, Any]:
    trade = _find(book, call)
    if trade is None:
        return fail(*NOT_EXIST)
    detail = book.detail(trade)
    paid = trade.paid_at is not None and detail.trade_status != "WAIT_BUYER_PAY"
    body = ok(
        trade_no=detail.trade_no,
        out_trade_no=detail.trade_key,
        trade_status=detail.trade_status,
        total_amount=fen_to_yuan(trade_total(trade)),
        receipt_amount=fen_to_yuan(trade.paid_fen if paid else 0),
        buyer_pay_amount=fen_to_yuan(trade.paid_fen if paid else 0),
        buyer_user_id=trade.payer_id,
        buyer_logon_id=detail.buyer_logon_id,
        subject=detail.subject,
    )
    if paid:
        body["send_pay_date"] = book.stamp(detail.captured_at or trade.paid_at)
    return body


async def trade_close(book: AlipayBook, call: Call) -> dict[str, Any]:
    trade = _find(book, call)
    if trade is None:
        return fail(*NOT_EXIST)
    async with book.ctx.ledger.lock(trade):
        detail = book.detail(trade)
        if detail.trade_status not in ("WAIT_BUYER_PAY", "TRADE_CLOSED"):
            return fail("ACQ.TRADE_STATUS_ERROR", f"the trade is {detail.trade_status}")
        if detail.trade_status == "WAIT_BUYER_PAY":
            close_unpaid(book, trade)
    return ok(trade_no=detail.trade_no, out_trade_no=detail.trade_key)


async def trade_cancel(book: AlipayBook, call: Call) -> dict[str, Any]:
    """Close an unpaid trade, or refund a paid one in full (``action`` says which)."""
    trade = _find(book, call)
    if trade is None:
        return fail(*NOT_EXIST)
    async with book.ctx.ledger.lock(trade):
        detail = book.detail(trade)
        action = "close"
        if detail.trade_status == "WAIT_BUYER_PAY":
            close_unpaid(book, trade)
        elif detail.trade_status == "TRADE_SUCCESS":
            rest = trade_total(trade) - trade.refunded_fen
            await book.processing()
            _record_refund(book, trade, f"{detail.trade_key}-CANCEL", rest)
            action = "refund"
        elif detail.trade_status != "TRADE_CLOSED":
            return fail("ACQ.TRADE_STATUS_ERROR", f"the trade is {detail.trade_status}")
    return ok(
        trade_no=detail.trade_no, out_trade_no=detail.trade_key, retry_flag="N", action=action
    )


async def trade_refund(book: AlipayBook, call: Call) -> dict[str, Any]:
    biz = call.biz
    amount = amount_of(biz, "refund_amount")
    request_no = text_of(biz, "out_request_no") or text_of(biz, "out_trade_no")
    if amount is None:
        return fail("ACQ.INVALID_PARAMETER", "refund_amount is not a positive yuan amount")
    trade = _find(book, call)
    if trade is None:
        return fail(*NOT_EXIST)
    async with book.ctx.ledger.lock(trade):
        detail = book.detail(trade)
        done = trade.refunds.get(request_no)
        if done is not None:
            if done.amount_fen != amount:
                return fail("ACQ.DISCORDANT_REPEAT_REQUEST", "out_request_no with another amount")
            return _refund_body(book, trade, fund_change=False)
        if detail.trade_status == "TRADE_CLOSED":
            return fail("ACQ.TRADE_HAS_CLOSE", "the trade is closed")
        if detail.trade_status != "TRADE_SUCCESS":
            return fail("ACQ.TRADE_STATUS_ERROR", f"the trade is {detail.trade_status}")
        if amount > trade_total(trade) - trade.refunded_fen:
            return fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "more than the refundable amount")
        await book.processing()
        _record_refund(book, trade, request_no, amount)
    return _refund_body(book, trade, fund_change=True)


async def trade_refund_query(book: AlipayBook, call: Call) -> dict[str, Any]:
    trade = _find(book, call)
    if trade is None:
        return fail(*NOT_EXIST)
    detail = book.detail(trade)
    request_no = text_of(call.biz, "out_request_no") or detail.trade_key
    body = ok(trade_no=detail.trade_no, out_trade_no=detail.trade_key, out_request_no=request_no)
    refund = trade.refunds.get(request_no)
    if refund is not None:
        body.update(
            refund_amount=fen_to_yuan(refund.amount_fen),
            total_amount=fen_to_yuan(trade_total(trade)),
            refund_status=refund.state,
            gmt_refund_pay=book.stamp(refund.accepted_at),
        )
    return body


def _find(book: AlipayBook, call: Call) -> Trade | None:
    return book.trade(
        call.merchant.merchant_id, text_of(call.biz, "out_trade_no"), text_of(call.biz, "trade_no")
    )


def close_unpaid(book: AlipayBook, trade: Trade) -> None:
    trade.state = book.detail(trade).trade_status = "TRADE_CLOSED"
    trade.finished_at = book.now()
    book.notify(trade, _sync(book, trade, gmt_close=book.stamp(trade.finished_at)))


def _record_refund(book: AlipayBook, trade: Trade, request_no: str, amount: int) -> None:
    """Refund ``amount`` (caller holds the lock and checked it): the proportional fee comes
    back, all of what is left of it with the last refund; TRADE_CLOSED once all is refunded."""
    now = book.now()
    detail = book.detail(trade)
    returned = sum(r.fee_mfen for r in trade.refunds.values())
    trade.refunded_fen += amount
    full = trade.refunded_fen == trade_total(trade)
    fee = (
        trade.fee_mfen - returned
        if full
        else min(fee_fen(amount) * 1000, trade.fee_mfen - returned)
    )
    refund = SimRefund(request_no, detail.trade_no, amount, "REFUND_SUCCESS", now, fee, now)
    book.ctx.ledger.add_refund(trade, refund)
    if full:
        detail.trade_status = "TRADE_CLOSED"
        if trade.kind == "payment":
            trade.state = "TRADE_CLOSED"
    book.notify(trade, _sync(book, trade, refund=refund))


def _refund_body(book: AlipayBook, trade: Trade, *, fund_change: bool) -> dict[str, Any]:
    detail = book.detail(trade)
    return ok(
        trade_no=detail.trade_no,
        out_trade_no=detail.trade_key,
        buyer_logon_id=detail.buyer_logon_id,
        fund_change="Y" if fund_change else "N",
        refund_fee=fen_to_yuan(trade.refunded_fen),
        gmt_refund_pay=book.stamp(),
        buyer_user_id=trade.payer_id,
    )


def _paid_body(book: AlipayBook, trade: Trade) -> dict[str, Any]:
    detail = book.detail(trade)
    amount = fen_to_yuan(trade_total(trade))
    return ok(
        trade_no=detail.trade_no,
        out_trade_no=detail.trade_key,
        buyer_logon_id=detail.buyer_logon_id,
        total_amount=amount,
        receipt_amount=amount,
        buyer_pay_amount=amount,
        gmt_payment=book.stamp(detail.captured_at),
        fund_bill_list=[{"fund_channel": "ALIPAYACCOUNT", "amount": amount}],
        buyer_user_id=trade.payer_id,
        auth_trade_pay_mode="CREDIT_PREAUTH_PAY",
    )


def _sync(
    book: AlipayBook, trade: Trade, *, refund: SimRefund | None = None, gmt_close: str = ""
) -> dict[str, str]:
    detail = book.detail(trade)
    paid_at = detail.captured_at or trade.paid_at
    return trade_sync_fields(
        app_id=detail.app_id,
        seller_id=trade.merchant_id,
        notify_id=book.new_notify_id(),
        trade_no=detail.trade_no,
        out_trade_no=detail.trade_key,
        trade_status=detail.trade_status,
        total_fen=trade_total(trade),
        receipt_fen=trade.paid_fen,
        subject=detail.subject,
        buyer_id=trade.payer_id,
        buyer_logon_id=detail.buyer_logon_id,
        gmt_create=book.stamp(trade.created_at),
        gmt_payment=book.stamp(paid_at) if paid_at is not None else "",
        refund_fee_fen=trade.refunded_fen if refund is not None else 0,
        out_biz_no=refund.out_refund_no if refund is not None else "",
        gmt_refund=book.stamp(refund.accepted_at) if refund is not None else "",
        gmt_close=gmt_close,
        charset=detail.charset,
    )
