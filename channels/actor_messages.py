"""What goes into and comes out of a ChannelActor.

Calls (``system.call(address, msg)``) and what they answer:

==================================  ==========================================================
Hold, Query, Capture, Release,      the Channel's :class:`~channels.model.ChannelResult`; a
Close, Refund, RefundQuery          ChannelError becomes UNKNOWN (may have been sent) or
                                    TECHNICAL_FAILURE (not sent); a refused request (disabled,
                                    overloaded) is TECHNICAL_FAILURE, never sent
FetchBill                           :class:`~channels.model.Bill`, or fails with ChannelError
RefreshCertificates                 :class:`CertificateRefresh`
VerifyCallback                      :class:`~channels.model.CallbackEvent`, or fails with
                                    CallbackRejected
AckCallback                         :class:`~channels.model.HttpReply`
Enable, Disable                     None
GetStatistics                       :class:`ChannelStatistics`
RecordApproval (cast)               a business outcome learned later (callback, query)
==================================  ==========================================================
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from channels.health import HealthSnapshot
from channels.model import (
    CaptureRequest,
    ChannelCaps,
    HoldRequest,
    Provider,
    RefundRequest,
    ReleaseRequest,
)

__all__ = [
    "AckCallback",
    "Capture",
    "CertificateRefresh",
    "CertificateStatus",
    "ChannelStatistics",
    "Close",
    "Disable",
    "Enable",
    "FetchBill",
    "GetStatistics",
    "Hold",
    "Query",
    "RecordApproval",
    "RefreshCertificates",
    "RefreshResult",
    "Refund",
    "RefundQuery",
    "Release",
    "VerifyCallback",
]

# -- calls: one per Channel operation --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hold:
    request: HoldRequest


@dataclass(frozen=True, slots=True)
class Query:
    key: str
    provider_ref: str | None = None
    sent_at: datetime | None = None  # the journaled time of the request that created ``key``


@dataclass(frozen=True, slots=True)
class Capture:
    request: CaptureRequest


@dataclass(frozen=True, slots=True)
class Release:
    request: ReleaseRequest


@dataclass(frozen=True, slots=True)
class Close:
    key: str
    provider_ref: str | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    request: RefundRequest


@dataclass(frozen=True, slots=True)
class RefundQuery:
    key: str
    refund_key: str
    sent_at: datetime | None = None  # the journaled time of the request that created it


@dataclass(frozen=True, slots=True)
class FetchBill:
    bill_date: date


# -- calls: control and callbacks ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshCertificates:
    """Fetch the provider's certificates now, unless a refresh ran within the minimum gap."""


@dataclass(frozen=True, slots=True)
class VerifyCallback:
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    now: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class AckCallback:
    accepted: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Enable:
    """Take new holds again."""


@dataclass(frozen=True, slots=True)
class Disable:
    """Refuse new holds; everything that settles earlier holds still goes through."""

    reason: str = "operator"


@dataclass(frozen=True, slots=True)
class GetStatistics:
    """The router's view: eligibility, health, load."""


@dataclass(frozen=True, slots=True)
class RecordApproval:
    """Cast: a customer's payment on this channel was approved or declined, as the switch
    learned from a callback or a query (a WeChat hold answers PENDING; the customer decides
    later). Feeds the approval rate only."""

    approved: bool
    reason: str | None = None


# -- what comes out ----------------------------------------------------------------------------


class RefreshResult(enum.Enum):
    REFRESHED = "refreshed"
    FAILED = "failed"
    THROTTLED = "throttled"  # one ran within the minimum gap; nothing was fetched


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """Times are the actor's monotonic clock (``trio.current_time()``)."""

    count: int | None = None  # held after the last successful refresh; None before the first
    refreshed_at: float | None = None
    attempted_at: float | None = None
    next_at: float | None = None
    refreshes: int = 0
    failures: int = 0
    failures_in_row: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class CertificateRefresh:
    result: RefreshResult
    status: CertificateStatus


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    channel: str
    provider: Provider
    merchant_id: str
    caps: ChannelCaps | None  # None until the channel is built
    enabled: bool
    disabled_reason: str | None
    eligible: bool  # may take new holds: enabled and not DOWN
    health: HealthSnapshot
    in_flight: int
    waiting: int
    max_in_flight: int
    waited: int  # requests that had to wait for a slot, in total
    peak_waiting: int
    abandoned: int  # dropped unsent from the queue: their callers had given up
    late_replies: int  # results whose callers had given up while the provider answered
    refused: Mapping[str, int]  # never sent: channel_disabled, overloaded
    counts: Mapping[str, Mapping[str, int]]  # operation -> outcome -> n
    latency: Mapping[str, Mapping[str, float | int]]  # operation (and "wait") -> figures
    callbacks: Mapping[str, int]  # "verified", or the rejection reason -> n
    last_error: str | None
    last_error_at: float | None
    certificates: CertificateStatus

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the admin socket and logs."""
        return {
            "channel": self.channel,
            "provider": self.provider.value,
            "merchant_id": self.merchant_id,
            "hold_kind": self.caps.hold_kind.value if self.caps else None,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "eligible": self.eligible,
            "health": self.health.to_dict(),
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "max_in_flight": self.max_in_flight,
            "waited": self.waited,
            "peak_waiting": self.peak_waiting,
            "abandoned": self.abandoned,
            "late_replies": self.late_replies,
            "refused": dict(self.refused),
            "counts": {op: dict(by) for op, by in self.counts.items()},
            "latency": {op: dict(figures) for op, figures in self.latency.items()},
            "callbacks": dict(self.callbacks),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "certificates": asdict(self.certificates),
        }
