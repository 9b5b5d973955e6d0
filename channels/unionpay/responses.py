"""What UnionPay's answers mean.

A ``respCode`` says one of five things. ``00`` and ``A6`` (success with a defect that does not
affect the funds) are success — for a follow-up sent to ``backTransReq.do`` that means
*accepted*; the result is confirmed by ``queryTrans``. ``03`` (timeout), ``04`` (status unknown)
and ``05`` (accepted, in progress) settle nothing: the transaction may or may not happen, so the
outcome is UNKNOWN and the next step is a query. ``34`` on a query is "no such transaction".
``12`` (duplicate transaction) answers a resent orderId: the first one exists, so the channel
queries it instead of reading the reply as a refusal. Everything else is a refusal with
``respMsg`` as the reason.

A query reply has two codes: ``respCode`` for the query itself and ``origRespCode`` for the
transaction it found; the found transaction's own ``txnType``, ``txnAmt``, ``orderId`` and
``queryId`` come with it. The mapping of (transaction type, its verdict) onto the router's
``PaymentState`` is a table below.

The rest turns parsed replies into the router's ``ChannelResult``: a follow-up's fate, the
payment composed of a hold and its follow-ups, a refund's state. Pure: the channel does the
asking and keeps what it learns.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from channels.model import (
    ChannelResult,
    Operation,
    Outcome,
    PaymentState,
    PaymentStatus,
    RefundState,
)

from .errors import AcpError
from .messages import TxnType, parse_amount

__all__ = [
    "FOLLOW_UP_STATES",
    "AcpReply",
    "QueryReply",
    "Verdict",
    "after_duplicate_hold",
    "compose_status",
    "confirmed_result",
    "failure_result",
    "follow_up_result",
    "held_query_id",
    "parse_query_reply",
    "parse_reply",
    "payment_state",
    "refund_query_result",
    "result",
    "settled_result",
    "status_result",
    "verdict_of",
]


class Verdict(enum.Enum):
    SUCCESS = "success"
    IN_DOUBT = "in_doubt"
    NOT_FOUND = "not_found"
    DUPLICATE = "duplicate"
    FAILED = "failed"


VERDICTS: Mapping[str, Verdict] = {
    "00": Verdict.SUCCESS,
    "A6": Verdict.SUCCESS,
    "03": Verdict.IN_DOUBT,
    "04": Verdict.IN_DOUBT,
    "05": Verdict.IN_DOUBT,
    "12": Verdict.DUPLICATE,
    "34": Verdict.NOT_FOUND,
}


def verdict_of(code: str) -> Verdict:
    return VERDICTS.get(code, Verdict.FAILED)


@dataclass(frozen=True, slots=True)
class AcpReply:
    """A synchronous reply (its signature already verified)."""

    resp_code: str
    resp_msg: str
    verdict: Verdict
    fields: Mapping[str, str]

    @property
    def query_id(self) -> str | None:
        return self.fields.get("queryId") or None


def parse_reply(fields: Mapping[str, str]) -> AcpReply:
    code = fields.get("respCode", "")
    if not code:
        raise AcpError("bad_response", "reply without respCode")
    return AcpReply(code, fields.get("respMsg", ""), verdict_of(code), fields)


@dataclass(frozen=True, slots=True)
class QueryReply:
    """A queryTrans answer: the query's own verdict, and the found transaction's."""

    verdict: Verdict
    resp_code: str
    resp_msg: str
    txn_type: TxnType | None = None
    orig_verdict: Verdict | None = None
    orig_resp_code: str = ""
    orig_resp_msg: str = ""
    order_id: str = ""
    query_id: str | None = None
    amount_fen: int | None = None


def parse_query_reply(fields: Mapping[str, str]) -> QueryReply:
    reply = parse_reply(fields)
    if reply.verdict is not Verdict.SUCCESS:
        return QueryReply(reply.verdict, reply.resp_code, reply.resp_msg)
    orig = fields.get("origRespCode", "")
    if not orig:
        raise AcpError("bad_response", "a successful query without origRespCode")
    try:
        txn_type = TxnType(fields.get("txnType", ""))
    except ValueError as exc:
        raise AcpError("bad_response", f"query found txnType {fields.get('txnType')!r}") from exc
    amount = fields.get("txnAmt")
    return QueryReply(
        verdict=reply.verdict,
        resp_code=reply.resp_code,
        resp_msg=reply.resp_msg,
        txn_type=txn_type,
        orig_verdict=verdict_of(orig),
        orig_resp_code=orig,
        orig_resp_msg=fields.get("origRespMsg", ""),
        order_id=fields.get("orderId", ""),
        query_id=fields.get("queryId") or None,
        amount_fen=parse_amount(amount) if amount else None,
    )


# (found transaction's type, its verdict) → the payment's state, for the customer-facing
# transactions a query of the hold key finds. A follow-up's state is folded in by compose_status.
_STATE: Mapping[tuple[TxnType, Verdict], PaymentState] = {
    (TxnType.PREAUTH, Verdict.SUCCESS): PaymentState.HELD,
    (TxnType.PREAUTH, Verdict.IN_DOUBT): PaymentState.AWAITING_CUSTOMER,
    (TxnType.PREAUTH, Verdict.FAILED): PaymentState.FAILED,
    (TxnType.CONSUME, Verdict.SUCCESS): PaymentState.CAPTURED,
    (TxnType.CONSUME, Verdict.IN_DOUBT): PaymentState.AWAITING_CUSTOMER,
    (TxnType.CONSUME, Verdict.FAILED): PaymentState.FAILED,
}


def payment_state(reply: QueryReply) -> PaymentState | None:
    """The hold's state, or None when the query itself did not settle it (ask again)."""
    if reply.verdict is Verdict.NOT_FOUND:
        return PaymentState.NOT_FOUND
    if reply.verdict is not Verdict.SUCCESS or reply.txn_type is None:
        return None
    assert reply.orig_verdict is not None
    orig = Verdict.FAILED if reply.orig_verdict is Verdict.DUPLICATE else reply.orig_verdict
    state = _STATE.get((reply.txn_type, orig))
    if state is None:
        raise AcpError("bad_response", f"the hold key names a {reply.txn_type.name} transaction")
    return state


