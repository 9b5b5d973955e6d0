"""Messaging by address: call, cast, send, deferred replies, crashes, fan-out and timers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import pytest
import trio
import trio.testing

import actors
from actors import (
    NOREPLY,
    Actor,
    ActorCrashed,
    ActorError,
    ActorNotFound,
    ActorStopped,
    ActorSystem,
    Address,
    CallingSelf,
    CallTimeout,
    ChildSpec,
    InvalidAddress,
    Reply,
    Restart,
    Timer,
)

Journal = list[tuple[int, str, Any]]
"""(incarnation, hook, message): shared by every incarnation of one address."""


class Worker(Actor):
    """A scriptable actor: the message says what to do; every hook call is journaled."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal: Journal = journal if journal is not None else []
        self.casts: list[Any] = []
        self.infos: list[tuple[Any, float]] = []
        self.pending: Reply | None = None
        self.send_results: list[bool] = []

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        self.journal.append((self.incarnation, "call", msg))
        match msg:
            case "ping":
                return "pong"
            case ("echo", value):
                return value
            case ("sleep", delay, value):
                await trio.sleep(delay)
                return value
            case "crash":
                raise ValueError("boom")
            case "reply_then_crash":
                reply.send("early answer")
                raise ValueError("boom after replying")
            case ("defer", delay):
                self.pending = reply
                self.send_after(delay, "answer")
                return NOREPLY
            case ("defer_fail", delay):
                self.pending = reply
                self.send_after(delay, "fail_answer")
                return NOREPLY
            case "call_self":
                try:
                    await self.call(self.address, "ping")
                except CallingSelf as exc:
                    return ("caught", exc.address)
                return "no error"
            case "request_self":
                try:
                    self.system.request(self.address, "ping")
                except CallingSelf as exc:
                    return ("caught", exc.address)
                return "no error"
            case ("arm", delay, tag):
                return self.send_after(delay, tag)
            case "incarnation":
                return self.incarnation
        return await super().handle_call(msg, reply)

    async def handle_cast(self, msg: Any) -> None:
        self.journal.append((self.incarnation, "cast", msg))
        match msg:
            case "crash":
                raise ValueError("cast boom")
            case ("arm_and_crash", delay, tag):
                self.send_after(delay, tag)
                raise ValueError("crash with a timer pending")
            case ("arm_sleep_crash", delay, tag, busy):
                self.send_after(delay, tag)
                await trio.sleep(busy)  # the timer fires while this handler still runs
                raise ValueError("crash after the timer fired")
            case ("arm", delay, tag):
                self.send_after(delay, tag)
            case ("sleep", delay):
                await trio.sleep(delay)
        self.casts.append(msg)

    async def handle_info(self, msg: Any) -> None:
        self.journal.append((self.incarnation, "info", msg))
        self.infos.append((msg, trio.current_time()))
        if msg == "answer":
            assert self.pending is not None
            self.send_results.append(self.pending.send(42))
        elif msg == "fail_answer":
            assert self.pending is not None
            self.send_results.append(self.pending.fail(KeyError("deferred failure")))


A = TypeVar("A", bound=Actor)


def worker(
    name: str,
    journal: Journal | None = None,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
) -> ChildSpec:
    def factory() -> Worker:
        return Worker(journal)

    return ChildSpec(name, factory, restart=restart, shutdown=shutdown)


def actor_of(system: ActorSystem, address: str, cls: type[A]) -> A:
    actor = system.registry.resolve(address).actor
    assert isinstance(actor, cls)
    return actor


async def capture_into(
    results: dict[str, outcome.Outcome[Any]], key: str, fn: Callable[[], Awaitable[Any]]
) -> None:
    """Record ``fn``'s value or exception (a cancellation propagates and records nothing)."""
    result: outcome.Outcome[Any]
    try:
        result = outcome.Value(await fn())
    except Exception as exc:
        result = outcome.Error(exc)
    results[key] = result


