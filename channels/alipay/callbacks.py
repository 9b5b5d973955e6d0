"""Alipay notifies (asynchronous callbacks) → verified ``CallbackEvent``s, sans-IO.

The order of checks is the security argument:

1. the body is an unambiguous form (a duplicated field is refused: two readers could disagree
   on its value), decoded once in the charset it names;
2. ``sign`` and ``sign_type`` are present and the type is RSA2 — ``RSA`` (SHA-1) is a
   downgrade and refused even though Alipay still offers it;
3. the signature covers *every* other field, so an injected or altered field fails here;
4. only then the content: the app and the seller are ours (a valid signature with someone
   else's ids is a misrouted or replayed notify and needs a person: ``alert``), the notify
   type is one we handle, amounts are exact.

There is no timestamp window: Alipay resends the same notify (same ``notify_id``) for up to a
day, so replays are stopped by the switch's inbox and forward-only transitions, not here.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay.errors import FormError
from channels.alipay.forms import CHARSETS, parse_form
from channels.alipay.responses import TRADE_STATES
from channels.alipay.signing import SIGN_TYPE, notify_sign_content, verify_content
from channels.model import CallbackEvent, CallbackKind, CallbackRejected, HttpReply, Provider
from channels.money import AmountError, yuan_to_fen

__all__ = [
    "NOTIFY_KINDS",
    "PAID_STATUSES",
    "ack_reply",
    "charset_of_content_type",
    "verify_notify",
]

NOTIFY_KINDS: Mapping[str, CallbackKind] = {
    "trade_status_sync": CallbackKind.PAYMENT,
    "fund_auth_freeze": CallbackKind.HOLD,
    "fund_auth_unfreeze": CallbackKind.RELEASE,
}
# The fund auth operation a notify type must describe.
_OPERATION_TYPES: Mapping[str, str] = {
    "fund_auth_freeze": "FREEZE",
    "fund_auth_unfreeze": "UNFREEZE",
}
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
# A refund is announced as a trade_status_sync carrying refund_fee: TRADE_SUCCESS when part of
# the trade is refunded, TRADE_CLOSED when all of it is.
_REFUND_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_CLOSED"})


def ack_reply(accepted: bool) -> HttpReply:
    """Alipay stops resending only on a body of exactly ``success``; anything else is a retry."""
    return HttpReply(200, b"success" if accepted else b"fail", "text/plain; charset=utf-8")


def charset_of_content_type(content_type: str) -> str:
    """The charset parameter of a Content-Type header, as a codec; utf-8 when absent or odd."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset":
            return CHARSETS.get(value.strip().strip('"').lower(), "utf-8")
    return "utf-8"


def verify_notify(
    body: bytes,
    *,
    alipay_public_key: rsa.RSAPublicKey,
    app_id: str,
    seller_id: str,
    channel: str,
    content_type: str = "",
) -> CallbackEvent:
    """Verify one notify body. Raises ``CallbackRejected`` with a stable reason."""
    try:
        form = parse_form(body, charset_of_content_type(content_type))
    except FormError as exc:
        raise CallbackRejected(exc.reason, exc.message) from exc
    fields = form.fields
    sign = _field(fields, "sign")
    sign_type = _field(fields, "sign_type")
    if sign_type != SIGN_TYPE:
        raise CallbackRejected("signature_type", f"sign_type {sign_type[:16]!r} is not RSA2")
    if not verify_content(notify_sign_content(fields), sign, alipay_public_key, form.charset):
        raise CallbackRejected("bad_signature", "notify signature does not verify")
    if fields.get("app_id") != app_id:
        raise CallbackRejected("unknown_merchant", "app_id is not ours", alert=True)
    notify_type = _field(fields, "notify_type")
    kind = NOTIFY_KINDS.get(notify_type)
    if kind is None:
        raise CallbackRejected("wrong_event_type", f"notify_type {notify_type[:40]!r}")
    event_id = _field(fields, "notify_id")
    if kind is CallbackKind.PAYMENT:
        return _trade_event(fields, event_id, seller_id, channel)
    return _fund_auth_event(fields, notify_type, kind, event_id, seller_id, channel)


