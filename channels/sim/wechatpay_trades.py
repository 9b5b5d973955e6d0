"""The simulated WeChat Pay's business rules on the shared ledger, without HTTP.

Payments are ledger ``Trade`` records (kind "payment") in WeChat's own words: NOTPAY →
SUCCESS (the customer paid) → REFUND (a refund was accepted), or NOTPAY → CLOSED / PAYERROR.
A refund is accepted as PROCESSING and finishes SUCCESS later. The rules are the ones a switch
has to survive: the same out_trade_no with the same parameters is the same prepay and with
different ones is OUT_TRADE_NO_USED; a paid order cannot be closed; refunds never exceed what
was paid (checked and reserved under the trade's lock, so concurrent refunds cannot both pass);
a refund key replayed with the same parameters is the same refund.

Fees: 0.60% of each payment rounded to the fen, and a refund gives back the payment's fee in
proportion, to the milli-fen (the 5 decimals of WeChat's bill).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from channels.model import Provider
from channels.sim.ledger import Ledger, SimRefund, Trade
from channels.sim.wechatpay_notify import refund_resource, transaction_resource
from channels.wechatpay.times import CST

__all__ = [
    "FEE_RATE_PPM",
    "SimApiError",
    "accept_refund",
    "close",
    "fee_of_payment",
    "fee_of_refund",
    "mark_paid",
    "new_transaction_id",
    "prepay",
    "refund_view",
    "transaction_view",
]

FEE_RATE_PPM = 6000  # 0.60%
PAID_STATES = frozenset({"SUCCESS", "REFUND"})
WX = Provider.WECHATPAY


class SimApiError(Exception):
    """An error answer: HTTP status and WeChat's ``{"code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def fee_of_payment(total_fen: int, rate_ppm: int = FEE_RATE_PPM) -> int:
    """Milli-fen: the fee is rounded half up to the fen, then written with 5 decimals."""
    fee_fen = (total_fen * rate_ppm + 500_000) // 1_000_000
    return fee_fen * 1000


def fee_of_refund(payment_fee_mfen: int, refund_fen: int, total_fen: int) -> int:
    """The share of the payment's fee a refund gives back, rounded to the milli-fen."""
    return (payment_fee_mfen * refund_fen + total_fen // 2) // total_fen


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choices("0123456789", k=count))


def new_transaction_id(now: float, rng: random.Random) -> str:
    """28 digits, like 4200002026112012345678901234: a prefix, the Beijing date, a sequence."""
    return f"42000{datetime.fromtimestamp(now, CST):%Y%m%d}{_digits(rng, 15)}"


def new_refund_id(now: float, rng: random.Random) -> str:
    return f"50300{datetime.fromtimestamp(now, CST):%Y%m%d}{_digits(rng, 16)}"


def new_prepay_id(now: float, rng: random.Random) -> str:
    return f"wx{datetime.fromtimestamp(now, CST):%d%H%M%S}{rng.getrandbits(120):030x}"


def prepay(
    ledger: Ledger,
    mchid: str,
    body: Mapping[str, Any],
    now: float,
    rng: random.Random,
    prepay_ids: dict[tuple[str, str], str],
) -> tuple[Trade, str, bool]:
    """(trade, prepay_id, created). ``body`` is a validated JSAPI request."""
    out_trade_no = str(body["out_trade_no"])
    trade = ledger.get(WX, mchid, out_trade_no)
    if trade is not None:
        if trade.params != dict(body):
            raise SimApiError(403, "OUT_TRADE_NO_USED", "商户订单号重复")
        if trade.state in PAID_STATES:
            raise SimApiError(400, "ORDERPAID", "该订单已支付")
        if trade.state == "CLOSED":
            raise SimApiError(400, "ORDER_CLOSED", "订单已关闭")
        return trade, prepay_ids[(mchid, out_trade_no)], False
    total = int(body["amount"]["total"])
    trade = ledger.add(
        Trade(
            provider=WX,
            merchant_id=mchid,
            out_trade_no=out_trade_no,
            provider_ref="",
            kind="payment",
            amount_fen=total,
            state="NOTPAY",
            params=dict(body),
            created_at=now,
            payer_id=str(body["payer"]["openid"]),
        )
    )
    prepay_id = new_prepay_id(now, rng)
    prepay_ids[(mchid, out_trade_no)] = prepay_id
    return trade, prepay_id, True


