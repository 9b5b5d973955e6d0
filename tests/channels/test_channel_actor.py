"""The ChannelActor's own logic against a test double Channel (no provider, no wire):
the concurrency limit and its FIFO queue, health and approval bookkeeping, the certificate
schedule on trio's MockClock, enable/disable, probes, and what operators see."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import actors
from actors import ActorCrashed, ActorStopped, Address, Backoff, CallTimeout, StartFailed
from channels.actor import ChannelActor, ChannelControl
from channels.actor_messages import (
    AckCallback,
    Capture,
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
from channels.health import HealthLevel
from channels.interface import Channel
from channels.model import (
    Bill,
    CallbackEvent,
    CallbackKind,
    CallbackRejected,
    CaptureRequest,
    ChannelCaps,
    ChannelError,
    ChannelResult,
    HoldKind,
    HoldRequest,
    HttpReply,
    Operation,
    Outcome,
    PaymentState,
    PaymentStatus,
    Provider,
    RefundRequest,
    ReleaseRequest,
)
from channels.supervision import channels_spec, start_channels

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOUR = 3600.0

Behaviour = Callable[[Operation, str], Awaitable[ChannelResult]]


class DoubleChannel:
    """A Channel whose answers a test scripts. ``gate``, when set, holds every provider call
    until it is set; ``behaviour`` decides the result (APPROVED by default)."""

    provider = Provider.WECHATPAY
    channel_name = "double"
    caps = ChannelCaps(HoldKind.PREPAY_CEILING)

    def __init__(self) -> None:
        self.calls: list[tuple[Operation, str]] = []
        self.active = 0
        self.max_active = 0
        self.gate: trio.Event | None = None
        self.behaviour: Behaviour | None = None
        self.refreshes: list[float] = []
        self.refresh_results: list[int | Exception] = []
        self.refresh_gate: trio.Event | None = None
        self.closed = False
        self.events: list[str] = []
        self.sent_at: dict[tuple[Operation, str], datetime | None] = {}

    async def _do(self, operation: Operation, key: str) -> ChannelResult:
        self.calls.append((operation, key))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.behaviour is not None:
                return await self.behaviour(operation, key)
            await trio.lowlevel.checkpoint()
            return ChannelResult(operation, Outcome.APPROVED, key)
        finally:
            self.active -= 1
            self.events.append(f"done {operation.value} {key}")

    async def hold(self, request: HoldRequest) -> ChannelResult:
        return await self._do(Operation.HOLD, request.key)

    async def query(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        self.sent_at[Operation.QUERY, key] = sent_at
        return await self._do(Operation.QUERY, key)

    async def capture(self, request: CaptureRequest) -> ChannelResult:
        return await self._do(Operation.CAPTURE, request.key)

    async def release(self, request: ReleaseRequest) -> ChannelResult:
        return await self._do(Operation.RELEASE, request.key)

    async def close(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        self.sent_at[Operation.CLOSE, key] = sent_at
        return await self._do(Operation.CLOSE, key)

    async def refund(self, request: RefundRequest) -> ChannelResult:
        return await self._do(Operation.REFUND, request.refund_key)

    async def refund_query(
        self, key: str, refund_key: str, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        self.sent_at[Operation.REFUND_QUERY, refund_key] = sent_at
        return await self._do(Operation.REFUND_QUERY, refund_key)

    async def bill(self, bill_date: date) -> Bill:
        result = await self._do(Operation.BILL, bill_date.isoformat())
        if result.outcome is not Outcome.APPROVED:
            raise ChannelError(result.reason or "bill", result.message, sent=True)
        return Bill(Provider.WECHATPAY, bill_date, (), None)

    async def refresh_certificates(self) -> int:
        self.refreshes.append(trio.current_time())
        if self.refresh_gate is not None:
            await self.refresh_gate.wait()
        await trio.lowlevel.checkpoint()
        result = self.refresh_results.pop(0) if self.refresh_results else 2
        if isinstance(result, Exception):
            raise result
        return result

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        if headers.get("wechatpay-signature") != "good":
            raise CallbackRejected("bad_signature", "signature does not verify")
        if body == b"crash":
            raise KeyError("resource")
        return CallbackEvent(
            Provider.WECHATPAY, "double", CallbackKind.PAYMENT, "EV-1", "SUCCESS", "K1", None, 100
        )

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        return HttpReply(204) if accepted else HttpReply(500, message.encode())

    async def aclose(self) -> None:
        self.events.append("aclose")
        self.closed = True


def config(name: str = "double", **changes: Any) -> ChannelConfig:
    fields: dict[str, Any] = {
        "name": name,
        "provider": Provider.WECHATPAY,
        "base_url": "http://127.0.0.1:9",
        "merchant_id": "1900000109",
        "app_id": "wx8888888888888888",
        "keys_dir": Path("/nonexistent"),
        "notify_url": "http://127.0.0.1:9/callbacks/wechatpay",
        "max_in_flight": 2,
        "certificate_refresh_s": HOUR,
    }
    fields.update(changes)
    return ChannelConfig(**fields)


def hold(key: str) -> Hold:
    return Hold(HoldRequest(key, 10000, "92#", "openid", "http://n", NOW))


def result_for(outcome_: Outcome, reason: str | None = None) -> Behaviour:
    async def behave(operation: Operation, key: str) -> ChannelResult:
        await trio.lowlevel.checkpoint()
        return ChannelResult(operation, outcome_, key, reason=reason)

    return behave


async def until(predicate: Callable[[], bool]) -> None:
    """Let the actor run until ``predicate`` holds (a bound on steps, never on time)."""
    for _ in range(1000):
        if predicate():
            return
        await trio.sleep(0.001)
    raise AssertionError("condition never became true")


class Harness:
    def __init__(self, system: actors.ActorSystem, channel: DoubleChannel, name: str) -> None:
        self.system = system
        self.channel = channel
        self.address = Address.parse(f"channels/{name}")

    async def call(self, msg: Any, timeout: float = 60.0) -> Any:
        return await self.system.call(self.address, msg, timeout=timeout)

    def stats(self) -> ChannelStatistics:
        cell = self.system.registry.resolve(self.address)
        actor = cell.actor
        assert isinstance(actor, ChannelActor)
        return actor.statistics()


@pytest.fixture
def channel() -> DoubleChannel:
    return DoubleChannel()


@asynccontextmanager
async def opened(
    channel: DoubleChannel, cfg: ChannelConfig | None = None, **options: Any
) -> AsyncIterator[Harness]:
    """A system with the channels subtree started, its one channel being ``channel``."""
    cfg = cfg or config()
    options.setdefault("refresh_backoff", Backoff(min_delay=30.0, max_delay=HOUR, jitter=0.0))

    def make(_: ChannelConfig) -> Channel:  # also has mypy check the double against Channel
        return channel

    async with actors.open_system() as system:
        await start_channels(system, [cfg], make_channel=make, **options)
        yield Harness(system, channel, cfg.name)


# -- the concurrency limit ----------------------------------------------------------------------


async def test_at_most_max_in_flight_and_the_rest_wait_in_fifo_order(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.gate = trio.Event()
    async with opened(channel) as h:
        replies = [h.system.request(h.address, hold(f"K{i}")) for i in range(6)]
        await until(lambda: channel.active == 2)
        stats = h.stats()
        assert (stats.in_flight, stats.waiting, stats.waited) == (2, 4, 4)
        # The mailbox is not blocked by provider calls: ops still get answers.
        assert (await h.call(GetStatistics())).waiting == 4
        channel.gate.set()
        results = await actors.gather(replies, timeout=60.0)
        assert [r.unwrap().key for r in results] == [f"K{i}" for i in range(6)]
        assert channel.max_active == 2
        stats = h.stats()
        assert (stats.in_flight, stats.waiting, stats.peak_waiting) == (0, 0, 4)
        assert stats.counts["hold"] == {"approved": 6}
        assert stats.latency["hold"]["count"] == 6
        assert stats.latency["wait"]["count"] == 4


async def test_waiting_requests_are_sent_in_arrival_order(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.gate = trio.Event()
    async with opened(channel, config(max_in_flight=1)) as h:
        keys = [f"K{i}" for i in range(8)]
        replies = [h.system.request(h.address, hold(key)) for key in keys]
        await until(lambda: channel.active == 1)
        channel.gate.set()
        await actors.gather(replies, timeout=60.0)
        assert [key for _, key in channel.calls] == keys


async def test_a_request_whose_caller_gave_up_while_waiting_is_never_sent(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.gate = trio.Event()
    async with opened(channel) as h:
        first = [h.system.request(h.address, hold(f"K{i}")) for i in range(2)]
        await until(lambda: channel.active == 2)
        with pytest.raises(CallTimeout):
            await h.call(hold("LATE"), timeout=5.0)
        channel.gate.set()
        await actors.gather(first, timeout=60.0)
        assert await h.call(Query("K0")) == ChannelResult(Operation.QUERY, Outcome.APPROVED, "K0")
        assert ("hold", "LATE") not in [(op.value, key) for op, key in channel.calls]
        assert h.stats().abandoned == 1


async def test_the_queue_is_bounded(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.gate = trio.Event()
    async with opened(channel, config(max_in_flight=1), max_waiting=1) as h:
        replies = [h.system.request(h.address, hold(f"K{i}")) for i in range(2)]
        refused = await h.call(hold("K2"))
        assert refused.outcome is Outcome.TECHNICAL_FAILURE
        assert refused.reason == "overloaded"
        with pytest.raises(ChannelError, match="overloaded") as info:
            await h.call(FetchBill(date(2026, 11, 20)))
        assert info.value.sent is False
        channel.gate.set()
        await actors.gather(replies, timeout=60.0)
        stats = h.stats()
        assert stats.refused == {"overloaded": 2}
        assert stats.health.technical_failures == 0  # our own refusal says nothing of WeChat


# -- every operation, and the boundary ----------------------------------------------------------


async def test_every_operation_reaches_the_channel(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    messages: list[Any] = [
        hold("H"),
        Query("Q"),
        Capture(CaptureRequest("C", "S1", 5000, 10000, NOW)),
        Release(ReleaseRequest("R", "R1", 5000, 10000, NOW)),
        Close("X"),
        Refund(RefundRequest("F", "F-R1", 100, 5000, "customer", NOW)),
        RefundQuery("F", "F-R1"),
    ]
    async with opened(channel) as h:
        for msg in messages:
            result = await h.call(msg)
            assert result.outcome is Outcome.APPROVED
        bill = await h.call(FetchBill(date(2026, 11, 20)))
        assert bill.bill_date == date(2026, 11, 20)
        ops = [op for op, _ in channel.calls]
        assert ops == [
            Operation.HOLD,
            Operation.QUERY,
            Operation.CAPTURE,
            Operation.RELEASE,
            Operation.CLOSE,
            Operation.REFUND,
            Operation.REFUND_QUERY,
            Operation.BILL,
        ]
        assert set(h.stats().counts) == {op.value for op in ops} | {"certificates"}


async def test_the_journaled_request_time_reaches_the_channel(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    """UnionPay needs the original request's time to query after a restart: the messages carry
    it through the actor unchanged (and without it, the channel is told None)."""
    hold_at, refund_at = NOW, NOW + timedelta(minutes=5)
    async with opened(channel) as h:
        await h.call(Query("Q", "REF", sent_at=hold_at))
        await h.call(Close("X", sent_at=hold_at))
        await h.call(RefundQuery("F", "F-R1", sent_at=refund_at))
        await h.call(Query("N"))
    assert channel.sent_at == {
        (Operation.QUERY, "Q"): hold_at,
        (Operation.CLOSE, "X"): hold_at,
        (Operation.REFUND_QUERY, "F-R1"): refund_at,
        (Operation.QUERY, "N"): None,
    }


async def test_exceptions_are_mapped_at_the_boundary(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    errors: dict[str, Exception] = {
        "SENT": ChannelError("timeout", "read timed out", sent=True),
        "NOTSENT": ChannelError("connect", "refused", sent=False),
        "BUG": KeyError("trade_state"),
    }

    async def behave(operation: Operation, key: str) -> ChannelResult:
        raise errors[key]

    channel.behaviour = behave
    async with opened(channel) as h:
        sent = await h.call(hold("SENT"))
        assert (sent.outcome, sent.reason) == (Outcome.UNKNOWN, "timeout")
        not_sent = await h.call(Capture(CaptureRequest("NOTSENT", "S", 1, 1, NOW)))
        assert (not_sent.outcome, not_sent.reason) == (Outcome.TECHNICAL_FAILURE, "connect")
        bug = await h.call(Refund(RefundRequest("P", "BUG", 1, 1, "r", NOW)))
        assert (bug.outcome, bug.reason) == (Outcome.UNKNOWN, "adapter_error")
        assert bug.operation is Operation.REFUND
        stats = h.stats()
        assert stats.health.technical_failures == 3
        assert stats.last_error is not None and stats.last_error.startswith("refund: adapter_error")
        assert await h.call(Query("Q")) is not None  # the actor is still there, same incarnation
        assert h.system.snapshot(h.address).incarnation == 1


async def test_a_failed_bill_fails_the_caller_with_a_channel_error(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.behaviour = result_for(Outcome.UNKNOWN, "SYSTEM_ERROR")
    async with opened(channel) as h:
        with pytest.raises(ChannelError, match="SYSTEM_ERROR"):
            await h.call(FetchBill(date(2026, 11, 20)))
        assert h.stats().counts["bill"] == {"unknown": 1}


# -- health and approval ------------------------------------------------------------------------


async def test_technical_failures_exclude_the_channel(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.behaviour = result_for(Outcome.UNKNOWN, "SYSTEM_ERROR")
    async with opened(channel) as h:
        for i in range(44):
            await h.call(Query(f"Q{i}"))
        stats = h.stats()
        assert stats.health.level is HealthLevel.FLUCTUATING
        assert stats.eligible
        await h.call(Query("Q44"))
        stats = h.stats()
        assert stats.health.level is HealthLevel.DOWN
        assert not stats.eligible
        assert stats.enabled
        assert stats.last_error == "query: SYSTEM_ERROR: "
        assert stats.counts["query"] == {"unknown": 45}


async def test_declines_move_approval_and_never_health(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.behaviour = result_for(Outcome.DECLINED, "NOTENOUGH")
    async with opened(channel) as h:
        for i in range(60):
            await h.call(hold(f"K{i}"))
        h.system.cast(h.address, RecordApproval(False, "PAYERROR"))
        stats = await h.call(GetStatistics())
        assert stats.health.level is HealthLevel.HEALTHY
        assert stats.health.technical_failures == 0
        assert stats.health.declines == 61
        assert stats.health.decline_reasons == {"NOTENOUGH": 60, "PAYERROR": 1}
        assert stats.health.approval_rate < 0.2
        assert stats.eligible


async def test_a_down_channel_is_probed_and_comes_back(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    failing = True

    async def behave(operation: Operation, key: str) -> ChannelResult:
        await trio.lowlevel.checkpoint()
        if failing:
            return ChannelResult(operation, Outcome.UNKNOWN, key, reason="timeout")
        status = PaymentStatus(PaymentState.NOT_FOUND)
        return ChannelResult(operation, Outcome.APPROVED, key, payment=status)

    channel.behaviour = behave
    async with opened(channel) as h:
        for i in range(45):
            await h.call(Query(f"Q{i}"))
        assert not h.stats().eligible
        await trio.sleep(95.0)  # probes every 30 s, all failing: still DOWN
        probes = [key for op, key in channel.calls if key.startswith("FSPROBE")]
        assert len(probes) == 3
        assert not h.stats().eligible
        failing = False
        await trio.sleep(90.0)
        stats = h.stats()
        # 0.9**48 + 2 rewards reaches recover_at: two answered probes bring it back, as
        # FLUCTUATING (routed to at a penalty), not HEALTHY; then probing stops.
        assert stats.counts["probe"] == {"unknown": 3, "approved": 2}
        assert stats.health.level is HealthLevel.FLUCTUATING
        assert stats.eligible
        await trio.sleep(300.0)  # no longer DOWN: no more probes
        assert stats.counts["probe"] == h.stats().counts["probe"]


# -- certificates -------------------------------------------------------------------------------


async def test_certificates_are_refreshed_on_schedule(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    async with opened(channel) as h:
        start = trio.current_time()
        await trio.sleep(3 * HOUR + 1.0)
        assert [t - start for t in channel.refreshes] == pytest.approx(
            [0.0, HOUR, 2 * HOUR, 3 * HOUR]
        )
        certs = h.stats().certificates
        assert (certs.count, certs.refreshes, certs.failures) == (2, 4, 0)
        assert certs.next_at == pytest.approx(start + 4 * HOUR)


async def test_a_failed_refresh_backs_off_and_never_exceeds_the_interval(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.refresh_results = [ChannelError("http_status", "503", sent=True)] * 3
    async with opened(channel) as h:
        start = trio.current_time()
        await trio.sleep(215.0)
        # 0 fails, +30 fails, +60 fails, +120 succeeds.
        assert [t - start for t in channel.refreshes] == pytest.approx([0.0, 30.0, 90.0, 210.0])
        certs = h.stats().certificates
        assert (certs.count, certs.failures, certs.failures_in_row) == (2, 3, 0)
        assert certs.next_at == pytest.approx(start + 210.0 + HOUR)
        assert h.stats().counts["certificates"] == {"unknown": 3, "approved": 1}


async def test_backoff_is_capped_by_the_interval(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.refresh_results = [RuntimeError("adapter bug")] * 20
    cfg = config(certificate_refresh_s=100.0)
    backoff = Backoff(min_delay=30.0, max_delay=100.0, jitter=0.0, factor=10.0)
    async with opened(channel, cfg, refresh_backoff=backoff) as h:
        start = trio.current_time()
        await trio.sleep(335.0)
        assert [t - start for t in channel.refreshes] == pytest.approx(
            [0.0, 30.0, 130.0, 230.0, 330.0]
        )
        assert h.stats().certificates.last_error == "adapter_error: RuntimeError: adapter bug"


async def test_an_operator_refresh_is_rate_limited_and_reschedules(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    async with opened(channel, refresh_min_gap_s=60.0) as h:
        start = trio.current_time()
        await trio.sleep(10.0)
        throttled = await h.call(RefreshCertificates())
        assert throttled.result is RefreshResult.THROTTLED
        assert len(channel.refreshes) == 1
        await trio.sleep(60.0)
        done = await h.call(RefreshCertificates())
        assert done.result is RefreshResult.REFRESHED
        assert done.status.refreshes == 2
        # The next scheduled one is an interval after this one, not after the first.
        assert done.status.next_at == pytest.approx(start + 70.0 + HOUR)
        await trio.sleep(HOUR - 60.0)
        assert len(channel.refreshes) == 2


async def test_concurrent_refresh_requests_share_one_fetch(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    async with opened(channel, refresh_min_gap_s=60.0) as h:
        await trio.sleep(61.0)
        channel.refresh_gate = trio.Event()
        replies = [h.system.request(h.address, RefreshCertificates()) for _ in range(3)]
        await until(lambda: len(channel.refreshes) == 2)
        channel.refresh_gate.set()
        results = await actors.gather(replies, timeout=60.0)
        assert {r.unwrap().result for r in results} == {RefreshResult.REFRESHED}
        assert len(channel.refreshes) == 2


# -- enable / disable ---------------------------------------------------------------------------


async def test_disabled_refuses_new_holds_and_settles_the_old_ones(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.gate = trio.Event()
    async with opened(channel, config(max_in_flight=1)) as h:
        in_flight = h.system.request(h.address, hold("INFLIGHT"))
        waiting = h.system.request(h.address, hold("WAITING"))
        await until(lambda: channel.active == 1)
        await h.call(Disable("provider maintenance"))
        stats = h.stats()
        assert (stats.enabled, stats.eligible, stats.disabled_reason) == (
            False,
            False,
            "provider maintenance",
        )
        refused = await h.call(hold("NEW"))
        assert (refused.outcome, refused.reason) == (Outcome.TECHNICAL_FAILURE, "channel_disabled")
        capture = h.system.request(h.address, Capture(CaptureRequest("OLD", "S", 1, 2, NOW)))
        channel.gate.set()
        # The hold on the wire finishes; the one still waiting is refused, unsent.
        assert (await in_flight.wait()).outcome is Outcome.APPROVED
        assert (await waiting.wait()).reason == "channel_disabled"
        assert (await capture.wait()).outcome is Outcome.APPROVED
        assert [key for _, key in channel.calls] == ["INFLIGHT", "OLD"]
        assert h.stats().refused == {"channel_disabled": 2}
        await h.call(Enable())
        assert (await h.call(hold("AGAIN"))).outcome is Outcome.APPROVED
        assert h.stats().eligible


async def test_a_restart_keeps_the_switch_and_the_health(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    channel.behaviour = result_for(Outcome.UNKNOWN, "timeout")
    control = ChannelControl()
    async with actors.open_system() as system:
        spec = channels_spec(
            [config()], make_channel=lambda _: channel, controls={"double": control}
        )
        await system.start_child(spec)
        for i in range(10):
            await system.call("channels/double", Query(f"Q{i}"))
        await system.call("channels/double", Disable())
        with pytest.raises(ActorCrashed):
            await system.call("channels/double", "not a message")
        await trio.sleep(2.0)  # the restart's backoff
        assert system.snapshot("channels/double").incarnation == 2
        stats = await system.call("channels/double", GetStatistics())
        assert not stats.enabled
        assert stats.health.technical_failures == 10
        assert stats.counts == {"certificates": {"approved": 1}}  # counters are per incarnation
        assert channel.closed  # the crashed incarnation closed its client


# -- callbacks ----------------------------------------------------------------------------------


async def test_callbacks_are_verified_by_the_owned_channel_and_counted(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    async with opened(channel) as h:
        good = await h.call(VerifyCallback({"wechatpay-signature": "good"}, b"{}", 0.0))
        assert good.event_id == "EV-1"
        with pytest.raises(CallbackRejected) as info:
            await h.call(VerifyCallback({}, b"{}", 0.0))
        assert info.value.reason == "bad_signature"
        with pytest.raises(CallbackRejected) as info:
            await h.call(VerifyCallback({"wechatpay-signature": "good"}, b"crash", 0.0))
        assert info.value.reason == "verifier_error"
        assert await h.call(AckCallback(True)) == HttpReply(204)
        assert h.stats().callbacks == {"verified": 1, "bad_signature": 1, "verifier_error": 1}


# -- stopping and operators ---------------------------------------------------------------------


async def test_stopping_lets_in_flight_calls_finish_and_refuses_the_waiting(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    async def slow(operation: Operation, key: str) -> ChannelResult:
        await trio.sleep(5.0)
        return ChannelResult(operation, Outcome.APPROVED, key)

    channel.behaviour = slow
    async with opened(channel, config(max_in_flight=1)) as h:
        on_wire = h.system.request(h.address, hold("ONWIRE"))
        queued = h.system.request(h.address, hold("QUEUED"))
        await until(lambda: channel.active == 1)
    done = on_wire.peek()
    assert isinstance(done, outcome.Value)
    assert done.unwrap().outcome is Outcome.APPROVED
    error = queued.peek()
    assert isinstance(error, outcome.Error)
    assert isinstance(error.error, ActorStopped)
    assert channel.events == ["done hold ONWIRE", "aclose"]


async def test_snapshot_is_plain_data(
    autojump_clock: trio.testing.MockClock, channel: DoubleChannel
) -> None:
    async with opened(channel) as h:
        await h.call(hold("K"))
        state = h.system.snapshot(h.address).state
        json.dumps(state)
        assert state["channel"] == "double"
        assert state["provider"] == "wechatpay"
        assert state["hold_kind"] == "prepay_ceiling"
        assert state["health"]["level"] == "healthy"
        assert state["counts"]["hold"] == {"approved": 1}
        assert state["certificates"]["count"] == 2
        assert state["in_flight"] == 0


# -- supervision ----------------------------------------------------------------------------------


def test_channel_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique: a"):
        channels_spec([config("a"), config("a"), config("b")])


def test_refresh_interval_must_be_finite() -> None:
    with pytest.raises(ValueError):
        ChannelActor(config(certificate_refresh_s=float("inf")), lambda _: DoubleChannel())


async def test_a_channel_that_cannot_be_built_fails_the_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def broken(cfg: ChannelConfig) -> DoubleChannel:
        raise FileNotFoundError(cfg.keys_dir / "apiclient_key.pem")

    async with actors.open_system() as system:
        with pytest.raises(StartFailed):
            await start_channels(system, [config()], make_channel=broken)


async def test_several_merchants_per_provider(
    autojump_clock: trio.testing.MockClock,
) -> None:
    doubles = {"wx-a": DoubleChannel(), "wx-b": DoubleChannel()}
    configs = [config("wx-a", merchant_id="1"), config("wx-b", merchant_id="2")]
    async with actors.open_system() as system:
        address = await start_channels(system, configs, make_channel=lambda c: doubles[c.name])
        assert str(address) == "channels"
        await system.call("channels/wx-b", hold("B1"))
        assert doubles["wx-a"].calls == []
        assert doubles["wx-b"].calls == [(Operation.HOLD, "B1")]
        page = system.tree_page("channels")
        assert [c.state["merchant_id"] for c in page.children] == ["1", "2"]
