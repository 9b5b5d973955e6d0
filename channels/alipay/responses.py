"""Gateway answers: verified, classified into the switch's five outcomes, read into values.

The gateway answers HTTP 200 for everything; the outcome is in ``code``:

* ``10000`` — done;
* ``10003`` — waiting for the payer (poll with a query): PENDING;
* ``20000`` — the gateway does not know how it ended: UNKNOWN, query before anything else;
* ``40004`` — a business refusal, ``sub_code`` says which: DECLINED with that reason, except the
  few sub_codes that are Alipay's own trouble and so say nothing about the money (UNKNOWN);
* ``20001``/``40001``/``40002``/``40006`` — bad credentials, parameters or permissions: the
  request was refused before any business happened, a channel fault (TECHNICAL_FAILURE).

Only a verified answer is read at all: :func:`read_reply` refuses an unsigned or badly signed
body with ``ResponseError("bad_response_signature")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay.errors import ResponseError
from channels.alipay.signing import split_signed_response, verify_content
from channels.model import Outcome, PaymentState, PaymentStatus, RefundState
from channels.money import AmountError, yuan_to_fen

__all__ = [
    "CODE_OUTCOMES",
    "NOT_FOUND_SUB_CODES",
    "ORDER_STATES",
    "TRADE_STATES",
    "UNKNOWN_SUB_CODES",
    "CaptureInfo",
    "FreezeInfo",
    "GatewayReply",
    "RefundInfo",
    "RefundQueryInfo",
    "UnfreezeInfo",
    "Verdict",
    "bill_url_of",
    "capture_info",
    "classify",
    "combine_preauth",
    "freeze_info",
    "freeze_status",
    "is_not_found",
    "read_reply",
    "refund_info",
    "refund_query_info",
    "trade_status",
    "unfreeze_info",
    "yuan_field",
]

SUCCESS = "10000"

CODE_OUTCOMES: Mapping[str, Outcome] = {
    "10000": Outcome.APPROVED,
    "10003": Outcome.PENDING,
    "20000": Outcome.UNKNOWN,
    "20001": Outcome.TECHNICAL_FAILURE,
    "40001": Outcome.TECHNICAL_FAILURE,
    "40002": Outcome.TECHNICAL_FAILURE,
    "40004": Outcome.DECLINED,
    "40006": Outcome.TECHNICAL_FAILURE,
}
# 40004 sub_codes that are the gateway's own failure: the request may still have been done.
UNKNOWN_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "AOP.SYSTEM_ERROR", "SYSTEM_ERROR"})
# 40004 sub_codes a query answers for a key Alipay has never seen.
NOT_FOUND_SUB_CODES = frozenset({"ACQ.TRADE_NOT_EXIST", "ORDER_NOT_EXIST", "AUTH_ORDER_NOT_EXIST"})

# trade_status → the switch's scale (a trade is captured money once paid).
TRADE_STATES: Mapping[str, PaymentState] = {
    "WAIT_BUYER_PAY": PaymentState.AWAITING_CUSTOMER,
    "TRADE_SUCCESS": PaymentState.CAPTURED,
    "TRADE_FINISHED": PaymentState.CAPTURED,
    "TRADE_CLOSED": PaymentState.CLOSED,
}
# fund auth order_status → the switch's scale, before any capture is taken into account.
ORDER_STATES: Mapping[str, PaymentState] = {
    "INIT": PaymentState.AWAITING_CUSTOMER,
    "AUTHORIZED": PaymentState.HELD,
    "FINISH": PaymentState.CLOSED,
    "CLOSED": PaymentState.CLOSED,
}


@dataclass(frozen=True, slots=True)
class GatewayReply:
    """A verified gateway answer."""

    method: str
    code: str
    msg: str
    sub_code: str
    sub_msg: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str | None = None
    message: str = ""


def read_reply(
    raw: bytes, method: str, alipay_public_key: rsa.RSAPublicKey, charset: str = "utf-8"
) -> GatewayReply:
    """Verify and read a gateway body. The signature covers the exact raw text of the
    ``*_response`` member; an answer without one is treated as forged."""
    signed = split_signed_response(raw, method, charset)
    if not signed.sign:
        raise ResponseError("bad_response_signature", f"{signed.key} carries no sign")
    if not verify_content(signed.raw, signed.sign, alipay_public_key):
        raise ResponseError("bad_response_signature", f"{signed.key} signature does not verify")
    body = signed.body
    code = body.get("code")
    if not isinstance(code, str) or not code:
        raise ResponseError("bad_response", f"{signed.key} has no code")
    return GatewayReply(
        method=method,
        code=code,
        msg=_text(body, "msg"),
        sub_code=_text(body, "sub_code"),
        sub_msg=_text(body, "sub_msg"),
        body=body,
    )


def classify(reply: GatewayReply) -> Verdict:
    """The outcome of one answer; the reason is the sub_code (or the code) when not 10000."""
    outcome = CODE_OUTCOMES.get(reply.code, Outcome.UNKNOWN)
    if outcome is Outcome.APPROVED:
        return Verdict(outcome)
    if outcome is Outcome.DECLINED and reply.sub_code in UNKNOWN_SUB_CODES:
        outcome = Outcome.UNKNOWN
    reason = reply.sub_code or reply.code
    return Verdict(outcome, reason, reply.sub_msg or reply.msg)


def is_not_found(reply: GatewayReply) -> bool:
    return reply.code == "40004" and reply.sub_code in NOT_FOUND_SUB_CODES


@dataclass(frozen=True, slots=True)
class FreezeInfo:
    auth_no: str
    operation_id: str
    status: str  # INIT until the payer confirms, then SUCCESS
    amount_fen: int


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    trade_no: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class UnfreezeInfo:
    auth_no: str
    status: str  # SUCCESS, or INIT while Alipay still processes it
    amount_fen: int


@dataclass(frozen=True, slots=True)
class RefundInfo:
    trade_no: str
    fund_change: bool  # N: no money moved by *this* call (a replay, or not yet): query it
    refund_fee_fen: int  # the trade's cumulative refunded amount


@dataclass(frozen=True, slots=True)
class RefundQueryInfo:
    state: RefundState
    amount_fen: int | None


def freeze_info(body: Mapping[str, Any]) -> FreezeInfo:
    return FreezeInfo(
        auth_no=_required(body, "auth_no"),
        operation_id=_text(body, "operation_id"),
        status=_text(body, "status") or "INIT",
        amount_fen=yuan_field(body, "amount"),
    )


def capture_info(body: Mapping[str, Any]) -> CaptureInfo:
    return CaptureInfo(
        trade_no=_required(body, "trade_no"), amount_fen=yuan_field(body, "total_amount")
    )


def unfreeze_info(body: Mapping[str, Any]) -> UnfreezeInfo:
    return UnfreezeInfo(
        auth_no=_text(body, "auth_no"),
        status=_text(body, "status") or "SUCCESS",
        amount_fen=yuan_field(body, "amount"),
    )


def refund_info(body: Mapping[str, Any]) -> RefundInfo:
    return RefundInfo(
        trade_no=_text(body, "trade_no"),
        fund_change=_text(body, "fund_change") == "Y",
        refund_fee_fen=yuan_field(body, "refund_fee"),
    )


def refund_query_info(body: Mapping[str, Any]) -> RefundQueryInfo:
    """Alipay's rule: data returned with refund_status empty or REFUND_SUCCESS means refunded;
    no refund data means the refund was never made."""
    if not _text(body, "refund_amount"):
        return RefundQueryInfo(RefundState.NOT_FOUND, None)
    status = _text(body, "refund_status")
    state = RefundState.SUCCESS if status in ("", "REFUND_SUCCESS") else RefundState.PROCESSING
    return RefundQueryInfo(state, yuan_field(body, "refund_amount"))


def trade_status(body: Mapping[str, Any]) -> PaymentStatus:
    word = _required(body, "trade_status")
    state = TRADE_STATES.get(word)
    if state is None:
        raise ResponseError("bad_response", f"unknown trade_status {word!r}")
    paid = state is PaymentState.CAPTURED
    return PaymentStatus(
        state=state,
        captured_fen=yuan_field(body, "total_amount") if paid else 0,
        provider_ref=_text(body, "trade_no") or None,
        provider_status=word,
    )


def freeze_status(body: Mapping[str, Any]) -> PaymentStatus:
    """A detail query → the hold's state. A captured order shows as FINISH (or CLOSED after the
    rest was unfrozen) with ``total_pay_amount`` > 0: that is CAPTURED, not CLOSED."""
    word = _required(body, "order_status")
    state = ORDER_STATES.get(word)
    if state is None:
        raise ResponseError("bad_response", f"unknown order_status {word!r}")
    captured = _optional_yuan(body, "total_pay_amount")
    rest = _optional_yuan(body, "rest_amount")
    if captured > 0:
        state = PaymentState.CAPTURED
    return PaymentStatus(
        state=state,
        held_fen=rest if state in (PaymentState.HELD, PaymentState.CAPTURED) else 0,
        captured_fen=captured,
        provider_ref=_text(body, "auth_no") or None,
        provider_status=word,
    )


def combine_preauth(hold: PaymentStatus, trade: PaymentStatus | None) -> PaymentStatus:
    """The hold as the freeze order shows it, completed with the captured trade's own word
    (a captured trade refunded in full reads TRADE_CLOSED but stays CAPTURED money-wise)."""
    if trade is None or PaymentState.CAPTURED not in (hold.state, trade.state):
        return hold
    word = f"{hold.provider_status}/{trade.provider_status}"
    return PaymentStatus(
        state=PaymentState.CAPTURED,
        held_fen=hold.held_fen,
        captured_fen=max(hold.captured_fen, trade.captured_fen),
        refunded_fen=hold.refunded_fen,
        provider_ref=hold.provider_ref,
        provider_status=word,
    )


def bill_url_of(body: Mapping[str, Any]) -> str:
    return _required(body, "bill_download_url")


def yuan_field(body: Mapping[str, Any], name: str) -> int:
    """A required yuan amount → fen, exactly; anything else is a bad response."""
    value = body.get(name)
    if not isinstance(value, str):
        raise ResponseError("bad_response", f"{name} missing or not a string")
    try:
        return yuan_to_fen(value)
    except AmountError as exc:
        raise ResponseError("bad_amount", f"{name}: {exc}") from exc


def _optional_yuan(body: Mapping[str, Any], name: str) -> int:
    return yuan_field(body, name) if _text(body, name) else 0


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


def _required(body: Mapping[str, Any], name: str) -> str:
    value = _text(body, name)
    if not value:
        raise ResponseError("bad_response", f"{name} missing")
    return value
