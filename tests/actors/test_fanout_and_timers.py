"""Messaging beyond one call: cast/send order, request/gather/multi_call fan-out, timers."""

from __future__ import annotations

from typing import Any

import outcome
import pytest
import trio
import trio.testing

import actors
from actors import ActorCrashed, ActorNotFound, Address, CallTimeout, InvalidAddress, Timer
from tests.actors.support import Journal, actor_of
from tests.actors.support import ScriptedWorker as Worker
from tests.actors.support import scripted_worker as worker


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


# -- cast and send --------------------------------------------------------------------


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
