"""The vocabulary every payment channel speaks to the router, whatever its provider.

A provider call ends in one of five outcomes, and the difference between them is what keeps a
switch from charging twice: DECLINED and TECHNICAL_FAILURE are *confirmed* not to have moved
money (the order may try another channel), UNKNOWN is not confirmed either way (query before
anything else), PENDING means the provider accepted the request and the customer or the
provider still has to act. Approval statistics count DECLINED; technical health counts
TECHNICAL_FAILURE and UNKNOWN. Never the other way round: "insufficient funds" says nothing
about the channel.

Every request carries the idempotency key the switch journaled before sending it
(out_trade_no / out_request_no / out_refund_no); the adapters never invent keys.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

__all__ = [
    "Bill",
    "BillKind",
    "BillRow",
    "BillSummary",
    "CallbackEvent",
    "CallbackKind",
    "CallbackRejected",
    "CaptureRequest",
    "ChannelCaps",
    "ChannelError",
    "ChannelResult",
    "HoldKind",
    "HoldRequest",
    "HttpReply",
    "Operation",
    "Outcome",
    "PaymentState",
    "PaymentStatus",
    "Provider",
    "RefundRequest",
    "RefundState",
    "ReleaseRequest",
]


class Provider(enum.Enum):
    WECHATPAY = "wechatpay"
    ALIPAY = "alipay"
    UNIONPAY = "unionpay"


class Outcome(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"
    PENDING = "pending"
    UNKNOWN = "unknown"
    TECHNICAL_FAILURE = "technical_failure"


class Operation(enum.Enum):
    """Names match ``payment_attempts.operation`` where they are journaled."""

    HOLD = "hold"
    QUERY = "query"
    CAPTURE = "capture"
    RELEASE = "release"
    CLOSE = "close"
    REFUND = "refund"
    REFUND_QUERY = "refund_query"
    BILL = "bill"
    CERTIFICATES = "certificates"


class HoldKind(enum.Enum):
    """How a channel holds money before the sale's amount is known."""

    PREAUTH = "preauth"  # frozen funds, captured for the actual amount, rest unfrozen
    PREPAY_CEILING = "prepay_ceiling"  # the ceiling is paid; the difference is refunded


class PaymentState(enum.Enum):
    """A payment as the provider reports it, mapped onto one scale for the order."""

    NOT_FOUND = "not_found"  # the provider has no record of the key
    AWAITING_CUSTOMER = "awaiting_customer"  # created, the customer has not paid/confirmed yet
    HELD = "held"  # frozen (pre-auth) or ceiling paid (prepay); nothing captured yet
    CAPTURED = "captured"  # some amount captured; refunds may follow
    CLOSED = "closed"  # closed/cancelled/reversed/unfrozen without capture
    FAILED = "failed"  # the customer's payment failed (PAYERROR, declined)


class RefundState(enum.Enum):
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"  # ABNORMAL / CLOSED / refund refused
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class ChannelCaps:
    hold_kind: HoldKind
    partial_capture: bool = True
    max_refunds_per_payment: int = 50


@dataclass(frozen=True, slots=True)
class HoldRequest:
    key: str  # out_trade_no (WeChat, Alipay freeze out_order_no, UnionPay orderId)
    amount_fen: int
    description: str
    payer_id: str  # WeChat openid, Alipay buyer/user id, UnionPay: unused (may be "")
    notify_url: str
    created_at: datetime  # the journaled request time (UnionPay txnTime, Alipay timestamp)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    key: str  # the hold's key
    capture_key: str  # the sale id: the capture's own idempotency key
    amount_fen: int  # net amount to capture, ≤ held
    held_fen: int
    created_at: datetime
    provider_ref: str | None = None  # auth_no / queryId of the hold when the provider needs it


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    key: str  # the hold's key
    release_key: str  # idempotency key of the release (or of the refund of the remainder)
    amount_fen: int  # what to give back: held - captured
    held_fen: int
    created_at: datetime
    provider_ref: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    key: str  # the payment's key
    refund_key: str  # out_refund_no / out_request_no
    amount_fen: int
    total_fen: int  # the payment's total, which WeChat requires with every refund
    reason: str
    created_at: datetime
    provider_ref: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    state: PaymentState
    held_fen: int = 0
    captured_fen: int = 0
    refunded_fen: int = 0
    provider_ref: str | None = None
    provider_status: str = ""  # the provider's own word (trade_state, order_status, respCode)


