"""ChannelActor: the one piece of code that talks to a payment provider for one merchant account.

Theory of operation
-------------------
One actor per configured channel owns its :class:`~channels.interface.Channel` (and so its
HTTP client and keys). Provider calls are slow and may hang for a whole read timeout, so the
actor never awaits one in its own loop: each operation runs as a task in the actor's nursery,
at most ``max_in_flight`` at once, and the caller's reply is sent when it is done. Requests
beyond the limit wait in FIFO order; one whose caller gave up while waiting is dropped unsent
(the order already treats it as unknown and will query: sending it late could only create a
payment nobody waits for). Callers own their timeouts; the actor never cancels a request that
is on the wire, since its outcome must still be learned and counted.

Every result feeds :class:`~channels.health.ChannelHealth` through its tables: technical
failures (UNKNOWN, TECHNICAL_FAILURE) lower the technical score, declines only the approval
rate. A DOWN channel with no traffic is probed with a query for a key that does not exist, so
that its recovery is noticed. Certificates are refreshed on a schedule (at most once per
``certificate_refresh_s``, backing off on failure), never per request; operators may ask for
one more, rate-limited.

Disabling a channel makes it ineligible for new holds (the router reads ``eligible``); every
other operation still goes through, because the holds already made here must still be
captured, released or refunded here. The operator's switch and the health outlive a crash of
the actor (they live in a :class:`ChannelControl` its child spec keeps), so a restart neither
re-enables a disabled channel nor forgets that a provider is failing.

Messages and their replies are in :mod:`channels.actor_messages`.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final

import structlog
import trio

from actors import NOREPLY, Actor, ActorStopped, Backoff, Exit, Reply, Timer, UnhandledMessage
from channels.actor_messages import (
    AckCallback,
    Capture,
    CertificateRefresh,
    CertificateStatus,
    ChannelStatistics,
    Close,
    Disable,
    Enable,
    FetchBill,
    GetStatistics,
    Hold,
    Query,
    RecordApproval,
    RefreshCertificates,
    RefreshResult,
    Refund,
    RefundQuery,
    Release,
    VerifyCallback,
)
from channels.config import ChannelConfig
from channels.health import ChannelHealth, LatencyStats
from channels.interface import Channel
from channels.model import CallbackRejected, ChannelError, ChannelResult, Operation, Outcome
from ops.metrics import METRICS

__all__ = ["ChannelActor", "ChannelControl"]

log = structlog.get_logger(__name__)


# -- internal timer messages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RefreshDue:
    """Timer: the certificates are due for a refresh."""


@dataclass(frozen=True, slots=True)
class _ProbeDue:
    """Timer: a DOWN channel may need a probe."""


@dataclass(slots=True)
class ChannelControl:
    """What outlives one incarnation of a ChannelActor (kept by its child spec)."""

    enabled: bool = True
    disabled_reason: str | None = None
    health: ChannelHealth = field(default_factory=ChannelHealth)


# Message type -> (operation, how to perform it on the channel).
_Perform = Callable[[Channel, Any], Awaitable[Any]]
_OPERATIONS: Final[Mapping[type, tuple[Operation, _Perform]]] = {
    Hold: (Operation.HOLD, lambda ch, m: ch.hold(m.request)),
    Query: (Operation.QUERY, lambda ch, m: ch.query(m.key, m.provider_ref, sent_at=m.sent_at)),
    Capture: (Operation.CAPTURE, lambda ch, m: ch.capture(m.request)),
    Release: (Operation.RELEASE, lambda ch, m: ch.release(m.request)),
    Close: (Operation.CLOSE, lambda ch, m: ch.close(m.key, m.provider_ref, sent_at=m.sent_at)),
    Refund: (Operation.REFUND, lambda ch, m: ch.refund(m.request)),
    RefundQuery: (
        Operation.REFUND_QUERY,
        lambda ch, m: ch.refund_query(m.key, m.refund_key, sent_at=m.sent_at),
    ),
    FetchBill: (Operation.BILL, lambda ch, m: ch.bill(m.bill_date)),
}

# Operations a disabled channel refuses: only new business. Everything else settles what
# was already done here.
_NEW_BUSINESS: Final = frozenset({Operation.HOLD})

_TECHNICAL_FAILURES: Final = frozenset({Outcome.UNKNOWN, Outcome.TECHNICAL_FAILURE})

# Outcome -> the ``outcome`` label of fuelswitch_payment_attempts_total.
_METRIC_OUTCOME: Final[Mapping[Outcome, str]] = {
    Outcome.APPROVED: "success",
    Outcome.PENDING: "pending",  # accepted; the customer (or a callback) decides later
    Outcome.DECLINED: "declined",
    Outcome.UNKNOWN: "unknown",
    Outcome.TECHNICAL_FAILURE: "error",
}


def _key_of(msg: Any) -> str:
    if isinstance(msg, FetchBill):
        return msg.bill_date.isoformat()
    request = getattr(msg, "request", None)
    return str(request.key if request is not None else msg.key)


@dataclass(slots=True)
class _Job:
    operation: Operation
    label: str  # counts and latency bucket: the operation's name, or "probe"
    perform: _Perform
    msg: Any
    reply: Reply | None  # None for the actor's own probes
    queued_at: float


class ChannelActor(Actor):
    linked_tasks = True
    terminate_timeout: ClassVar[float] = 15.0

    def __init__(
        self,
        config: ChannelConfig,
        make_channel: Callable[[ChannelConfig], Channel],
        *,
        control: ChannelControl | None = None,
        max_waiting: int = 1024,
        refresh_backoff: Backoff | None = None,
        refresh_min_gap_s: float = 60.0,
        drain_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if config.max_in_flight < 1 or max_waiting < 0:
            raise ValueError("need max_in_flight >= 1 and max_waiting >= 0")
        if not 0 < config.certificate_refresh_s < math.inf:
            raise ValueError("certificate_refresh_s must be positive and finite")
        self.config = config
        self.make_channel = make_channel
        self.control = control if control is not None else ChannelControl()
        self.max_waiting = max_waiting
        interval = config.certificate_refresh_s
        self.refresh_backoff = refresh_backoff or Backoff(
            min_delay=min(30.0, interval), max_delay=interval, reset_after=0.0
        )
        self.refresh_min_gap_s = refresh_min_gap_s
        self.drain_timeout_s = drain_timeout_s
        self.rng = rng or random.Random()
        self.channel: Channel | None = None
        self.in_flight = 0
        self.waiting: deque[_Job] = deque()
        self.waited = 0
        self.peak_waiting = 0
        self.abandoned = 0
        self.late_replies = 0
        self.refused: dict[str, int] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.latency: dict[str, LatencyStats] = {}
        self.callbacks: dict[str, int] = {}
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.probes = 0
        self._stopping = False
        self._idle = trio.Event()
        self._probe_timer: Timer | None = None
        self._probe_in_flight = False
        self.certificates = CertificateStatus()
        self._refreshing = False
        self._refresh_waiters: list[Reply] = []
        self._refresh_timer: Timer | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def init(self) -> None:
        # A channel that cannot be built (missing keys, bad config) fails the start: that is a
        # configuration error for a person, not something a restart fixes.
        structlog.contextvars.bind_contextvars(channel=self.config.name)  # this task's logs
        self.channel = self.make_channel(self.config)
        self._schedule_refresh(0.0)
        self._arm_probe()

    async def terminate(self, reason: Exit) -> None:
        """Refuse what waits, let what is on the wire finish (its callers get real results
        and the health counts them), then close the client."""
        self._stopping = True
        self._fail_waiting("the channel actor stopped before sending this request")
        if self.in_flight:
            with trio.move_on_after(self.drain_timeout_s):
                await self._idle.wait()
        if self.channel is not None:
            await self.channel.aclose()

    def _after_exit(self) -> None:
        self._stopping = True
        self._fail_waiting("the channel actor exited before sending this request")
        waiters, self._refresh_waiters = self._refresh_waiters, []
        for waiter in waiters:
            waiter.fail(ActorStopped(self.address, "stopped while refreshing certificates"))

    def _fail_waiting(self, why: str) -> None:
        while self.waiting:
            job = self.waiting.popleft()
            if job.reply is not None:
                job.reply.fail(ActorStopped(self.address, why))

    @property
    def _channel(self) -> Channel:
        if self.channel is None:
            raise RuntimeError("the channel is not built yet")
        return self.channel

    # -- calls ------------------------------------------------------------------------------

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        entry = _OPERATIONS.get(type(msg))
        if entry is not None:
            operation, perform = entry
            job = _Job(operation, operation.value, perform, msg, reply, trio.current_time())
            self._submit(job)
            return NOREPLY
        if isinstance(msg, VerifyCallback):
            return self._verify_callback(msg, reply)
        if isinstance(msg, AckCallback):
            return self._channel.ack(msg.accepted, msg.message)
        if isinstance(msg, GetStatistics):
            return self.statistics()
        if isinstance(msg, RefreshCertificates):
            return self._refresh_requested(reply)
        if isinstance(msg, Enable):
            self._set_enabled(True, None)
            return None
        if isinstance(msg, Disable):
            self._set_enabled(False, msg.reason)
            return None
        raise UnhandledMessage("call", msg)

    async def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, RecordApproval):
            self.control.health.business(msg.approved, msg.reason, trio.current_time())
            return
        raise UnhandledMessage("cast", msg)

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, _RefreshDue):
            self._refresh_timer = None
            if not self._refreshing:
                self._start_refresh()
        elif isinstance(msg, _ProbeDue):
            self._probe_timer = None
            self._probe()
        else:
            await super().handle_info(msg)

    def _verify_callback(self, msg: VerifyCallback, reply: Reply) -> Any:
        try:
            event = self._channel.verify_callback(msg.headers, msg.body, msg.now)
        except CallbackRejected as exc:
            self._count(self.callbacks, exc.reason)
            reply.fail(exc)
            return NOREPLY
        except Exception as exc:  # a verifier bug must reject the callback, not crash us
            log.exception("channel.verifier_error", channel=self.config.name)
            self._count(self.callbacks, "verifier_error")
            reply.fail(CallbackRejected("verifier_error", f"{type(exc).__name__}: {exc}"))
            return NOREPLY
        self._count(self.callbacks, "verified")
        return event

    def _set_enabled(self, enabled: bool, reason: str | None) -> None:
        control = self.control
        if control.enabled != enabled:
            log.info(
                "channel.enabled" if enabled else "channel.disabled",
                channel=self.config.name,
                reason=reason,
            )
        control.enabled = enabled
        control.disabled_reason = reason

    # -- the concurrency limit --------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        if self._refused_as_disabled(job):
            return
        if self.in_flight < self.config.max_in_flight and not self.waiting:
            self._start(job)
        elif len(self.waiting) >= self.max_waiting:
            self._refuse(job, "overloaded", f"{len(self.waiting)} requests already waiting")
        else:
            self.waiting.append(job)
            self.waited += 1
            self.peak_waiting = max(self.peak_waiting, len(self.waiting))

    def _drain(self) -> None:
        """Start waiting jobs, oldest first, while there is room."""
        while self.waiting and self.in_flight < self.config.max_in_flight and not self._stopping:
            job = self.waiting.popleft()
            if job.reply is not None and job.reply.done:
                self.abandoned += 1
                continue
            self.latency.setdefault("wait", LatencyStats()).record(
                trio.current_time() - job.queued_at
            )
            self._start(job)

    def _refused_as_disabled(self, job: _Job) -> bool:
        if job.operation in _NEW_BUSINESS and not self.control.enabled:
            self._refuse(job, "channel_disabled", self.control.disabled_reason or "disabled")
            return True
        return False

    def _start(self, job: _Job) -> None:
        if self._refused_as_disabled(job):  # disabled while it waited
            return
        self.in_flight += 1
        self.start_soon(self._run, job)

    def _refuse(self, job: _Job, reason: str, message: str) -> None:
        """Answer without sending: TECHNICAL_FAILURE is confirmed not to have moved money, so
        the order may try another channel. Not a verdict on the provider: health is untouched."""
        self._count(self.refused, reason)
        if job.reply is None:
            self._probe_in_flight = False
            return
        if job.operation is Operation.BILL:
            job.reply.fail(ChannelError(reason, message, sent=False))
        else:
            result = ChannelResult(
                job.operation,
                Outcome.TECHNICAL_FAILURE,
                _key_of(job.msg),
                reason=reason,
                message=message,
            )
            job.reply.send(result)

    async def _run(self, job: _Job) -> None:
        started = trio.current_time()
        answered = False
        try:
            value, outcome, reason, error = await self._perform(job)
            now = trio.current_time()
            self.latency.setdefault(job.label, LatencyStats()).record(now - started)
            self._observe(job.operation, job.label, outcome, reason, now, error)
            METRICS.count_payment_attempt(self.config.name, job.label, _METRIC_OUTCOME[outcome])
            if job.reply is not None:
                if isinstance(value, Exception):
                    delivered = job.reply.fail(value)
                else:
                    delivered = job.reply.send(value)
                if not delivered:
                    self.late_replies += 1
            answered = True
        finally:
            self.in_flight -= 1
            if job.reply is None:
                self._probe_in_flight = False
            if not answered and job.reply is not None:
                # Cancelled with the actor, mid-call: nobody knows whether it reached the provider.
                job.reply.fail(ActorStopped(self.address, "stopped with the request in flight"))
            if not self.in_flight:
                self._idle.set()
                self._idle = trio.Event()
            self._drain()

    async def _perform(self, job: _Job) -> tuple[Any, Outcome, str | None, str | None]:
        """(reply value, outcome, reason, error text) of one operation."""
        key = _key_of(job.msg)
        try:
            value = await job.perform(self._channel, job.msg)
        except Exception as exc:
            error = self._boundary(exc, job.label, key)
        else:
            if isinstance(value, ChannelResult):
                detail = f"{value.reason}: {value.message}" if value.reason else value.message
                return value, value.outcome, value.reason, detail
            return value, Outcome.APPROVED, None, None  # a bill arrived
        outcome = Outcome.UNKNOWN if error.sent else Outcome.TECHNICAL_FAILURE
        text = f"{error.reason}: {error.message}"
        if job.operation is Operation.BILL:
            return error, outcome, error.reason, text
        result = ChannelResult(job.operation, outcome, key, reason=error.reason, message=text)
        return result, outcome, error.reason, text

    def _boundary(self, exc: Exception, label: str, key: str) -> ChannelError:
        """Exceptions are mapped here: a ChannelError says whether the request may have been
        sent; anything else is an adapter bug and, for a money-moving call, just as unknown."""
        if isinstance(exc, ChannelError):
            return exc
        log.error(
            "channel.adapter_error",
            channel=self.config.name,
            operation=label,
            key=key,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
        return ChannelError("adapter_error", f"{type(exc).__name__}: {exc}", sent=True)

    # -- bookkeeping ------------------------------------------------------------------------

    @staticmethod
    def _count(counter: dict[str, int], key: str) -> None:
        counter[key] = counter.get(key, 0) + 1

    def _observe(
        self,
        operation: Operation,
        label: str,
        outcome: Outcome,
        reason: str | None,
        now: float,
        error: str | None,
    ) -> None:
        self._count(self.counts.setdefault(label, {}), outcome.value)
        self.control.health.observe(operation, outcome, reason, now)
        if outcome in _TECHNICAL_FAILURES:
            self.last_error = f"{label}: {error or reason or outcome.value}"
            self.last_error_at = now
        self._arm_probe()

    # -- probes -----------------------------------------------------------------------------

    def _arm_probe(self) -> None:
        technical = self.control.health.technical
        if technical.excluded and self._probe_timer is None and not self._stopping:
            self._probe_timer = self.send_after(technical.policy.probe_interval_s, _ProbeDue())

    def _probe(self) -> None:
        """Query an order that cannot exist: any deliberate answer (found or not) means the
        provider works again; a timeout or 5xx means it does not. The probe carries a made-up
        provider reference too, because UnionPay can only query an order whose txnTime the
        adapter remembers or by its queryId: without one, the adapter would answer UNKNOWN
        without asking the provider at all."""
        technical = self.control.health.technical
        if self._probe_in_flight or not technical.probe_due(trio.current_time()):
            self._arm_probe()
            return
        self.probes += 1
        stamp = f"{int(time.time())}{self.probes % 1000:03d}"
        probe = Query(f"FSPROBE{stamp}", provider_ref=stamp.rjust(21, "0"))
        self._probe_in_flight = True
        self._submit(
            _Job(Operation.QUERY, "probe", _OPERATIONS[Query][1], probe, None, trio.current_time())
        )

    # -- certificates ------------------------------------------------------------------------

    def _schedule_refresh(self, delay: float) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        self.certificates = replace(self.certificates, next_at=trio.current_time() + delay)
        self._refresh_timer = self.send_after(delay, _RefreshDue())

    def _refresh_requested(self, reply: Reply) -> Any:
        """An operator's (or a rotation's) request: joins a refresh under way, and is refused
        within ``refresh_min_gap_s`` of the last attempt, so that no caller can turn it into a
        fetch per request."""
        if not self._refreshing:
            attempted = self.certificates.attempted_at
            if attempted is not None and trio.current_time() - attempted < self.refresh_min_gap_s:
                return CertificateRefresh(RefreshResult.THROTTLED, self.certificates)
            self._start_refresh()
        self._refresh_waiters.append(reply)
        return NOREPLY

    def _start_refresh(self) -> None:
        self._refreshing = True  # now, not when the task first runs: a request in between joins
        self.certificates = replace(self.certificates, attempted_at=trio.current_time())
        self.start_soon(self._refresh)

    async def _refresh(self) -> None:
        started = trio.current_time()
        try:
            count = await self._channel.refresh_certificates()
        except Exception as exc:  # retried later, with backoff
            error: ChannelError | None = self._boundary(exc, "certificates", "")
        else:
            error = None
        finally:
            self._refreshing = False
        now = trio.current_time()
        certs = self.certificates
        if error is None:
            self.certificates = replace(
                certs,
                count=count,
                refreshed_at=now,
                refreshes=certs.refreshes + 1,
                failures_in_row=0,
                last_error=None,
            )
            outcome, reason, result = Outcome.APPROVED, None, RefreshResult.REFRESHED
            delay = self.config.certificate_refresh_s
        else:
            self.certificates = replace(
                certs,
                failures=certs.failures + 1,
                failures_in_row=certs.failures_in_row + 1,
                last_error=f"{error.reason}: {error.message}",
            )
            outcome = Outcome.UNKNOWN if error.sent else Outcome.TECHNICAL_FAILURE
            reason, result = error.reason, RefreshResult.FAILED
            backoff = self.refresh_backoff.delay(certs.failures_in_row, self.rng)
            delay = min(backoff, self.config.certificate_refresh_s)
            log.warning(
                "channel.certificates_failed",
                channel=self.config.name,
                error=self.certificates.last_error,
                retry_in_s=round(delay, 1),
            )
        self.latency.setdefault("certificates", LatencyStats()).record(now - started)
        error_text = self.certificates.last_error
        self._observe(Operation.CERTIFICATES, "certificates", outcome, reason, now, error_text)
        if not self._stopping:
            self._schedule_refresh(delay)
        answer = CertificateRefresh(result, self.certificates)
        waiters, self._refresh_waiters = self._refresh_waiters, []
        for waiter in waiters:
            waiter.send(answer)

    # -- ops --------------------------------------------------------------------------------

    def statistics(self) -> ChannelStatistics:
        control, config = self.control, self.config
        health = control.health.snapshot(trio.current_time())
        return ChannelStatistics(
            channel=config.name,
            provider=config.provider,
            merchant_id=config.merchant_id,
            caps=self.channel.caps if self.channel is not None else None,
            enabled=control.enabled,
            disabled_reason=control.disabled_reason,
            eligible=control.enabled and not health.excluded,
            health=health,
            in_flight=self.in_flight,
            waiting=len(self.waiting),
            max_in_flight=config.max_in_flight,
            waited=self.waited,
            peak_waiting=self.peak_waiting,
            abandoned=self.abandoned,
            late_replies=self.late_replies,
            refused=dict(self.refused),
            counts={op: dict(by) for op, by in self.counts.items()},
            latency={op: stats.to_dict() for op, stats in self.latency.items()},
            callbacks=dict(self.callbacks),
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            certificates=self.certificates,
        )

    def snapshot(self) -> dict[str, Any]:
        return self.statistics().to_dict()
