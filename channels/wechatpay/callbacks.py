"""Verification of WeChat Pay notifications (TRANSACTION.* and REFUND.*), sans-IO.

The order of the checks is part of the contract (specs/providers.md, callback-cases.md 1-13):
headers present and non-empty, a numeric timestamp, the configured signature type (no
downgrade), a serial we hold (a decimal-written serial is simply unknown), the signature over
the *raw* body, freshness, then the envelope, the AES-GCM resource, and finally the business
identity (our mchid/appid) and the consistency of event type with the resource. Cheap,
unauthenticated checks come first; nothing the body says is believed before its signature
verifies, and nothing the resource says before GCM authenticates it.

Whether the order exists and the amount equals ours is the switch's business check, made
against its database; this module returns a ``CallbackEvent`` or raises ``CallbackRejected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from channels.model import CallbackEvent, CallbackKind, CallbackRejected, HttpReply, Provider
from channels.wechatpay.aead import ALGORITHM, EncryptedResource
from channels.wechatpay.certificates import PlatformKeys
from channels.wechatpay.errors import WeChatPayError
from channels.wechatpay.responses import refund_of, transaction_of
from channels.wechatpay.signing import SCHEMA, SignedHeaders, rsa_verify

__all__ = [
    "EVENT_TYPES",
    "WINDOW_S",
    "CallbackPolicy",
    "EventType",
    "ack",
    "verify_callback",
]

WINDOW_S = 300
RESOURCE_TYPE = "encrypt-resource"


@dataclass(frozen=True, slots=True)
class EventType:
    kind: CallbackKind
    original_type: str
    status: str  # the resource's trade_state / refund_status this event type announces


EVENT_TYPES: Mapping[str, EventType] = {
    "TRANSACTION.SUCCESS": EventType(CallbackKind.PAYMENT, "transaction", "SUCCESS"),
    "REFUND.SUCCESS": EventType(CallbackKind.REFUND, "refund", "SUCCESS"),
    "REFUND.ABNORMAL": EventType(CallbackKind.REFUND, "refund", "ABNORMAL"),
    "REFUND.CLOSED": EventType(CallbackKind.REFUND, "refund", "CLOSED"),
}


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """What one configured channel accepts. ``accept`` narrows the kinds, for an endpoint that
    only takes payments (a refund resource there is rejected)."""

    channel: str
    mchid: str
    appid: str
    apiv3_key: bytes = field(repr=False)
    signature_type: str = SCHEMA
    window_s: int = WINDOW_S
    accept: frozenset[CallbackKind] = frozenset({CallbackKind.PAYMENT, CallbackKind.REFUND})


def _reject(reason: str, message: str, *, alert: bool = False) -> CallbackRejected:
    return CallbackRejected(reason, message, alert=alert)


def _authenticate(
    headers: Mapping[str, str], body: bytes, now: float, keys: PlatformKeys, policy: CallbackPolicy
) -> None:
    try:
        signed = SignedHeaders.from_headers(headers)
    except WeChatPayError as exc:
        raise _reject(exc.reason, exc.message) from exc
    if signed.signature_type != policy.signature_type:
        raise _reject("signature_type", f"signature type {signed.signature_type[:40]!r}")
    try:
        rsa_verify(keys.key_for(signed.serial, now), signed.message(body), signed.signature)
    except WeChatPayError as exc:
        raise _reject(exc.reason, exc.message) from exc
    if abs(now - signed.timestamp_s) >= policy.window_s:
        raise _reject("stale_timestamp", f"timestamp {signed.timestamp} is outside the window")


def _envelope(body: bytes) -> tuple[dict[str, Any], EncryptedResource]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _reject("bad_json", "body is not JSON") from exc
    if not isinstance(document, dict):
        raise _reject("bad_json", "body is not a JSON object")
    for name in ("id", "event_type"):
        if not isinstance(document.get(name), str) or not document[name]:
            raise _reject("bad_json", f"{name} is missing")
    if document.get("resource_type") != RESOURCE_TYPE:
        raise _reject("bad_resource", f"resource_type {str(document.get('resource_type'))[:40]}")
    try:
        resource = EncryptedResource.from_json(document.get("resource"))
    except WeChatPayError as exc:
        raise _reject("bad_resource", exc.message) from exc
    if resource.algorithm != ALGORITHM:
        raise _reject("bad_resource", f"algorithm {resource.algorithm[:40]!r}")
    return document, resource


def _decrypt(resource: EncryptedResource, apiv3_key: bytes) -> dict[str, Any]:
    try:
        plaintext = resource.open(apiv3_key)
    except WeChatPayError as exc:
        raise _reject("decrypt_failed", exc.message) from exc
    try:
        content = orjson.loads(plaintext)
    except orjson.JSONDecodeError as exc:
        raise _reject("bad_resource", "decrypted resource is not JSON") from exc
    if not isinstance(content, dict):
        raise _reject("bad_resource", "decrypted resource is not an object")
    return content


def _check_merchant(content: Mapping[str, Any], policy: CallbackPolicy) -> None:
    """A valid signature and key with someone else's merchant: a misrouted or replayed
    notification from another account. Alert, because it means keys are shared or leaked."""
    if content.get("mchid") != policy.mchid:
        raise _reject("unknown_merchant", "mchid is not ours", alert=True)
    # refund resources carry no appid; a payment resource without one fails its parse later
    if "appid" in content and content["appid"] != policy.appid:
        raise _reject("unknown_merchant", "appid is not ours", alert=True)


def _event(
    document: Mapping[str, Any],
    event: EventType,
    resource: EncryptedResource,
    content: dict[str, Any],
    policy: CallbackPolicy,
) -> CallbackEvent:
    if resource.original_type and resource.original_type != event.original_type:
        raise _reject("wrong_event_type", f"{resource.original_type} resource in a {event.kind}")
    if event.kind not in policy.accept:
        raise _reject("wrong_event_type", f"{event.kind.value} event on this endpoint")
    try:
        if event.kind is CallbackKind.PAYMENT:
            if "refund_status" in content or "out_refund_no" in content:
                raise _reject("wrong_event_type", "refund resource in a payment event")
            payment = transaction_of(content)
            status, currency = payment.trade_state, payment.currency
        else:
            refund = refund_of(content, status_field="refund_status")
            status, currency = refund.status, str(content["amount"].get("currency") or "CNY")
    except WeChatPayError as exc:
        raise _reject("bad_resource", exc.message) from exc
    if status != event.status:
        raise _reject("wrong_event_type", f"{document['event_type']} with state {status}")
    if currency != "CNY":
        raise _reject("bad_amount", f"currency {currency[:8]!r}", alert=True)
    if event.kind is CallbackKind.PAYMENT:
        out_trade_no, ref, total = payment.out_trade_no, payment.transaction_id, payment.total_fen
        paid, refunded, out_refund_no = payment.payer_total_fen, None, None
    else:
        out_trade_no, ref, total = refund.out_trade_no, refund.transaction_id, refund.total_fen
        paid, refunded, out_refund_no = None, refund.refund_fen, refund.out_refund_no
    return CallbackEvent(
        provider=Provider.WECHATPAY,
        channel=policy.channel,
        kind=event.kind,
        event_id=document["id"],
        status=status,
        out_trade_no=out_trade_no,
        provider_ref=ref,
        amount_fen=total,
        paid_fen=paid,
        refund_fen=refunded,
        out_refund_no=out_refund_no,
        succeeded=status == "SUCCESS",
        raw=content,
    )


def verify_callback(
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    *,
    keys: PlatformKeys,
    policy: CallbackPolicy,
) -> CallbackEvent:
    """``headers`` with lower-case names, ``body`` the raw bytes, ``now`` Unix seconds."""
    _authenticate(headers, body, now, keys, policy)
    document, resource = _envelope(body)
    content = _decrypt(resource, policy.apiv3_key)
    event = EVENT_TYPES.get(document["event_type"])
    if event is None:
        raise _reject("wrong_event_type", f"event_type {document['event_type'][:40]!r}")
    _check_merchant(content, policy)
    return _event(document, event, resource, content, policy)


def ack(accepted: bool, message: str = "") -> HttpReply:
    """204 with no body on success; otherwise 500 with ``{"code":"FAIL","message":..}``, which
    makes WeChat retry on its schedule."""
    if accepted:
        return HttpReply(204)
    body = orjson.dumps({"code": "FAIL", "message": message or "rejected"})
    return HttpReply(500, body, "application/json")