def compose_status(hold: QueryReply, follow_ups: Iterable[QueryReply]) -> PaymentStatus | None:
    """The payment as a whole: the hold's state plus the follow-ups that succeeded.

    A completion (03) captures and ends the pre-authorization (UnionPay releases the rest); a
    pre-auth cancel (32) closes it; refunds (04) and completion cancels (33) give money back."""
    state = payment_state(hold)
    if state is None:
        return None
    hold_amount = hold.amount_fen or 0
    held = hold_amount if state is PaymentState.HELD else 0
    captured = hold_amount if state is PaymentState.CAPTURED else 0
    refunded = 0
    for reply in follow_ups:
        if reply.verdict is not Verdict.SUCCESS or reply.orig_verdict is not Verdict.SUCCESS:
            continue
        amount = reply.amount_fen or 0
        if reply.txn_type is TxnType.PREAUTH_COMPLETE:
            state, captured = PaymentState.CAPTURED, captured + amount
        elif reply.txn_type is TxnType.PREAUTH_CANCEL and state is PaymentState.HELD:
            state = PaymentState.CLOSED
        elif reply.txn_type in (TxnType.REFUND, TxnType.PREAUTH_COMPLETE_CANCEL):
            refunded += amount
    return PaymentStatus(
        state=state,
        held_fen=held,
        captured_fen=captured,
        refunded_fen=refunded,
        provider_ref=hold.query_id,
        provider_status=hold.orig_resp_code or hold.resp_code,
    )


def failure_result(operation: Operation, key: str, reply: AcpReply) -> ChannelResult:
    """The result of a reply that is not a success: UNKNOWN while in doubt, else DECLINED."""
    outcome = Outcome.UNKNOWN if reply.verdict is Verdict.IN_DOUBT else Outcome.DECLINED
    return ChannelResult(
        operation=operation,
        outcome=outcome,
        key=key,
        reason=reply.resp_code,
        message=reply.resp_msg,
        provider_ref=reply.query_id,
    )


def result(op: Operation, key: str, outcome: Outcome, reason: str, message: str) -> ChannelResult:
    return ChannelResult(op, outcome, key, reason=reason, message=message)


_REFUND_STATES: Mapping[Verdict, RefundState] = {
    Verdict.SUCCESS: RefundState.SUCCESS,
    Verdict.IN_DOUBT: RefundState.PROCESSING,
    Verdict.FAILED: RefundState.FAILED,
    Verdict.DUPLICATE: RefundState.FAILED,
}

# What a follow-up that succeeded made of its payment, for a query of the follow-up's own key
# (the figures in the status are that follow-up's alone).
FOLLOW_UP_STATES: Mapping[TxnType, PaymentState] = {
    TxnType.PREAUTH_COMPLETE: PaymentState.CAPTURED,
    TxnType.PREAUTH_CANCEL: PaymentState.CLOSED,
    TxnType.REFUND: PaymentState.CAPTURED,
    TxnType.PREAUTH_COMPLETE_CANCEL: PaymentState.CAPTURED,
}
_MONEY_BACK = frozenset({TxnType.REFUND, TxnType.PREAUTH_COMPLETE_CANCEL})


def settled_result(op: Operation, key: str, found: QueryReply, verdict: Verdict) -> ChannelResult:
    """What a follow-up's queryTrans says became of it (``verdict``: its origRespCode's):
    PENDING while UnionPay is still on it, DECLINED with its code when it failed, else done."""
    ref = found.query_id
    refund = _REFUND_STATES.get(verdict) if found.txn_type in _MONEY_BACK else None
    if verdict is Verdict.IN_DOUBT:
        return ChannelResult(op, Outcome.PENDING, key, provider_ref=ref, refund=refund)
    if verdict is not Verdict.SUCCESS:
        return ChannelResult(
            op,
            Outcome.DECLINED,
            key,
            provider_ref=ref,
            reason=found.orig_resp_code,
            message=found.orig_resp_msg,
            refund=refund,
        )
    return ChannelResult(
        op, Outcome.APPROVED, key, amount_fen=found.amount_fen, provider_ref=ref, refund=refund
    )


