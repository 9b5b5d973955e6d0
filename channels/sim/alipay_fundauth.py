"""Simulated fund authorization (pre-authorization): freeze, confirm, unfreeze, query, cancel.

The order's life: ``alipay.fund.auth.order.app.freeze`` creates it INIT; the payer confirms in
the app (the control API's customer "pay") and it becomes AUTHORIZED with the amount frozen and
a ``fund_auth_freeze`` notify; unfreezes give money back (CLOSED once nothing is left and nothing
was captured); a capture (``alipay.trade.pay``, in alipay_trades) pays from it and with
``COMPLETE`` unfreezes the rest, leaving it FINISH. A payer who declines leaves it CLOSED without
a notify: Alipay announces frozen funds, not failed attempts. Every change that moves money
holds the ledger's lock of the order, so concurrent requests cannot both spend the same rest.
"""

from __future__ import annotations

from typing import Any

from channels.money import fen_to_yuan
from channels.sim.alipay_book import (
    ALIPAY,
    AlipayBook,
    Call,
    Detail,
    FundOperation,
    amount_of,
    fail,
    ok,
    text_of,
)
from channels.sim.alipay_notify import fund_auth_fields
from channels.sim.ledger import Trade

__all__ = [
    "confirm",
    "decline",
    "detail_query",
    "freeze",
    "freeze_operation",
    "operation_cancel",
    "record_unfreeze",
    "unfreeze",
]

PRE_AUTH_ONLINE = "PRE_AUTH_ONLINE"


async def freeze(book: AlipayBook, call: Call) -> dict[str, Any]:
    biz = call.biz
    out_order_no = text_of(biz, "out_order_no")
    out_request_no = text_of(biz, "out_request_no")
    if not out_order_no or not out_request_no or not text_of(biz, "order_title"):
        return fail("INVALID_PARAMETER", "out_order_no, out_request_no, order_title required")
    if text_of(biz, "product_code") != PRE_AUTH_ONLINE:
        return fail("PRODUCT_CODE_ERROR", "product_code must be PRE_AUTH_ONLINE")
    amount = amount_of(biz, "amount")
    if amount is None:
        return fail("INVALID_PARAMETER", "amount is not a positive yuan amount")
    payee = text_of(biz, "payee_user_id")
    if payee and payee != call.merchant.merchant_id:
        return fail("PAYEE_NOT_MATCH", "payee_user_id is not the app's merchant")
    merchant_id = call.merchant.merchant_id
    existing = book.ctx.ledger.get(ALIPAY, merchant_id, out_order_no)
    if existing is not None:
        if existing.kind == "preauth" and existing.params == dict(biz):
            return _freeze_body(book, existing)
        return fail("ORDER_ALREADY_EXIST", "out_order_no used with other parameters")
    now = book.now()
    auth_no = book.new_auth_no()
    trade = Trade(
        provider=ALIPAY,
        merchant_id=merchant_id,
        out_trade_no=out_order_no,
        provider_ref=auth_no,
        kind="preauth",
        amount_fen=amount,
        state="INIT",
        params=dict(biz),
        created_at=now,
        payer_id=text_of(biz, "payer_user_id"),
    )
    detail = Detail(
        app_id=call.app_id,
        notify_url=call.notify_url,
        charset=call.charset,
        subject=text_of(biz, "order_title"),
        store_id=text_of(biz, "store_id"),
    )
    op = FundOperation(book.new_operation_id(), out_request_no, "FREEZE", amount, "INIT", now)
    detail.operations[out_request_no] = op
    book.add(trade, detail)
    return _freeze_body(book, trade)


def freeze_operation(book: AlipayBook, trade: Trade) -> FundOperation:
    return next(op for op in book.detail(trade).operations.values() if op.kind == "FREEZE")


def confirm(book: AlipayBook, trade: Trade) -> None:
    """The payer confirms: funds frozen, order AUTHORIZED, ``fund_auth_freeze`` notify."""
    detail = book.detail(trade)
    now = book.now()
    if not trade.payer_id:
        trade.payer_id, detail.buyer_logon_id = book.new_buyer()
    trade.state = "AUTHORIZED"
    trade.held_fen = trade.amount_fen
    trade.paid_at = now
    op = freeze_operation(book, trade)
    op.status, op.finished_at = "SUCCESS", now
    book.notify(trade, _fund_notify(book, trade, "fund_auth_freeze", op))


def decline(book: AlipayBook, trade: Trade) -> None:
    trade.state = "CLOSED"
    trade.finished_at = book.now()
    op = freeze_operation(book, trade)
    op.status, op.finished_at = "CLOSED", trade.finished_at


async def unfreeze(book: AlipayBook, call: Call) -> dict[str, Any]:
    biz = call.biz
    out_request_no = text_of(biz, "out_request_no")
    amount = amount_of(biz, "amount")
    if not out_request_no or amount is None or not text_of(biz, "remark"):
        return fail("INVALID_PARAMETER", "auth_no, out_request_no, amount, remark required")
    trade = book.order(call.merchant.merchant_id, auth_no=text_of(biz, "auth_no"))
    if trade is None:
        return fail("AUTH_ORDER_NOT_EXIST", "no such auth_no")
    async with book.ctx.ledger.lock(trade):
        detail = book.detail(trade)
        op = detail.operations.get(out_request_no)
        if op is not None:
            if op.kind == "UNFREEZE" and op.amount_fen == amount:
                return _unfreeze_body(book, trade, op)
            return fail("REQUEST_INCONSISTENT", "out_request_no used with other parameters")
        if trade.state != "AUTHORIZED":
            return fail("ORDER_STATUS_NOT_SUPPORT", f"the order is {trade.state}")
        if amount > trade.held_fen:
            return fail("UNFREEZE_AMOUNT_EXCEED", "more than the rest of the frozen amount")
        await book.processing()
        op = record_unfreeze(book, trade, out_request_no, amount)
    return _unfreeze_body(book, trade, op)