def _trade_event(
    fields: Mapping[str, str], event_id: str, seller_id: str, channel: str
) -> CallbackEvent:
    if _field(fields, "seller_id") != seller_id:
        raise CallbackRejected("unknown_merchant", "seller_id is not ours", alert=True)
    status = _field(fields, "trade_status")
    if status not in TRADE_STATES:
        raise CallbackRejected("bad_status", f"unknown trade_status {status[:32]!r}")
    total = _amount(fields, "total_amount")
    receipt = _amount(fields, "receipt_amount") if fields.get("receipt_amount") else None
    # refund_fee is the trade's *cumulative* refunded amount (Alipay states no per-refund
    # amount in a notify): for a trade's first refund it equals that refund, not after it, so
    # the event says so and the switch checks it against all the refunds it has on its books
    refund = _amount(fields, "refund_fee") if fields.get("refund_fee") else 0
    is_refund = refund > 0 and status in _REFUND_STATUSES
    # out_biz_no is the out_request_no the refund was made with: the switch's refund key
    refund_key = fields.get("out_biz_no") or fields.get("out_request_no") or None
    return CallbackEvent(
        provider=Provider.ALIPAY,
        channel=channel,
        kind=CallbackKind.REFUND if is_refund else CallbackKind.PAYMENT,
        event_id=event_id,
        status=status,
        out_trade_no=_field(fields, "out_trade_no"),
        provider_ref=fields.get("trade_no") or None,
        amount_fen=total,
        paid_fen=receipt,
        refund_fen=refund if is_refund else None,
        out_refund_no=refund_key if is_refund else None,
        # a refund notify is only sent for a refund that was made
        succeeded=is_refund or status in PAID_STATUSES,
        raw=dict(fields),
        refund_cumulative=is_refund,
    )


def _fund_auth_event(
    fields: Mapping[str, str],
    notify_type: str,
    kind: CallbackKind,
    event_id: str,
    seller_id: str,
    channel: str,
) -> CallbackEvent:
    payee = fields.get("payee_user_id", "")
    if payee and payee != seller_id:
        raise CallbackRejected("unknown_merchant", "payee_user_id is not ours", alert=True)
    operation = fields.get("operation_type", "")
    if operation and operation != _OPERATION_TYPES[notify_type]:
        raise CallbackRejected("wrong_event_type", f"{notify_type} describing {operation[:16]!r}")
    status = _field(fields, "status")
    if kind is CallbackKind.HOLD and status != "SUCCESS":
        # A freeze notify announces frozen funds; one that says otherwise contradicts itself
        # and no automatic transition can be right for it (callback case 24).
        message = f"fund_auth_freeze with status {status[:16]!r}"
        raise CallbackRejected("bad_status", message, alert=True)
    return CallbackEvent(
        provider=Provider.ALIPAY,
        channel=channel,
        kind=kind,
        event_id=event_id,
        status=status,
        out_trade_no=_field(fields, "out_order_no"),
        provider_ref=_field(fields, "auth_no"),
        amount_fen=_amount(fields, "amount"),
        # an unfreeze the merchant asked for carries its request number, the release's own key;
        # one Alipay made itself (the rest after a COMPLETE capture) carries none
        out_refund_no=(fields.get("out_request_no") or None)
        if kind is CallbackKind.RELEASE
        else None,
        succeeded=status == "SUCCESS",
        raw=dict(fields),
    )


def _field(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise CallbackRejected("missing_field", f"no {name}")
    return value


def _amount(fields: Mapping[str, str], name: str) -> int:
    try:
        fen = yuan_to_fen(_field(fields, name))
    except AmountError as exc:
        raise CallbackRejected("bad_amount", f"{name}: {exc}") from exc
    if fen < 0:
        raise CallbackRejected("bad_amount", f"{name} is negative")
    return fen