def summary(results: list[outcome.Outcome[Any]]) -> list[tuple[str, Any]]:
    """Outcomes as comparable pairs: ("value", v) or ("error", exception type name)."""
    pairs: list[tuple[str, Any]] = []
    for r in results:
        if isinstance(r, outcome.Value):
            pairs.append(("value", r.value))
        else:
            assert isinstance(r, outcome.Error)
            pairs.append(("error", type(r.error).__name__))
    return pairs


# -- call ---------------------------------------------------------------------------


async def test_call_round_trip(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([worker("w")]) as system:
        assert await system.call("w", "ping") == "pong"
        assert await system.call(Address.parse("w"), ("echo", {"k": [1, 2]})) == {"k": [1, 2]}
        assert await system.call("w", ("echo", None)) is None
        assert actor_of(system, "w", Worker).journal == [
            (1, "call", "ping"),
            (1, "call", ("echo", {"k": [1, 2]})),
            (1, "call", ("echo", None)),
        ]
        assert system.snapshot("w").mailbox.processed == 3


@pytest.mark.parametrize("timeout", [0.25, 1.0, 7.5])
async def test_call_timeout_raises_after_exactly_timeout(
    autojump_clock: trio.testing.MockClock, timeout: float
) -> None:
    async with actors.open_system([worker("w")]) as system:
        start = trio.current_time()
        with pytest.raises(CallTimeout) as info:
            await system.call("w", ("sleep", 100.0, "never in time"), timeout=timeout)
        assert trio.current_time() - start == pytest.approx(timeout, abs=1e-9)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, ActorError)
        assert info.value.timeout == timeout
        assert info.value.address == "w"


async def test_late_reply_is_dropped_and_actor_keeps_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    async with actors.open_system([worker("w", journal)]) as system:
        start = trio.current_time()
        with pytest.raises(CallTimeout):
            await system.call("w", ("sleep", 2.0, "late"), timeout=1.0)
        assert trio.current_time() - start == pytest.approx(1.0, abs=1e-9)
        assert system.snapshot("w").late_replies == 0  # still handling it

        # Queued behind the slow message: answered once it finishes, at t=2.
        assert await system.call("w", "ping", timeout=5.0) == "pong"
        assert trio.current_time() - start == pytest.approx(2.0, abs=1e-9)
        assert await system.call("w", ("echo", "next")) == "next"

        snap = system.snapshot("w")
        assert snap.late_replies == 1
        assert snap.incarnation == 1
        assert snap.restarts == 0
        assert snap.last_exit is None
        assert snap.status == "running"
        assert journal == [
            (1, "call", ("sleep", 2.0, "late")),
            (1, "call", "ping"),
            (1, "call", ("echo", "next")),
        ]


async def test_deferred_reply_with_noreply(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([worker("w")]) as system:
        start = trio.current_time()
        assert await system.call("w", ("defer", 1.5), timeout=5.0) == 42
        assert trio.current_time() - start == pytest.approx(1.5, abs=1e-9)
        w = actor_of(system, "w", Worker)
        assert w.send_results == [True]
        assert w.pending is not None
        assert w.pending.done
        assert not w.pending.abandoned
        # A second reply on the same slot is a duplicate: dropped, not raised.
        assert w.pending.send(43) is False
        assert system.snapshot("w").late_replies == 0


async def test_deferred_reply_fail_raises_in_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("w")]) as system:
        with pytest.raises(KeyError, match="deferred failure"):
            await system.call("w", ("defer_fail", 1.0), timeout=5.0)
        # Failing a reply is not a crash of the replying actor.
        snap = system.snapshot("w")
        assert snap.incarnation == 1
        assert snap.restarts == 0
        assert await system.call("w", "ping") == "pong"


async def test_deferred_reply_after_caller_gave_up_returns_false(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("w")]) as system:
        with pytest.raises(CallTimeout):
            await system.call("w", ("defer", 3.0), timeout=1.0)
        w = actor_of(system, "w", Worker)
        assert w.pending is not None
        assert w.pending.abandoned
        await trio.sleep(5.0)  # the deferred answer fires at t=3 and finds nobody waiting
        assert w.send_results == [False]
        assert [m for m, _ in w.infos] == ["answer"]
        # The actor did not crash and keeps answering.
        assert await system.call("w", "ping") == "pong"
        snap = system.snapshot("w")
        assert snap.incarnation == 1
        assert snap.restarts == 0
        assert snap.last_exit is None


