"""Provider callbacks, from raw bytes to the provider's reply: verify, record, then acknowledge.

The order of those three is the whole point (ARCHITECTURE.md, invariant 5). A callback is
verified by the configured channels of its provider (sans-IO, synchronous), recorded and applied
in one database transaction (``switch.store.payments``), and only after that transaction
committed does the provider hear ``ack(True)``. Every other path answers ``ack(False, reason)``,
and the provider delivers again later: a rejected good callback costs a retry, an acknowledged
one that was not committed would lose the payment (case 25).

Every outcome is counted in ``fuelswitch_callback_verifications_total{provider,result,reason}``
and every rejection is logged with its reason and the caller's address (never the body or keys).
Validly signed callbacks that name something that is not ours (merchant, order, amount) also
write an alert: somebody has to look at those.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
import structlog
import trio

from channels.config import ChannelConfig
from channels.interface import CallbackVerifier, ConfirmsCallbacks
from channels.model import CallbackEvent, CallbackRejected, HttpReply, Provider
from ops.metrics import METRICS, Metrics
from switch.store import OrderUpdates, Store, StoreError, StoreUnavailable
from switch.store.alerts import record_alert
from switch.store.payments import CallbackOutcome, Disposition, record_callback

__all__ = [
    "AppliedCallback",
    "CallbackHook",
    "CallbackProcessor",
    "problem_reply",
    "routing_keys",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AppliedCallback:
    """What the order layer hears after an event moved an attempt (committed)."""

    event: CallbackEvent
    outcome: CallbackOutcome


CallbackHook = Callable[[AppliedCallback], Awaitable[None]]

# The form field that names the merchant/app before any verification: it picks the one channel
# whose keys can verify, instead of trying every channel's RSA key. WeChat's body is encrypted
# per merchant, so there every channel is tried in turn.
ROUTING_FIELDS: Mapping[Provider, str] = {Provider.ALIPAY: "app_id", Provider.UNIONPAY: "merId"}


def routing_keys(configs: Iterable[ChannelConfig]) -> dict[str, str]:
    """Channel name → the value of its provider's routing field (Alipay app_id, UnionPay merId)."""
    keys = {}
    for config in configs:
        if config.provider is Provider.ALIPAY and config.app_id:
            keys[config.name] = config.app_id
        elif config.provider is Provider.UNIONPAY and config.merchant_id:
            keys[config.name] = config.merchant_id
    return keys


# Rejections that only say "not this channel's keys": the next channel may still verify. The
# rank says which of several misses is reported: the one that got furthest.
_MISS_RANK: Mapping[str, int] = {
    "unknown_serial": 0,
    "bad_signature": 1,
    "decrypt_failed": 2,
    "unknown_merchant": 3,
}
_RESULTS: Mapping[Disposition, str] = {
    Disposition.APPLIED: "accepted",
    Disposition.LATE_SUCCESS: "accepted",
    Disposition.IGNORED: "ignored",
    Disposition.DUPLICATE: "duplicate",
}


def problem_reply(status: int, title: str, detail: str) -> HttpReply:
    """An RFC 9457 problem document, for failures no provider format covers."""
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return HttpReply(status, body, "application/problem+json")


def _form_field(body: bytes, name: str) -> str | None:
    try:
        for key, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if key == name:
                return value
    except ValueError:
        return None
    return None


