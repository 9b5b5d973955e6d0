"""Calls by address: replies, timeouts, late and deferred replies, crashes, stopped
actors, unknown and malformed addresses, and an actor calling itself."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import actors
from actors import (
    ActorCrashed,
    ActorError,
    ActorNotFound,
    ActorStopped,
    Address,
    CallTimeout,
    InvalidAddress,
    Reply,
    Restart,
)
from tests.actors.support import Journal, actor_of
from tests.actors.support import ScriptedWorker as Worker
from tests.actors.support import scripted_worker as worker


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
