"""UnionPay's back notifications (``backUrl``): verification, classification, acknowledgement.

Order of checks, each failure a ``CallbackRejected`` with a stable reason:

1. the body is a form with no duplicated field (``bad_form``, ``duplicate_field``);
2. version 5.1.0, an accepted ``signMethod`` (``bad_version``, ``sign_method``);
3. ``signPubKeyCert`` chains to the configured root and intermediate, is valid now and names
   UnionPay (``bad_cert``, ``bad_cert_chain``, ``cert_expired``, ``bad_cert_subject``);
4. the signature, 5.1.0 style (``bad_signature``; a 5.0.0 SHA-1 signature is
   ``signature_type``);
5. ``merId`` is ours — a validly signed notify for someone else's merchant needs a person
   (``unknown_merchant``, alert);
6. the kind comes from ``txnType`` alone and must be one this endpoint takes
   (``wrong_event_type``: a refund notify is never a payment);
7. amounts, currency and the ids the switch needs are present and well formed
   (``bad_amount``, ``missing_field``).

The event's id is UnionPay's ``queryId``, unique per transaction. A follow-up (completion,
cancel, refund) is a transaction of its own: ``out_trade_no`` is the hold/payment key it is
about (from ``reqReserved``) and ``out_refund_no`` its own orderId — the switch's capture,
release or refund key. A notify proves that UnionPay
*said* so; for money-moving results ACP asks merchants to confirm with ``queryTrans`` before
acting, so succeeded events carry ``raw["confirm_with_query"] = True`` and the channel's
``confirm_callback`` does that query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from channels.model import CallbackEvent, CallbackKind, CallbackRejected, HttpReply, Provider

from .errors import AcpError
from .messages import CURRENCY_CNY, TxnType, decode_form, parse_amount, parse_txn_time
from .pki import SignCertVerifier
from .responses import Verdict, verdict_of
from .signing import SignPolicy, verify_message

__all__ = ["ALL_KINDS", "KIND_BY_TXN_TYPE", "NotifyVerifier", "ack"]

KIND_BY_TXN_TYPE: Mapping[TxnType, CallbackKind] = {
    TxnType.CONSUME: CallbackKind.PAYMENT,
    TxnType.PREAUTH: CallbackKind.HOLD,
    TxnType.PREAUTH_COMPLETE: CallbackKind.CAPTURE,
    TxnType.PREAUTH_CANCEL: CallbackKind.RELEASE,
    TxnType.PREAUTH_COMPLETE_CANCEL: CallbackKind.REFUND,
    TxnType.REFUND: CallbackKind.REFUND,
}
ALL_KINDS = frozenset(KIND_BY_TXN_TYPE.values())
REQUIRED = ("merId", "orderId", "txnType", "txnTime", "txnAmt", "queryId", "respCode")
# Fields left out of the event's raw copy: bulky (the certificate) or never needed again.
_NOT_RAW = frozenset({"signature", "signPubKeyCert"})
_PAID = frozenset({CallbackKind.PAYMENT, CallbackKind.CAPTURE})


def ack(accepted: bool, message: str = "") -> HttpReply:
    """UnionPay reads only the status: 200 stops the retries, anything else continues them."""
    if accepted:
        return HttpReply(200, b"ok", "text/plain")
    text = message.encode("ascii", "replace")[:200] or b"fail"
    return HttpReply(500, text, "text/plain")


@dataclass(frozen=True, slots=True)
class NotifyVerifier:
    """Verifies notifies for one merchant (merId) and one endpoint's kinds."""

    channel_name: str
    mer_id: str
    certs: SignCertVerifier
    policy: SignPolicy = field(default_factory=SignPolicy)
    kinds: frozenset[CallbackKind] = ALL_KINDS

    def verify(self, body: bytes, now: float) -> CallbackEvent:
        try:
            return self._verify(body, now)
        except AcpError as exc:
            raise CallbackRejected(exc.reason, exc.message) from exc

    def _verify(self, body: bytes, now: float) -> CallbackEvent:
        fields = decode_form(body)
        verify_message(fields, self.certs, now, self.policy)
        for name in REQUIRED:
            if not fields.get(name):
                raise AcpError("missing_field", f"notify without {name}")
        if fields["merId"] != self.mer_id:
            raise CallbackRejected(
                "unknown_merchant",
                f"signed notify for merId {fields['merId']!r}, this channel is {self.mer_id}",
                alert=True,
            )
        try:
            txn_type = TxnType(fields["txnType"])
            kind = KIND_BY_TXN_TYPE[txn_type]
        except (ValueError, KeyError) as exc:
            raise AcpError("wrong_event_type", f"txnType {fields['txnType']!r}") from exc
        if kind not in self.kinds:
            raise AcpError("wrong_event_type", f"a {kind.value} notify on this endpoint")
        if fields.get("currencyCode", CURRENCY_CNY) != CURRENCY_CNY:
            raise AcpError("bad_amount", f"currencyCode {fields['currencyCode']!r}")
        parse_txn_time(fields["txnTime"])
        amount = parse_amount(fields["txnAmt"])
        return self._event(fields, txn_type, kind, amount)

    def _event(
        self, fields: Mapping[str, str], txn_type: TxnType, kind: CallbackKind, amount: int
    ) -> CallbackEvent:
        order_id = fields["orderId"]
        code = fields["respCode"]
        succeeded = verdict_of(code) is Verdict.SUCCESS
        follow_up = txn_type not in (TxnType.CONSUME, TxnType.PREAUTH)
        if follow_up and not fields.get("origQryId"):
            raise AcpError("missing_field", f"a {kind.value} notify without origQryId")
        # A follow-up is its own transaction: its orderId is the switch's key for it (capture,
        # release or refund key), and reqReserved (ours, echoed) names the payment it is about.
        out_trade_no = (fields.get("reqReserved") or order_id) if follow_up else order_id
        refund = kind is CallbackKind.REFUND
        raw: dict[str, Any] = {k: v for k, v in fields.items() if k not in _NOT_RAW}
        raw["confirm_with_query"] = succeeded
        return CallbackEvent(
            provider=Provider.UNIONPAY,
            channel=self.channel_name,
            kind=kind,
            event_id=fields["queryId"],
            status=code,
            out_trade_no=out_trade_no,
            provider_ref=fields["queryId"],
            amount_fen=amount,
            paid_fen=amount if succeeded and kind in _PAID else None,
            refund_fen=amount if refund else None,
            out_refund_no=order_id if follow_up else None,
            succeeded=succeeded,
            raw=raw,
        )