def is_done(reply: Reply) -> bool:
    return reply.done  # read through a call so mypy does not pin the property's value


async def test_reply_slot_is_one_shot() -> None:
    reply = Reply("target")
    assert not is_done(reply)
    assert reply.send("first") is True
    assert is_done(reply)
    assert reply.send("second") is False
    assert reply.fail(RuntimeError("third")) is False
    assert await reply.wait() == "first"

    gave_up = Reply("target")
    gave_up.abandon()
    assert gave_up.abandoned
    assert gave_up.done
    assert gave_up.send("late") is False
    assert gave_up.fail(RuntimeError("late")) is False


# -- crashes --------------------------------------------------------------------------


async def test_crash_fails_the_caller_with_actor_crashed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("w")]) as system:
        with pytest.raises(ActorCrashed) as info:
            await system.call("w", "crash")
        assert isinstance(info.value.cause, ValueError)
        assert str(info.value.cause) == "boom"
        assert info.value.__cause__ is info.value.cause
        assert info.value.address == "w"
        # Restarted: the next call is answered by incarnation 2.
        assert await system.call("w", "incarnation") == 2
        snap = system.snapshot("w")
        assert snap.restarts == 1
        assert snap.last_exit is not None
        assert "ValueError" in snap.last_exit


async def test_crash_after_replying_keeps_the_answer_and_is_not_a_late_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("w")]) as system:
        assert await system.call("w", "reply_then_crash") == "early answer"
        assert await system.call("w", "incarnation") == 2  # the crash still restarted it
        snap = system.snapshot("w")
        assert snap.restarts == 1
        assert snap.last_exit is not None
        assert "boom after replying" in snap.last_exit
        assert snap.late_replies == 0  # the caller had its answer in time


async def test_crashing_message_is_dropped_and_queued_messages_survive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    async with actors.open_system([worker("w", journal)]) as system:
        busy = system.request("w", ("sleep", 1.0, "busy"))  # taken at once; the rest queue
        crash = system.request("w", "crash")
        after1 = system.request("w", ("echo", "after1"))
        system.cast("w", "cast-after")
        after2 = system.request("w", ("echo", "after2"))
        assert system.snapshot("w").mailbox.queued == 4

        with trio.fail_after(10):
            assert await busy.wait() == "busy"
            with pytest.raises(ActorCrashed) as info:
                await crash.wait()
            assert isinstance(info.value.cause, ValueError)
            assert await after1.wait() == "after1"
            assert await after2.wait() == "after2"

        assert journal == [
            (1, "call", ("sleep", 1.0, "busy")),
            (1, "call", "crash"),
            # The crashing message is not redelivered to incarnation 2.
            (2, "call", ("echo", "after1")),
            (2, "cast", "cast-after"),
            (2, "call", ("echo", "after2")),
        ]
        snap = system.snapshot("w")
        assert snap.incarnation == 2
        assert snap.restarts == 1
        assert snap.mailbox.queued == 0


async def test_cast_that_crashes_restarts_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    async with actors.open_system([worker("w", journal)]) as system:
        cell = system.registry.resolve("w")
        system.cast("w", "crash")
        system.cast("w", "queued-behind")
        assert await system.call("w", "incarnation") == 2
        assert journal == [
            (1, "cast", "crash"),
            (2, "cast", "queued-behind"),
            (2, "call", "incarnation"),
        ]
        assert cell.restarts == 1
        assert cell.last_exit is not None
        assert cell.last_exit.error is not None
        assert str(cell.last_exit.error) == "cast boom"