@dataclass(frozen=True, slots=True)
class ChannelResult:
    operation: Operation
    outcome: Outcome
    key: str
    amount_fen: int | None = None  # the amount the provider confirms for this operation
    provider_ref: str | None = None
    reason: str | None = None  # provider code or sub_code; for failures our own short reason
    message: str = ""
    payment: PaymentStatus | None = None  # set by query (and by holds that learn it)
    refund: RefundState | None = None  # set by refund and refund query
    client_data: Mapping[str, Any] = field(default_factory=dict)  # e.g. WeChat prepay_id


class ChannelError(Exception):
    """A provider exchange that failed below the business level. ``sent`` says whether the
    request may have reached the provider: if it may have, the outcome is UNKNOWN."""

    def __init__(self, reason: str, message: str, *, sent: bool) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.sent = sent


class CallbackKind(enum.Enum):
    PAYMENT = "payment"  # paid (WeChat TRANSACTION.*, Alipay trade_status_sync, UnionPay 01)
    HOLD = "hold"  # funds frozen / pre-authorized (Alipay fund_auth_freeze, UnionPay 02)
    RELEASE = "release"  # unfrozen / pre-auth cancelled
    CAPTURE = "capture"  # pre-auth completed (UnionPay 03)
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """A callback whose signature, freshness and envelope are verified and whose merchant is
    ours. Whether the order exists and the amount matches is the switch's check, not this."""

    provider: Provider
    channel: str  # configured channel name that verified it
    kind: CallbackKind
    event_id: str  # WeChat id, Alipay notify_id, UnionPay queryId
    status: str  # provider's status word: SUCCESS, TRADE_SUCCESS, respCode "00", ...
    out_trade_no: str
    provider_ref: str | None
    amount_fen: int  # the order/hold total the provider states
    paid_fen: int | None = None  # what the payer paid, when stated
    refund_fen: int | None = None
    out_refund_no: str | None = None
    succeeded: bool = False  # this event says money moved as its kind describes
    raw: Mapping[str, Any] = field(default_factory=dict)  # decrypted / decoded content
    # refund_fen is the payment's refunded total so far, not this refund's amount (Alipay's
    # refund_fee): the switch checks it against its books instead of the refund attempt alone
    refund_cumulative: bool = False


class CallbackRejected(Exception):
    """A callback that must not be acknowledged. ``reason`` is a short, stable code used as a
    metric label (``bad_signature``, ``stale_timestamp``, ``unknown_merchant``...); ``alert`` marks
    rejections that need a person (a valid signature with wrong business content)."""

    def __init__(self, reason: str, message: str, *, alert: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.alert = alert


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What the switch answers a provider's callback with, in that provider's own format."""

    status: int
    body: bytes = b""
    content_type: str | None = None


class BillKind(enum.Enum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class BillRow:
    kind: BillKind
    booked_at: datetime  # payment time or refund acceptance time, provider's local time
    merchant_id: str
    out_trade_no: str
    provider_ref: str  # WeChat transaction id / Alipay trade_no / UnionPay queryId
    amount_fen: int  # settled amount; refunds negative
    fee_mfen: int  # provider's fee in milli-fen (WeChat's 5 decimals); negative when returned
    status: str  # provider's status word
    out_refund_no: str | None = None
    order_amount_fen: int | None = None  # before coupons (WeChat 订单金额, Alipay 订单金额)
    rate_ppm: int | None = None


@dataclass(frozen=True, slots=True)
class BillSummary:
    count: int
    settled_fen: int  # payments settled (WeChat 应结订单总金额; Alipay 商家实收 of trades)
    refund_fen: int  # positive total of refunds
    fee_mfen: int  # net fee, as the provider totals it
    order_total_fen: int | None = None


@dataclass(frozen=True, slots=True)
class Bill:
    provider: Provider
    bill_date: date
    rows: tuple[BillRow, ...]
    summary: BillSummary | None