def mark_paid(ledger: Ledger, trade: Trade, now: float, rng: random.Random) -> None:
    trade.provider_ref = new_transaction_id(now, rng)
    ledger.add_ref(trade, trade.provider_ref)
    trade.state = "SUCCESS"
    trade.paid_fen = trade.held_fen = trade.amount_fen
    trade.paid_at = now
    trade.fee_mfen = fee_of_payment(trade.amount_fen)


def close(trade: Trade, now: float) -> None:
    if trade.state in PAID_STATES:
        raise SimApiError(400, "ORDERPAID", "订单已支付 不能关闭")
    if trade.state != "CLOSED":
        trade.state = "CLOSED"
        trade.finished_at = now


def find_refundable(
    ledger: Ledger, mchid: str, body: Mapping[str, Any]
) -> tuple[Trade, SimRefund | None]:
    """The trade a refund request names, and the refund already under its key, if any."""
    if body.get("transaction_id"):
        trade = ledger.by_ref(WX, str(body["transaction_id"]))
        if trade is not None and trade.merchant_id != mchid:
            trade = None
    else:
        trade = ledger.get(WX, mchid, str(body.get("out_trade_no", "")))
    out_refund_no = str(body["out_refund_no"])
    existing = ledger.refund(WX, mchid, out_refund_no)
    if existing is not None:
        if trade is None or existing[0] is not trade:
            raise SimApiError(400, "INVALID_REQUEST", "退款单号已用于其他订单")
        return trade, existing[1]
    if trade is None:
        raise SimApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    return trade, None


def accept_refund(
    ledger: Ledger,
    trade: Trade,
    body: Mapping[str, Any],
    now: float,
    rng: random.Random,
) -> SimRefund:
    """Check and reserve: call with the trade's lock held."""
    amount = body["amount"]
    refund_fen, total_fen = int(amount["refund"]), int(amount["total"])
    if trade.state not in PAID_STATES:
        raise SimApiError(400, "INVALID_REQUEST", "订单未支付 不能退款")
    if total_fen != trade.amount_fen:
        raise SimApiError(400, "PARAM_ERROR", "amount.total 与订单金额不一致")
    if refund_fen > trade.paid_fen - trade.refunded_fen:
        raise SimApiError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
    refund = SimRefund(
        out_refund_no=str(body["out_refund_no"]),
        provider_ref=new_refund_id(now, rng),
        amount_fen=refund_fen,
        state="PROCESSING",
        accepted_at=now,
        fee_mfen=fee_of_refund(trade.fee_mfen, refund_fen, trade.amount_fen),
    )
    ledger.add_refund(trade, refund)
    trade.refunded_fen += refund_fen
    trade.state = "REFUND"
    return refund


def transaction_view(trade: Trade, appid: str) -> dict[str, Any]:
    paid = trade.state in PAID_STATES
    return transaction_resource(
        mchid=trade.merchant_id,
        appid=appid,
        out_trade_no=trade.out_trade_no,
        transaction_id=trade.provider_ref,
        trade_state=trade.state,
        total_fen=trade.amount_fen,
        payer_total_fen=trade.paid_fen,
        openid=trade.payer_id,
        success_time=trade.paid_at if paid else None,
        attach=str(trade.params.get("attach", "")),
    )


def refund_view(trade: Trade, refund: SimRefund, *, status_field: str = "status") -> dict[str, Any]:
    """The refund as the refund endpoints answer it (``status``) or a callback carries it
    (``refund_status``)."""
    view = refund_resource(
        mchid=trade.merchant_id,
        out_trade_no=trade.out_trade_no,
        transaction_id=trade.provider_ref,
        out_refund_no=refund.out_refund_no,
        refund_id=refund.provider_ref,
        refund_status=refund.state,
        refund_fen=refund.amount_fen,
        total_fen=trade.amount_fen,
        success_time=refund.finished_at,
    )
    if status_field != "refund_status":
        view[status_field] = view.pop("refund_status")
        view["amount"]["currency"] = "CNY"
        view["channel"] = "ORIGINAL"
        view["create_time"] = datetime.fromtimestamp(refund.accepted_at, CST).isoformat(
            timespec="seconds"
        )
    return view