async def test_calls_queued_behind_a_stopped_actor_fail_with_actor_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = worker("tmp", restart=Restart.TEMPORARY, shutdown=30.0)
    async with actors.open_system([spec]) as system:
        results: dict[str, outcome.Outcome[Any]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                capture_into,
                results,
                "slow",
                functools.partial(system.call, "tmp", ("sleep", 10.0, "slow done"), timeout=100),
            )
            await trio.sleep(0.1)
            for key in ("q1", "q2"):
                nursery.start_soon(
                    capture_into,
                    results,
                    key,
                    functools.partial(system.call, "tmp", ("echo", key), timeout=100),
                )
            await trio.sleep(0.1)
            assert system.snapshot("tmp").mailbox.queued == 2
            await system.terminate_child(actors.ROOT, "tmp")

        # The message being handled finishes within the grace; the queued ones never run.
        assert results["slow"].unwrap() == "slow done"
        for key in ("q1", "q2"):
            with pytest.raises(ActorStopped) as info:
                results[key].unwrap()
            assert info.value.address == "tmp"
        assert "tmp" not in system.registry
        with pytest.raises(ActorNotFound):
            await system.call("tmp", "ping")


async def test_call_being_handled_when_the_grace_runs_out_fails_with_actor_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = worker("tmp", restart=Restart.TEMPORARY, shutdown=1.0)
    async with actors.open_system([spec]) as system:
        results: dict[str, outcome.Outcome[Any]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                capture_into,
                results,
                "slow",
                functools.partial(system.call, "tmp", ("sleep", 10.0, "never"), timeout=100),
            )
            await trio.sleep(0.5)
            nursery.start_soon(
                capture_into,
                results,
                "queued",
                functools.partial(system.call, "tmp", ("echo", "queued"), timeout=100),
            )
            await trio.sleep(0.5)
            start = trio.current_time()
            await system.terminate_child(actors.ROOT, "tmp")
            assert trio.current_time() - start == pytest.approx(1.0, abs=1e-9)  # the grace
        with pytest.raises(ActorStopped, match="killed while handling"):
            results["slow"].unwrap()
        with pytest.raises(ActorStopped):
            results["queued"].unwrap()
        assert "tmp" not in system.registry


async def test_calls_queued_behind_a_crashing_temporary_child_fail_with_actor_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    async with actors.open_system([worker("tmp", journal, restart=Restart.TEMPORARY)]) as system:
        busy = system.request("tmp", ("sleep", 1.0, "busy"))
        crash = system.request("tmp", "crash")
        behind = system.request("tmp", ("echo", "behind"))
        with trio.fail_after(10):
            assert await busy.wait() == "busy"
            with pytest.raises(ActorCrashed):
                await crash.wait()
            with pytest.raises(ActorStopped):
                await behind.wait()  # a temporary child is not restarted: its mail is failed
        assert [msg for _, _, msg in journal] == [("sleep", 1.0, "busy"), "crash"]
        assert "tmp" not in system.registry


async def test_unknown_address_raises_actor_not_found(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("w")]) as system:
        with pytest.raises(ActorNotFound) as info:
            await system.call("nobody", "ping")
        assert isinstance(info.value, LookupError)
        assert info.value.address == "nobody"
        with pytest.raises(ActorNotFound):
            await system.call("w/child", "ping")
        with pytest.raises(ActorNotFound):
            system.cast("nobody", "hello")
        with pytest.raises(ActorNotFound):
            await system.send("nobody", "hello")
        with pytest.raises(ActorNotFound):
            system.request(Address.parse("no/body"), "ping")
        with pytest.raises(LookupError):
            system.snapshot("nobody")


@pytest.mark.parametrize("bad", ["a//b", "/a", "a/", "//", "a b", "a/_b"])
async def test_malformed_address_raises_invalid_address(
    autojump_clock: trio.testing.MockClock, bad: str
) -> None:
    async with actors.open_system([worker("w")]) as system:
        with pytest.raises(InvalidAddress) as info:
            await system.call(bad, "ping")
        assert isinstance(info.value, ValueError)
        assert not isinstance(info.value, ActorNotFound)
        with pytest.raises(InvalidAddress):
            system.cast(bad, "hello")
        with pytest.raises(InvalidAddress):
            system.request(bad, "ping")


