"""Supervisor lifecycle: start order and start failures, shutdown and its grace, operator
terminate/restart, restart backoff, and queued messages surviving a restart.

Every test runs on pytest-trio's ``autojump_clock``: time only moves when every task is
idle, so grace periods, intensity windows and backoff delays are checked to the exact
(mock) second without the suite ever waiting on a real clock. Helper actors and specs
are in ``support.py``; the ``log`` fixture is in ``conftest.py``.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import actors
from actors import (
    ROOT,
    ActorNotFound,
    ActorStopped,
    AlreadyRegistered,
    Backoff,
    CallTimeout,
    ExitKind,
    StartFailed,
    SupervisorGaveUp,
)
from tests.actors.support import (
    ALWAYS,
    Boom,
    HangsInTerminate,
    Log,
    Worker,
    crash,
    leaf,
    settle,
    supervisor,
    worker,
)


class ShortTerminate(HangsInTerminate):
    terminate_timeout = 0.5


class Probe(Worker):
    """In ``init``, checks that the children started before it already answer calls."""

    async def init(self) -> None:
        await super().init()
        registry = self.system.registry
        first = await self.call("a", "ping")
        self.log.add(f"probe saw a#{first} c-registered={'c' in registry}")


# -- starting ------------------------------------------------------------------------------


async def test_children_start_in_order_and_synchronously(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [
        worker("a", log, init_delay=1.0),
        worker("b", log, actor=Probe),
        worker("c", log, init_delay=1.0),
    ]
    async with actors.open_system(children) as system:
        # open_system returns only once every child's init has completed.
        assert trio.current_time() == pytest.approx(2.0)
        assert log.events == [
            "init a#1",
            "init b#1",
            "probe saw a#1 c-registered=False",
            "init c#1",
        ]
        assert system.registry.addresses() == ["", "a", "b", "c"]


async def test_a_child_that_fails_to_start_fails_the_system_after_stopping_the_started_ones(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [
        worker("a", log),
        worker("b", log),
        worker("bad", log, fail_init=ALWAYS),
        worker("never", log),
    ]
    with pytest.RaisesGroup(StartFailed, flatten_subgroups=True) as excinfo:
        async with actors.open_system(children):
            pytest.fail("open_system must not start")
    failed = leaf(excinfo.value)
    assert isinstance(failed, StartFailed)
    assert failed.address == "/"
    assert isinstance(failed.cause, StartFailed)
    assert failed.cause.address == "bad"
    assert isinstance(failed.cause.cause, Boom)
    assert log.events == [
        "init a#1",
        "init b#1",
        "init bad#1",
        "terminate b#1 shutdown",
        "terminate a#1 shutdown",
    ]


async def test_duplicate_static_child_names_are_rejected_before_anything_starts(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    # As OTP does, duplicate child ids are refused before any child starts.
    children = [worker("a", log), worker("b", log), worker("a", log)]
    with pytest.raises(ValueError, match="duplicate child names: a"):
        async with actors.open_system(children):
            pytest.fail("open_system must not start")
    assert log.events == []
    async with actors.open_system([worker("ok", log)]) as system:
        with pytest.raises(StartFailed) as excinfo:
            await system.start_child(supervisor("sub", children))
        assert isinstance(excinfo.value.cause, ValueError)
        assert log.starting("init") == ["init ok#1"]
        assert system.registry.addresses() == ["", "ok"]


async def test_start_child_of_a_supervisor_whose_child_fails_raises_start_failed(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log)]) as system:
        before = system.registry.addresses()
        mark = len(log.events)
        sub = supervisor(
            "sub", [worker("x", log), worker("y", log), worker("z", log, fail_init=ALWAYS)]
        )
        with pytest.raises(StartFailed) as excinfo:
            await system.start_child(sub)
        assert excinfo.value.address == "sub"
        assert isinstance(excinfo.value.cause, StartFailed)
        assert excinfo.value.cause.address == "sub/z"
        assert log.since(mark) == [
            "init sub/x#1",
            "init sub/y#1",
            "init sub/z#1",
            "terminate sub/y#1 shutdown",
            "terminate sub/x#1 shutdown",
        ]
        assert system.registry.addresses() == before
        assert system.snapshot(ROOT).children == 1


async def test_start_child_whose_init_raises_raises_start_failed_and_registers_nothing(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log)]) as system:
        with pytest.raises(StartFailed) as excinfo:
            await system.start_child(worker("x", log, fail_init=ALWAYS))
        assert excinfo.value.address == "x"
        assert isinstance(excinfo.value.cause, Boom)
        assert system.registry.addresses() == ["", "a"]
        with pytest.raises(ActorNotFound):
            await system.call("x", "ping")
        assert log.starting("terminate") == []  # init failed: terminate never runs
        # Nothing was left behind: the name is free again.
        assert await system.start_child(worker("x", log)) == actors.as_address("x")
        assert await system.call("x", "ping") == 1


async def test_start_child_with_a_duplicate_name_raises_already_registered(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log)]) as system:
        with pytest.raises(AlreadyRegistered):
            await system.start_child(worker("a", log))
        assert log.events == ["init a#1"]
        assert await system.call("a", "ping") == 1
        assert system.snapshot(ROOT).children == 1


async def test_a_restart_whose_init_fails_counts_against_the_intensity(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker("a", log), worker("flaky", log, fail_init=range(2, 1_000))]
    with pytest.RaisesGroup(SupervisorGaveUp):
        async with actors.open_system(children, intensity=3) as system:
            system.cast("flaky", "crash")
            await trio.sleep(10)
    # One crash plus three failed restarts: the fourth restart exceeds intensity 3.
    assert log.starting("init flaky") == [f"init flaky#{n}" for n in range(1, 5)]
    assert log.events[-1] == "terminate a#1 shutdown"


# -- stopping ------------------------------------------------------------------------------


async def test_leaving_open_system_stops_children_in_reverse_order_with_reason_shutdown(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [
        worker("a", log),
        supervisor("sub", [worker("x", log), worker("y", log)]),
        worker("c", log),
    ]
    async with actors.open_system(children) as system:
        mark = len(log.events)
        addresses = system.registry.addresses()
    assert addresses == ["", "a", "c", "sub", "sub/x", "sub/y"]
    assert log.since(mark) == [
        "terminate c#1 shutdown",
        "terminate sub/y#1 shutdown",
        "terminate sub/x#1 shutdown",
        "terminate a#1 shutdown",
    ]
    assert [address for address in system.registry.addresses() if address] == []


async def test_a_child_hanging_in_terminate_is_killed_after_its_grace_and_the_others_stop(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [
        worker("a", log),
        worker("hang", log, actor=HangsInTerminate, shutdown=2.0),
        worker("c", log),
    ]
    async with actors.open_system(children):
        mark = len(log.events)
        left_at = trio.current_time()
    assert log.since(mark) == [
        "terminate c#1 shutdown",
        "terminate hang#1 shutdown",
        "terminate a#1 shutdown",
    ]
    assert log.at("terminate hang#1 shutdown") == pytest.approx(left_at)
    # hang was cancelled once its 2 s grace ran out; a was stopped right after.
    assert log.at("terminate a#1 shutdown") == pytest.approx(left_at + 2.0)
    assert trio.current_time() == pytest.approx(left_at + 2.0)


async def test_a_child_hanging_in_a_handler_is_killed_after_its_grace(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("busy", log, shutdown=1.0)]) as system:
        outcome: list[BaseException] = []

        async def caller() -> None:
            try:
                await system.call("busy", ("sleep", 60.0), timeout=100)
            except ActorStopped as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            await trio.sleep(0.5)
            assert system.snapshot("busy").handling == "('sleep', 60.0)"
            before = trio.current_time()
            assert await system.restart_child(ROOT, "busy") == actors.as_address("busy")
            assert trio.current_time() - before == pytest.approx(1.0)
        assert len(outcome) == 1  # the caller was told its message was killed
        snap = system.snapshot("busy")
        assert (snap.last_exit, snap.incarnation, snap.status) == (
            ExitKind.KILLED.value,
            2,
            "running",
        )
        # A killed actor never ran its terminate, nor finished the message.
        assert log.events == ["init busy#1", "got busy#1 ('sleep', 60.0)", "init busy#2"]


async def test_terminate_timeout_bounds_terminate(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system(
        [worker("a", log, actor=ShortTerminate, shutdown=10.0)]
    ) as system:
        before = trio.current_time()
        await system.restart_child(ROOT, "a")
        assert trio.current_time() - before == pytest.approx(ShortTerminate.terminate_timeout)
        snap = system.snapshot("a")
        # terminate was cut short, but within the grace: a shutdown, not a kill.
        assert (snap.last_exit, snap.incarnation) == ("shutdown", 2)
        assert log.events == ["init a#1", "terminate a#1 shutdown", "init a#2"]


async def test_shutdown_zero_kills_a_busy_child_at_once(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("busy", log, shutdown=0)]) as system:
        system.cast("busy", ("sleep", 60.0))
        await trio.sleep(1.0)
        before = trio.current_time()
        await system.restart_child(ROOT, "busy")
        assert trio.current_time() == before
        assert system.snapshot("busy").last_exit == "killed"
        assert log.events == ["init busy#1", "got busy#1 ('sleep', 60.0)", "init busy#2"]


async def test_shutdown_zero_kills_an_idle_child_without_running_terminate(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    # OTP's brutal_kill: the child is killed, its terminate never runs.
    async with actors.open_system([worker("idle", log, shutdown=0)]) as system:
        await system.restart_child(ROOT, "idle")
        assert system.snapshot("idle").last_exit == "killed"
        assert log.events == ["init idle#1", "init idle#2"]


async def test_a_busy_child_finishes_its_current_message_when_its_grace_allows(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("busy", log, shutdown=5.0)]) as system:
        replies: list[int] = []

        async def caller() -> None:
            replies.append(await system.call("busy", ("sleep", 3.0)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            await trio.sleep(1.0)
            await system.terminate_child(ROOT, "busy")
            assert trio.current_time() == pytest.approx(3.0)
        assert replies == [1]
        assert log.events == [
            "init busy#1",
            "got busy#1 ('sleep', 3.0)",
            "slept busy#1",
            "terminate busy#1 shutdown",
        ]
        assert "busy" not in system.registry


async def test_nothing_stays_registered_once_open_system_has_exited(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log)]) as system:
        assert system.registry.addresses() == ["", "a"]
    assert system.registry.addresses() == []
    before = trio.current_time()
    with pytest.raises((ActorNotFound, ActorStopped)):
        await system.start_child(worker("late", log), timeout=1.0)
    assert trio.current_time() == before  # refused at once, not left to time out
    assert log.starting("init late") == []


# -- operator calls ------------------------------------------------------------------------


async def test_terminate_child_stops_and_removes_only_that_child(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log), worker("b", log)], intensity=0) as system:
        await system.terminate_child(ROOT, "a")
        assert log.starting("terminate") == ["terminate a#1 shutdown"]
        assert "a" not in system.registry
        with pytest.raises(ActorNotFound):
            await system.call("a", "ping")
        with pytest.raises(ActorNotFound):
            await system.terminate_child(ROOT, "a")
        # An operator stop is not an exit to react to: intensity 0 and nothing gave up.
        assert system.snapshot(ROOT).state["recent_restarts"] == 0
        assert system.snapshot("b").incarnation == 1
        await system.start_child(worker("a", log))
        assert await system.call("a", "ping") == 1


async def test_restart_child_gives_a_new_incarnation_and_is_not_counted_against_intensity(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log), worker("b", log)], intensity=1) as system:
        for expected in (2, 3, 4):
            assert await system.restart_child(ROOT, "a") == actors.as_address("a")
            snap = system.snapshot("a")
            assert (snap.incarnation, snap.restarts, snap.last_exit) == (
                expected,
                expected - 1,
                "shutdown",
            )
        assert system.snapshot(ROOT).state["recent_restarts"] == 0
        assert log.starting("terminate") == [f"terminate a#{n} shutdown" for n in (1, 2, 3)]
        # The one restart intensity 1 allows is still available.
        await crash(system, "a")
        assert system.snapshot("a").incarnation == 5
        assert system.snapshot("b").incarnation == 1
        with pytest.raises(ActorNotFound):
            await system.restart_child(ROOT, "nope")


# -- backoff -------------------------------------------------------------------------------


async def test_backoff_delays_restarts_and_the_delay_grows_up_to_max(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    backoff = Backoff(min_delay=1.0, max_delay=3.0, jitter=0.0, factor=2.0)
    children = [worker("w", log, backoff=backoff)]
    async with actors.open_system(children, intensity=10, period=100.0) as system:
        for incarnation, delay in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]:
            await crash(system, "w")
            crashed_at = trio.current_time()
            snap = system.snapshot("w")
            assert (snap.status, snap.incarnation) == ("backoff", incarnation)
            await trio.sleep(delay * 0.9)
            assert system.snapshot("w").status == "backoff"
            # A call made during the backoff waits for, and is answered by, the next one.
            assert await system.call("w", "ping") == incarnation + 1
            assert trio.current_time() - crashed_at == pytest.approx(delay)
            assert log.at(f"init w#{incarnation + 1}") == pytest.approx(crashed_at + delay)
            assert system.snapshot("w").status == "running"


async def test_the_supervisor_keeps_answering_calls_during_a_backoff(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    backoff = Backoff(min_delay=10.0, max_delay=10.0, jitter=0.0)
    async with actors.open_system([worker("w", log, backoff=backoff)]) as system:
        await crash(system, "w")
        crashed_at = trio.current_time()
        assert system.snapshot("w").status == "backoff"
        await system.start_child(worker("other", log))
        assert await system.call("other", "ping") == 1
        await system.terminate_child(ROOT, "other")
        assert trio.current_time() == crashed_at
        with pytest.raises(CallTimeout):
            await system.call("w", "ping", timeout=5.0)
        await trio.sleep(5.0)
        await settle()
        snap = system.snapshot("w")
        assert (snap.status, snap.incarnation) == ("running", 2)


# -- mailboxes across restarts -------------------------------------------------------------


async def test_queued_messages_survive_a_restart(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("w", log)]) as system:
        for msg in ("crash", "m1", "m2", "m3"):
            system.cast("w", msg)
        assert await system.call("w", "ping") == 2
        assert log.events == [
            "init w#1",
            "got w#1 crash",
            "terminate w#1 crashed",
            "init w#2",
            "got w#2 m1",
            "got w#2 m2",
            "got w#2 m3",
        ]
        assert system.snapshot("w").mailbox.queued == 0
