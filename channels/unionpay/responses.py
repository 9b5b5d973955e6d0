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
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from channels.model import ChannelResult, Operation, Outcome, PaymentState, PaymentStatus

from .errors import AcpError
from .messages import TxnType, parse_amount

__all__ = [
    "AcpReply",
    "QueryReply",
    "Verdict",
    "compose_status",
    "failure_result",
    "parse_query_reply",
    "parse_reply",
    "payment_state",
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