async def test_calling_self_raises_calling_self(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([worker("w")]) as system:
        start = trio.current_time()
        assert await system.call("w", "call_self") == ("caught", "w")
        assert await system.call("w", "request_self") == ("caught", "w")
        assert trio.current_time() == start  # raised at once instead of deadlocking
        assert system.snapshot("w").restarts == 0


async def test_cast_and_send_are_handled_in_order(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([worker("w")]) as system:
        system.cast("w", "c1")
        await system.send("w", "s2")
        system.cast("w", "c3")
        await system.send(Address.parse("w"), "s4")
        assert await system.call("w", "ping") == "pong"  # after everything queued before it
        assert actor_of(system, "w", Worker).casts == ["c1", "s2", "c3", "s4"]


# -- fan-out --------------------------------------------------------------------------


async def test_request_and_gather_returns_values_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = ["a", "b", "c"]
    async with actors.open_system([worker(n) for n in names]) as system:
        start = trio.current_time()
        replies = [
            system.request("a", ("sleep", 3.0, "A")),
            system.request("b", ("sleep", 1.0, "B")),
            system.request("c", ("sleep", 2.0, "C")),
        ]
        results = await actors.gather(replies, timeout=5.0)
        # Concurrent: the slowest decides, not the sum.
        assert trio.current_time() - start == pytest.approx(3.0, abs=1e-9)
        assert all(isinstance(r, outcome.Value) for r in results)
        assert [r.unwrap() for r in results] == ["A", "B", "C"]


async def test_gather_slow_actor_times_out_while_others_arrive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker(n) for n in ("a", "b", "slow")]) as system:
        start = trio.current_time()
        replies = [
            system.request("a", ("echo", "A")),
            system.request("b", ("sleep", 1.0, "B")),
            system.request("slow", ("sleep", 60.0, "too late")),
        ]
        results = await actors.gather(replies, timeout=2.0)
        assert trio.current_time() - start == pytest.approx(2.0, abs=1e-9)
        assert summary(results) == [("value", "A"), ("value", "B"), ("error", "CallTimeout")]
        assert isinstance(results[2], outcome.Error)
        error = results[2].error
        assert isinstance(error, CallTimeout)
        assert error.address == "slow"
        assert error.timeout == 2.0


async def test_gather_keeps_replies_that_arrived_behind_a_slow_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker(n) for n in ("a", "slow", "c")]) as system:
        replies = [
            system.request("a", ("echo", "A")),
            system.request("slow", ("sleep", 60.0, "too late")),
            system.request("c", ("sleep", 1.0, "C")),  # arrives at t=1, well within the deadline
        ]
        results = await actors.gather(replies, timeout=2.0)
        assert summary(results) == [("value", "A"), ("error", "CallTimeout"), ("value", "C")]


async def test_gather_abandons_replies_it_gave_up_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("slow")]) as system:
        reply = system.request("slow", ("sleep", 5.0, "too late"))
        results = await actors.gather([reply], timeout=1.0)
        assert reply.abandoned
        assert await system.call("slow", "ping", timeout=10.0) == "pong"
        # The slow actor's answer arrived after gather gave up: a late reply, dropped.
        assert system.snapshot("slow").late_replies == 1
        assert summary(results) == [("error", "CallTimeout")]


async def test_gather_is_cancelled_by_an_outer_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("slow")]) as system:
        reply = system.request("slow", ("sleep", 60.0, "too late"))
        returned: list[outcome.Outcome[Any]] | None = None
        with trio.move_on_after(1.0) as scope:
            returned = await actors.gather([reply], timeout=30.0)
        # The caller's cancellation propagates out of gather (trio's rule); it is not
        # swallowed and turned into an outcome.
        assert scope.cancelled_caught
        assert returned is None


