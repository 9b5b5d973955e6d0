"""The interface the router and the ChannelActor use, implemented once per provider.

An adapter is a thin async shell around its provider's sans-IO core: the core builds signed
requests and classifies responses; the adapter sends them through ``channels.transport`` and
turns transport failures into ChannelResults (UNKNOWN when the request may have been sent,
TECHNICAL_FAILURE when it certainly was not). Adapters never retry on their own: the order
journals each attempt and the router decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Protocol, runtime_checkable

from channels.model import (
    Bill,
    CallbackEvent,
    CaptureRequest,
    ChannelCaps,
    ChannelResult,
    HoldRequest,
    HttpReply,
    Provider,
    RefundRequest,
    ReleaseRequest,
)

__all__ = ["CallbackVerifier", "Channel", "ConfirmsCallbacks"]


class CallbackVerifier(Protocol):
    """Verifies one provider's callbacks for one configured channel (sans-IO, synchronous)."""

    @property
    def provider(self) -> Provider: ...

    @property
    def channel_name(self) -> str: ...

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        """``headers`` with lower-case names; ``body`` the raw bytes; ``now`` Unix seconds.
        Raises ``CallbackRejected`` with a stable reason code."""
        ...

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        """The provider's own success / failure answer."""
        ...


@runtime_checkable
class ConfirmsCallbacks(Protocol):
    """A verifier whose provider requires a money-moving notify to be confirmed by a query
    before it is acted on (UnionPay's queryTrans rule). The switch awaits it before recording."""

    async def confirm_callback(self, event: CallbackEvent) -> CallbackEvent:
        """Returns the event when the provider's own records agree; raises ``CallbackRejected``
        (``unconfirmed`` while the provider cannot say yet, so the notify comes again)."""
        ...


class Channel(CallbackVerifier, Protocol):
    """One configured merchant account at one provider."""

    @property
    def caps(self) -> ChannelCaps: ...

    async def hold(self, request: HoldRequest) -> ChannelResult: ...

    async def query(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """The payment ``key`` as the provider has it now. ``sent_at``: the journaled time of
        the request that created ``key``; providers that identify a transaction by time
        (UnionPay's txnTime) need it after a restart; others ignore it."""
        ...

    async def capture(self, request: CaptureRequest) -> ChannelResult: ...

    async def release(self, request: ReleaseRequest) -> ChannelResult: ...

    async def close(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """Close the unpaid payment ``key``. ``sent_at``: as for ``query``."""
        ...

    async def refund(self, request: RefundRequest) -> ChannelResult: ...

    async def refund_query(
        self, key: str, refund_key: str, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """The refund ``refund_key`` of payment ``key``. ``sent_at``: the journaled time of the
        request that created ``refund_key``; providers that identify a transaction by time
        (UnionPay's txnTime) need it after a restart; others ignore it."""
        ...

    async def bill(self, bill_date: date) -> Bill: ...

    async def refresh_certificates(self) -> int:
        """Fetch the provider's current platform certificates/keys; returns how many are held.
        Called by the ChannelActor on a schedule, never per request."""
        ...

    async def aclose(self) -> None: ...
