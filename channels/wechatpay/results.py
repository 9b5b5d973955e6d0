"""From WeChat's answers to ``ChannelResult``s, sans-IO: the classification rules in one place.

The rules that keep the switch from charging twice:

* a request that may have reached WeChat without a trustworthy answer is UNKNOWN — a timeout,
  a 5xx, SYSTEM_ERROR, and for the calls that create or move money (prepay, refund, close) also
  an answer whose signature fails or whose body cannot be read;
* a request that certainly did not is TECHNICAL_FAILURE (a refused connection, a rate limit,
  our own malformed request);
* WeChat's business refusals are DECLINED, with its code as the reason;
* a query or refund query for a key WeChat does not know *answers* (APPROVED) with
  ``PaymentState.NOT_FOUND`` / ``RefundState.NOT_FOUND``: "not there" is information.
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.model import (
    ChannelError,
    ChannelResult,
    Operation,
    Outcome,
    PaymentState,
    PaymentStatus,
    RefundState,
)
from channels.wechatpay.errors import WeChatPayError
from channels.wechatpay.responses import ApiError, classify_error, parse_refund, parse_transaction

__all__ = [
    "MONEY_MOVING",
    "bad_request",
    "bad_signature",
    "from_api_error",
    "from_transport",
    "malformed",
    "payment_result",
    "refund_result",
]

MONEY_MOVING = frozenset({Operation.HOLD, Operation.RELEASE, Operation.REFUND, Operation.CLOSE})
NOT_FOUND = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS"})
# codes whose meaning depends on the operation (the rest: responses.ERROR_OUTCOMES)
OVERRIDES: Mapping[Operation, Mapping[str, Outcome]] = {
    # the out_trade_no is already paid: the hold may well have succeeded, query it
    Operation.HOLD: {"ORDERPAID": Outcome.UNKNOWN},
}
REFUND_OUTCOMES: Mapping[RefundState, Outcome] = {
    RefundState.SUCCESS: Outcome.APPROVED,
    RefundState.PROCESSING: Outcome.PENDING,
    RefundState.FAILED: Outcome.DECLINED,
}


def from_transport(op: Operation, key: str, exc: ChannelError) -> ChannelResult:
    outcome = Outcome.UNKNOWN if exc.sent else Outcome.TECHNICAL_FAILURE
    return ChannelResult(op, outcome, key, reason=exc.reason, message=exc.message)


def from_api_error(op: Operation, key: str, error: ApiError) -> ChannelResult:
    if error.code in NOT_FOUND and op is Operation.QUERY:
        status = PaymentStatus(PaymentState.NOT_FOUND, provider_status=error.code)
        return ChannelResult(op, Outcome.APPROVED, key, reason=error.code, payment=status)
    if error.code in NOT_FOUND and op is Operation.REFUND_QUERY:
        return ChannelResult(
            op, Outcome.APPROVED, key, reason=error.code, refund=RefundState.NOT_FOUND
        )
    outcome = OVERRIDES.get(op, {}).get(error.code) or classify_error(error)
    return ChannelResult(op, outcome, key, reason=error.code, message=error.message)


def bad_signature(op: Operation, key: str, exc: WeChatPayError) -> ChannelResult:
    outcome = Outcome.UNKNOWN if op in MONEY_MOVING else Outcome.TECHNICAL_FAILURE
    message = f"{exc.reason}: {exc.message}"
    return ChannelResult(op, outcome, key, reason="bad_response_signature", message=message)


def malformed(op: Operation, key: str, message: str) -> ChannelResult:
    """A signed answer we cannot read (or that names another trade): for a money-moving call
    it may still have happened."""
    outcome = Outcome.UNKNOWN if op in MONEY_MOVING else Outcome.TECHNICAL_FAILURE
    return ChannelResult(op, outcome, key, reason="bad_response", message=message)


def bad_request(op: Operation, key: str, exc: Exception) -> ChannelResult:
    """Refused before sending (a key or amount WeChat would answer PARAM_ERROR to)."""
    message = exc.message if isinstance(exc, WeChatPayError) else str(exc)
    return ChannelResult(op, Outcome.TECHNICAL_FAILURE, key, reason="bad_request", message=message)


def payment_result(key: str, body: bytes, *, mchid: str, appid: str) -> ChannelResult:
    """A query's 200: the transaction, checked to be ours and the one asked for."""
    op = Operation.QUERY
    try:
        trade = parse_transaction(body)
    except WeChatPayError as exc:
        return malformed(op, key, exc.message)
    if (trade.mchid, trade.appid, trade.out_trade_no) != (mchid, appid, key):
        return malformed(op, key, "the answer names another merchant or trade")
    state = trade.state
    held = trade.total_fen if state in (PaymentState.HELD, PaymentState.CAPTURED) else 0
    status = PaymentStatus(
        state, held_fen=held, provider_ref=trade.transaction_id, provider_status=trade.trade_state
    )
    return ChannelResult(
        op,
        Outcome.APPROVED,
        key,
        amount_fen=trade.total_fen,
        provider_ref=trade.transaction_id,
        payment=status,
    )


def refund_result(op: Operation, key: str, refund_key: str, body: bytes) -> ChannelResult:
    """A refund's or refund query's 200. A refund answers with its state (PROCESSING →
    PENDING, SUCCESS → APPROVED, ABNORMAL/CLOSED → DECLINED); a refund query that answers is
    APPROVED whatever the refund's state, which ``refund`` carries."""
    try:
        info = parse_refund(body)
    except WeChatPayError as exc:
        return malformed(op, key, exc.message)
    if (info.out_refund_no, info.out_trade_no) != (refund_key, key):
        return malformed(op, key, "the answer names another refund or trade")
    outcome = Outcome.APPROVED if op is Operation.REFUND_QUERY else REFUND_OUTCOMES[info.state]
    return ChannelResult(
        op,
        outcome,
        key,
        amount_fen=info.refund_fen,
        provider_ref=info.refund_id,
        reason=info.status if info.state is RefundState.FAILED else None,
        refund=info.state,
    )