def record_unfreeze(
    book: AlipayBook, trade: Trade, out_request_no: str, amount: int
) -> FundOperation:
    """Give ``amount`` of the frozen funds back (caller holds the order's lock), and notify.
    An unfreeze Alipay makes by itself (the rest after a COMPLETE capture, a cancelled freeze)
    has no merchant request number: ``out_request_no`` is then "" in the notify."""
    now = book.now()
    trade.held_fen -= amount
    trade.released_fen += amount
    if trade.held_fen == 0:
        trade.state = "FINISH" if trade.captured_fen else "CLOSED"
        trade.finished_at = now
    op = FundOperation(
        book.new_operation_id(), out_request_no, "UNFREEZE", amount, "SUCCESS", now, now
    )
    book.detail(trade).operations[out_request_no or f"#{op.operation_id}"] = op
    book.notify(trade, _fund_notify(book, trade, "fund_auth_unfreeze", op))
    return op


async def detail_query(book: AlipayBook, call: Call) -> dict[str, Any]:
    biz = call.biz
    trade = book.order(
        call.merchant.merchant_id, text_of(biz, "out_order_no"), text_of(biz, "auth_no")
    )
    if trade is None:
        return fail("ORDER_NOT_EXIST", "no such fund authorization order")
    request_no = text_of(biz, "out_request_no")
    op = book.detail(trade).operations.get(request_no) if request_no else None
    if request_no and op is None:
        return fail("ORDER_NOT_EXIST", "no such operation")
    op = op or freeze_operation(book, trade)
    return ok(
        auth_no=trade.provider_ref,
        out_order_no=trade.out_trade_no,
        order_status=trade.state,
        total_freeze_amount=fen_to_yuan(_frozen(trade)),
        rest_amount=fen_to_yuan(trade.held_fen),
        total_pay_amount=fen_to_yuan(trade.captured_fen),
        total_unfreeze_amount=fen_to_yuan(trade.released_fen),
        operation_id=op.operation_id,
        out_request_no=op.out_request_no,
        amount=fen_to_yuan(op.amount_fen),
        operation_type=op.kind,
        status=op.status,
        gmt_create=book.stamp(op.created_at),
        gmt_trans=book.stamp(op.finished_at) if op.finished_at else "",
        payer_user_id=trade.payer_id,
        payee_user_id=trade.merchant_id,
        order_title=book.detail(trade).subject,
        trans_currency="CNY",
    )


async def operation_cancel(book: AlipayBook, call: Call) -> dict[str, Any]:
    """Undo the freeze: close it while INIT, unfreeze everything while AUTHORIZED and nothing
    was captured; a captured order cannot be cancelled."""
    biz = call.biz
    trade = book.order(
        call.merchant.merchant_id, text_of(biz, "out_order_no"), text_of(biz, "auth_no")
    )
    if trade is None:
        return fail("ORDER_NOT_EXIST", "no such fund authorization order")
    async with book.ctx.ledger.lock(trade):
        op = freeze_operation(book, trade)
        if trade.captured_fen or trade.state == "FINISH":
            return fail("ORDER_ALREADY_FINISH", "a captured order cannot be cancelled")
        action = "close"
        if trade.state == "INIT":
            decline(book, trade)
        elif trade.state == "AUTHORIZED":
            await book.processing()
            record_unfreeze(book, trade, "", trade.held_fen)
            action = "unfreeze"
    return ok(
        auth_no=trade.provider_ref,
        out_order_no=trade.out_trade_no,
        operation_id=op.operation_id,
        out_request_no=op.out_request_no,
        action=action,
    )


def _freeze_body(book: AlipayBook, trade: Trade) -> dict[str, Any]:
    op = freeze_operation(book, trade)
    return ok(
        auth_no=trade.provider_ref,
        out_order_no=trade.out_trade_no,
        operation_id=op.operation_id,
        out_request_no=op.out_request_no,
        amount=fen_to_yuan(op.amount_fen),
        status=op.status,
        gmt_trans=book.stamp(op.finished_at) if op.finished_at else "",
    )


def _unfreeze_body(book: AlipayBook, trade: Trade, op: FundOperation) -> dict[str, Any]:
    return ok(
        auth_no=trade.provider_ref,
        out_order_no=trade.out_trade_no,
        operation_id=op.operation_id,
        out_request_no=op.out_request_no,
        amount=fen_to_yuan(op.amount_fen),
        status=op.status,
        gmt_trans=book.stamp(op.finished_at or op.created_at),
    )


def _fund_notify(
    book: AlipayBook, trade: Trade, notify_type: str, op: FundOperation
) -> dict[str, str]:
    detail = book.detail(trade)
    return fund_auth_fields(
        notify_type=notify_type,
        app_id=detail.app_id,
        seller_id=trade.merchant_id,
        notify_id=book.new_notify_id(),
        auth_no=trade.provider_ref,
        out_order_no=trade.out_trade_no,
        operation_id=op.operation_id,
        out_request_no=op.out_request_no,
        amount_fen=op.amount_fen,
        status=op.status,
        total_freeze_fen=_frozen(trade),
        total_unfreeze_fen=trade.released_fen,
        total_pay_fen=trade.captured_fen,
        rest_fen=trade.held_fen,
        payer_user_id=trade.payer_id,
        gmt_create=book.stamp(op.created_at),
        gmt_trans=book.stamp(op.finished_at or op.created_at),
        charset=detail.charset,
    )


def _frozen(trade: Trade) -> int:
    """What was ever frozen: zero until the payer confirmed."""
    return trade.held_fen + trade.captured_fen + trade.released_fen