class CallbackProcessor:
    """Turns one provider's raw callback into its reply (see the module docstring).

    ``verifiers`` are the configured channels (anything satisfying ``CallbackVerifier``);
    ``routing_keys`` maps a channel name to the Alipay app_id / UnionPay merId it serves, so
    that the right channel is picked without trying the others. ``clock`` gives Unix seconds
    for freshness checks (a simulator's clock in tests).
    """

    def __init__(
        self,
        store: Store,
        verifiers: Iterable[CallbackVerifier],
        *,
        routing_keys: Mapping[str, str] | None = None,
        metrics: Metrics = METRICS,
        clock: Callable[[], float] = time.time,
        hook_timeout_s: float = 1.0,
        confirm_timeout_s: float = 5.0,
        publish_updates: bool = True,
    ) -> None:
        self._store = store
        self._verifiers: dict[Provider, list[CallbackVerifier]] = {}
        for verifier in verifiers:
            self._verifiers.setdefault(verifier.provider, []).append(verifier)
        self._routing_keys = dict(routing_keys or {})
        self.metrics = metrics
        self._clock = clock
        self._hook_timeout_s = hook_timeout_s
        self._confirm_timeout_s = confirm_timeout_s
        self._hooks: list[CallbackHook] = []
        self._channels: list[trio.MemorySendChannel[AppliedCallback]] = []
        self._updates = OrderUpdates(store.redis) if publish_updates else None

    @property
    def providers(self) -> frozenset[Provider]:
        return frozenset(self._verifiers)

    def add_hook(self, hook: CallbackHook) -> None:
        """Awaited after each applied event, before the provider's acknowledgement; bounded by
        ``hook_timeout_s`` so a slow order layer cannot push the reply past the provider's budget.
        The event is committed whatever the hook does."""
        self._hooks.append(hook)

    def add_channel(self, channel: trio.MemorySendChannel[AppliedCallback]) -> None:
        """Applied events are also offered to ``channel`` without waiting (dropped when full:
        the order layer re-reads the database anyway)."""
        self._channels.append(channel)

    def reject(
        self,
        provider: Provider,
        reason: str,
        message: str,
        *,
        remote: str | None = None,
        reply: HttpReply | None = None,
        result: str = "rejected",
    ) -> HttpReply:
        """Count and log a failure and build its reply (the provider's ``ack(False)`` unless
        ``reply`` is given). Used by the HTTP layer for bodies too large or too slow as well."""
        self.metrics.count_callback(provider.value, result, reason)
        log.warning(
            "callback.rejected",
            provider=provider.value,
            reason=reason,
            message=message,
            remote=remote,
            result=result,
        )
        if reply is not None:
            return reply
        verifiers = self._verifiers.get(provider)
        if not verifiers:
            return problem_reply(404, "Not Found", f"no {provider.value} channel is configured")
        return verifiers[0].ack(False, reason)

    async def handle(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        body: bytes,
        *,
        remote: str | None = None,
    ) -> HttpReply:
        """``headers`` with lower-case names, ``body`` exactly as received."""
        verifiers = self._verifiers.get(provider)
        if not verifiers:
            return self.reject(provider, "no_channel", "no channel configured", remote=remote)
        try:
            verifier, event = self._verify(provider, verifiers, headers, body)
            if isinstance(verifier, ConfirmsCallbacks):
                event = await self._confirm(verifier, event)
        except CallbackRejected as rejected:
            if rejected.alert:
                await self._alert(provider, rejected, remote)
            return self.reject(provider, rejected.reason, rejected.message, remote=remote)
        try:
            outcome = await record_callback(
                self._store.db, event, body=body, headers=headers, remote=remote
            )
        except CallbackRejected as rejected:
            return self.reject(provider, rejected.reason, rejected.message, remote=remote)
        except StoreError as exc:
            reason = "store_unavailable" if isinstance(exc, StoreUnavailable) else "store_error"
            return self.reject(provider, reason, str(exc), remote=remote, result="error")
        self.metrics.count_callback(
            provider.value, _RESULTS[outcome.disposition], outcome.disposition.value
        )
        log.info(
            "callback.recorded",
            provider=provider.value,
            channel=event.channel,
            event_id=event.event_id,
            disposition=outcome.disposition.value,
            attempt=outcome.attempt_id,
            state=outcome.state,
        )
        if outcome.disposition in (Disposition.APPLIED, Disposition.LATE_SUCCESS):
            await self._hand_over(AppliedCallback(event, outcome))
        return self._ack_for(provider, event.channel)

    def _ack_for(self, provider: Provider, channel: str) -> HttpReply:
        for verifier in self._verifiers[provider]:
            if verifier.channel_name == channel:
                return verifier.ack(True)
        return self._verifiers[provider][0].ack(True)

    def _candidates(
        self, provider: Provider, verifiers: Sequence[CallbackVerifier], body: bytes
    ) -> Sequence[CallbackVerifier]:
        field = ROUTING_FIELDS.get(provider)
        key = None if field is None else _form_field(body, field)
        if key is None:
            return verifiers
        matching = [v for v in verifiers if self._routing_keys.get(v.channel_name) == key]
        return matching or verifiers

    async def _confirm(self, verifier: ConfirmsCallbacks, event: CallbackEvent) -> CallbackEvent:
        """The provider's query must agree before a money-moving notify is recorded. Bounded well
        inside the provider's reply budget; a query that cannot answer in time rejects, and the
        provider's next delivery tries again."""
        with trio.move_on_after(self._confirm_timeout_s):
            try:
                return await verifier.confirm_callback(event)
            except CallbackRejected:
                raise
            except Exception as exc:
                log.exception("callback.confirm_failed", channel=event.channel)
                raise CallbackRejected("unconfirmed", type(exc).__name__) from exc
        raise CallbackRejected("unconfirmed", "the confirming query did not answer in time")

    def _verify(
        self,
        provider: Provider,
        verifiers: Sequence[CallbackVerifier],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[CallbackVerifier, CallbackEvent]:
        now = self._clock()
        misses: list[CallbackRejected] = []
        for verifier in self._candidates(provider, verifiers, body):
            try:
                return verifier, verifier.verify_callback(headers, body, now)
            except CallbackRejected as rejected:
                if rejected.reason not in _MISS_RANK:
                    raise
                misses.append(rejected)
            except Exception as exc:
                # A verifier bug must not take the server down; the provider retries.
                log.exception("callback.verifier_failed", channel=verifier.channel_name)
                raise CallbackRejected("verifier_error", type(exc).__name__) from exc
        return self._worst(misses)

    @staticmethod
    def _worst(misses: Sequence[CallbackRejected]) -> tuple[CallbackVerifier, CallbackEvent]:
        if not misses:
            raise CallbackRejected("no_channel", "no channel could verify the callback")
        worst = max(misses, key=lambda r: (r.alert, _MISS_RANK.get(r.reason, math.inf)))
        raise worst

    async def _alert(
        self, provider: Provider, rejected: CallbackRejected, remote: str | None
    ) -> None:
        try:
            await record_alert(
                self._store.db,
                "callback_rejected",
                severity="critical",
                subject=provider.value,
                details={"reason": rejected.reason, "message": rejected.message, "remote": remote},
            )
        except StoreError as exc:
            log.warning("callback.alert_not_written", reason=rejected.reason, error=str(exc))

    async def _hand_over(self, applied: AppliedCallback) -> None:
        for channel in self._channels:
            try:
                channel.send_nowait(applied)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("callback.channel_dropped", attempt=applied.outcome.attempt_id)
        for hook in self._hooks:
            with trio.move_on_after(self._hook_timeout_s) as scope:
                try:
                    await hook(applied)
                except Exception:
                    log.exception("callback.hook_failed", attempt=applied.outcome.attempt_id)
            if scope.cancelled_caught:
                log.warning("callback.hook_timeout", attempt=applied.outcome.attempt_id)
        order_id = applied.outcome.order_id
        if self._updates is not None and order_id is not None:
            try:
                await self._publish(applied, order_id)
            except StoreError as exc:
                # Committed already: the order re-reads the database; a lost notice costs latency.
                log.warning("callback.update_not_published", order=order_id, error=str(exc))

    async def _publish(self, applied: AppliedCallback, order_id: str) -> None:
        if self._updates is not None:
            await self._updates.publish(
                order_id,
                {
                    "type": "payment_callback",
                    "attempt": applied.outcome.attempt_id,
                    "state": applied.outcome.state,
                    "disposition": applied.outcome.disposition.value,
                    "refund_attempt": applied.outcome.refund_attempt_id,
                },
            )