async def test_gather_reports_a_crash_as_an_error_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("a"), worker("b")]) as system:
        results = await actors.gather(
            [system.request("a", "crash"), system.request("b", ("echo", "B"))], timeout=5.0
        )
        assert isinstance(results[0], outcome.Error)
        assert isinstance(results[0].error, ActorCrashed)
        assert isinstance(results[0].error.cause, ValueError)
        assert results[1] == outcome.Value("B")


async def test_multi_call_unknown_address_fails_only_its_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("a"), worker("b")]) as system:
        results = await system.multi_call(
            [("a", ("echo", 1)), ("ghost", ("echo", 2)), ("b", ("echo", 3)), ("x//y", "ping")],
            timeout=5.0,
        )
        assert len(results) == 4
        assert results[0] == outcome.Value(1)
        assert isinstance(results[1], outcome.Error)
        assert isinstance(results[1].error, ActorNotFound)
        assert results[1].error.address == "ghost"
        assert results[2] == outcome.Value(3)
        assert isinstance(results[3], outcome.Error)
        assert isinstance(results[3].error, InvalidAddress)


# -- timers ---------------------------------------------------------------------------


async def test_send_after_delivers_to_handle_info_after_the_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([worker("w")]) as system:
        start = trio.current_time()
        timer = await system.call("w", ("arm", 2.5, "tick"))
        assert isinstance(timer, Timer)
        assert timer.active
        w = actor_of(system, "w", Worker)
        await trio.sleep(2.4)
        assert w.infos == []
        await trio.sleep(0.2)
        assert len(w.infos) == 1
        msg, at = w.infos[0]
        assert msg == "tick"
        assert at - start == pytest.approx(2.5, abs=1e-9)
        assert timer.fired
        assert not timer.active


async def test_timers_fire_in_deadline_order(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([worker("w")]) as system:
        await system.call("w", ("arm", 3.0, "third"))
        await system.call("w", ("arm", 1.0, "first"))
        await system.call("w", ("arm", 2.0, "second"))
        await trio.sleep(4.0)
        w = actor_of(system, "w", Worker)
        assert [m for m, _ in w.infos] == ["first", "second", "third"]
        assert [t for _, t in w.infos] == pytest.approx([1.0, 2.0, 3.0], abs=1e-9)


async def test_cancelled_timer_does_not_fire(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([worker("w")]) as system:
        cancelled = await system.call("w", ("arm", 1.0, "cancelled"))
        kept = await system.call("w", ("arm", 2.0, "kept"))
        assert isinstance(cancelled, Timer)
        assert isinstance(kept, Timer)
        cancelled.cancel()
        cancelled.cancel()  # idempotent
        assert not cancelled.active
        await trio.sleep(5.0)
        w = actor_of(system, "w", Worker)
        assert [m for m, _ in w.infos] == ["kept"]
        assert not cancelled.fired
        assert kept.fired


async def test_timer_of_a_crashed_incarnation_is_not_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    async with actors.open_system([worker("w", journal)]) as system:
        system.cast("w", ("arm_and_crash", 1.0, "stale"))
        assert await system.call("w", "incarnation") == 2
        system.cast("w", ("arm", 2.0, "fresh"))  # control: incarnation 2's own timer fires
        await trio.sleep(5.0)
        infos = [(inc, msg) for inc, hook, msg in journal if hook == "info"]
        assert infos == [(2, "fresh")]
        assert system.snapshot("w").incarnation == 2


async def test_timer_that_fired_while_its_incarnation_was_busy_dies_with_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    async with actors.open_system([worker("w", journal)]) as system:
        # The timer fires at t=1 while the handler is still busy; the handler crashes at t=2.
        system.cast("w", ("arm_sleep_crash", 1.0, "stale", 2.0))
        await trio.sleep(1.5)
        assert system.snapshot("w").incarnation == 1
        await trio.sleep(1.5)
        assert await system.call("w", "incarnation") == 2
        system.cast("w", ("arm", 1.0, "fresh"))
        await trio.sleep(5.0)
        infos = [(inc, msg) for inc, hook, msg in journal if hook == "info"]
        assert infos == [(2, "fresh")]