def confirmed_result(
    op: Operation, txn_type: TxnType, key: str, amount_fen: int, found: QueryReply
) -> ChannelResult:
    """The queryTrans that confirms an accepted follow-up of ``amount_fen``: what became of
    it, UNKNOWN while the query settles nothing, DECLINED when the key names another one."""
    if found.verdict is not Verdict.SUCCESS or found.orig_verdict is None:
        return result(op, key, Outcome.UNKNOWN, found.resp_code, found.resp_msg)
    if found.txn_type is not txn_type or found.amount_fen != amount_fen:
        # A resent orderId (respCode 12) that names another transaction or amount.
        return result(op, key, Outcome.DECLINED, "duplicate_order_id", "key reused")
    return settled_result(op, key, found, found.orig_verdict)


def follow_up_result(
    key: str, found: QueryReply, txn_type: TxnType, verdict: Verdict
) -> ChannelResult:
    """A query of a capture's, release's or refund's own key: the follow-up's result, and
    when it succeeded the payment state it made."""
    settled = settled_result(Operation.QUERY, key, found, verdict)
    if settled.outcome is not Outcome.APPROVED:
        return settled
    amount = found.amount_fen or 0
    back = txn_type in _MONEY_BACK
    state = FOLLOW_UP_STATES[txn_type]
    status = PaymentStatus(
        state=state,
        captured_fen=amount if state is PaymentState.CAPTURED and not back else 0,
        refunded_fen=amount if back else 0,
        provider_ref=found.query_id,
        provider_status=found.orig_resp_code,
    )
    return replace(settled, payment=status)


def status_result(
    op: Operation, key: str, hold: QueryReply, follow_ups: Iterable[QueryReply]
) -> ChannelResult:
    """The payment of the hold ``key`` as a result: APPROVED carrying the composed status,
    UNKNOWN when the queries did not settle it."""
    try:
        status = compose_status(hold, follow_ups)
    except AcpError as exc:
        return result(op, key, Outcome.UNKNOWN, exc.reason, exc.message)
    if status is None:
        return result(op, key, Outcome.UNKNOWN, hold.resp_code, hold.resp_msg)
    return ChannelResult(
        op,
        Outcome.APPROVED,
        key,
        amount_fen=hold.amount_fen,
        provider_ref=status.provider_ref,
        payment=status,
    )


def after_duplicate_hold(status: ChannelResult) -> ChannelResult:
    """A hold whose orderId UnionPay already knows (respCode 12): its state decides. Still
    unconfirmed is a dead end — the first ``tn`` is not handed out again — so it is refused
    and the order holds again under a new key."""
    state = status.payment.state if status.payment else None
    if state in (PaymentState.HELD, PaymentState.CAPTURED, PaymentState.CLOSED):
        return status
    if state is None or state is PaymentState.NOT_FOUND:
        return ChannelResult(status.operation, Outcome.UNKNOWN, status.key, reason="12")
    return ChannelResult(
        status.operation,
        Outcome.DECLINED,
        status.key,
        reason="12",
        message=f"orderId already used ({state.value}); its tn is not handed out again",
        payment=status.payment,
    )


def held_query_id(op: Operation, hold_key: str, hold: QueryReply) -> str | ChannelResult:
    """The pre-authorization's queryId that a follow-up names, from a query of the hold: only
    a hold still HELD can be completed or cancelled."""
    try:
        state = payment_state(hold)
    except AcpError as exc:
        return result(op, hold_key, Outcome.DECLINED, exc.reason, exc.message)
    if state is None:
        return result(op, hold_key, Outcome.UNKNOWN, hold.resp_code, hold.resp_msg)
    if state is not PaymentState.HELD or not hold.query_id:
        return result(op, hold_key, Outcome.DECLINED, state.value, "not held")
    return hold.query_id


def refund_query_result(refund_key: str, found: QueryReply) -> ChannelResult:
    """A query of a refund's own key: APPROVED with the refund's state (NOT_FOUND when
    UnionPay has no such refund), UNKNOWN when the query settles nothing."""
    op = Operation.REFUND_QUERY
    if found.verdict is Verdict.NOT_FOUND:
        return ChannelResult(op, Outcome.APPROVED, refund_key, refund=RefundState.NOT_FOUND)
    if found.verdict is not Verdict.SUCCESS or found.orig_verdict is None:
        return result(op, refund_key, Outcome.UNKNOWN, found.resp_code, found.resp_msg)
    return ChannelResult(
        op,
        Outcome.APPROVED,
        refund_key,
        amount_fen=found.amount_fen,
        provider_ref=found.query_id,
        reason=found.orig_resp_code,
        message=found.orig_resp_msg,
        refund=_REFUND_STATES.get(found.orig_verdict, RefundState.FAILED),
    )
