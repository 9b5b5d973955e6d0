"""Dynamic supervisors: children added at run time, restarted one_for_one, passivated when idle.

Helper actors and the event log come from ``support.py`` (the ``log`` fixture from
``conftest.py``); every test runs on pytest-trio's ``autojump_clock``.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import trio
import trio.testing

import actors
from actors import (
    ROOT,
    ActorNotFound,
    AlreadyRegistered,
    ChildSpec,
    DynamicSupervisor,
    StartFailed,
)
from tests.actors.support import (
    ALWAYS,
    Boom,
    HangsInTerminate,
    Log,
    crash,
    settle,
    worker,
)


def dynamic(
    name: str = "dyn",
    *,
    intensity: int = 3,
    period: float = 5.0,
    passivate_after: float | None = None,
    shutdown: float = math.inf,
) -> ChildSpec:
    return ChildSpec(
        name,
        lambda: DynamicSupervisor(
            intensity=intensity, period=period, passivate_after=passivate_after
        ),
        shutdown=shutdown,
    )


async def start_workers(system: actors.ActorSystem, log: Log, *names: str) -> None:
    for name in names:
        address = await system.start_child(worker(name, log), supervisor="dyn")
        assert address == actors.as_address(f"dyn/{name}")


# -- starting and stopping children --------------------------------------------------------


async def test_start_child_starts_many_children(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    names = [f"w{i:02}" for i in range(50)]
    async with actors.open_system([dynamic()]) as system:
        addresses: list[actors.Address] = []

        async def start(name: str) -> None:
            addresses.append(await system.start_child(worker(name, log), supervisor="dyn"))

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(start, name)
        assert sorted(str(a) for a in addresses) == [f"dyn/{n}" for n in names]
        assert system.snapshot("dyn").children == 50
        assert system.registry.addresses("dyn") == ["dyn", *(f"dyn/{n}" for n in names)]
        assert [await system.call(f"dyn/{n}", "ping") for n in names] == [1] * 50
        assert sorted(log.starting("init")) == [f"init dyn/{n}#1" for n in names]


async def test_a_slow_init_does_not_hold_up_other_starts(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic()]) as system, trio.open_nursery() as nursery:
        slow = worker("slow", log, init_delay=10.0)
        nursery.start_soon(partial(system.start_child, slow, supervisor="dyn"))
        await settle()
        await start_workers(system, log, "fast")
        assert trio.current_time() == 0.0
        assert await system.call("dyn/fast", "ping") == 1
        # A call to the starting child is queued and answered once its init is done.
        assert await system.call("dyn/slow", "ping", timeout=20.0) == 1
        assert trio.current_time() == pytest.approx(10.0)


async def test_start_child_failures_leave_nothing_registered(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic()]) as system:
        await start_workers(system, log, "a")
        with pytest.raises(AlreadyRegistered):
            await system.start_child(worker("a", log), supervisor="dyn")
        with pytest.raises(StartFailed) as excinfo:
            await system.start_child(worker("bad", log, fail_init=ALWAYS), supervisor="dyn")
        assert excinfo.value.address == "dyn/bad"
        assert isinstance(excinfo.value.cause, Boom)
        assert system.registry.addresses("dyn") == ["dyn", "dyn/a"]
        assert system.snapshot("dyn").children == 1
        assert log.events == ["init dyn/a#1", "init dyn/bad#1"]


async def test_terminate_child_and_restart_child(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic(intensity=0)]) as system:
        await start_workers(system, log, "a", "b", "c")
        await system.terminate_child("dyn", "a")
        assert "dyn/a" not in system.registry
        with pytest.raises(ActorNotFound):
            await system.call("dyn/a", "ping")
        assert await system.restart_child("dyn", "b") == actors.as_address("dyn/b")
        snap = system.snapshot("dyn/b")
        assert (snap.incarnation, snap.restarts, snap.last_exit) == (2, 1, "shutdown")
        assert log.starting("terminate") == [
            "terminate dyn/a#1 shutdown",
            "terminate dyn/b#1 shutdown",
        ]
        assert system.snapshot("dyn/c").incarnation == 1
        # Neither counted as a failure: intensity 0 and the supervisor is still its first self.
        assert system.snapshot("dyn").incarnation == 1
        assert system.snapshot("dyn").state["recent_restarts"] == 0


async def test_a_crashing_child_is_restarted_without_touching_its_siblings(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic()]) as system:
        await start_workers(system, log, "a", "b", "c")
        mark = len(log.events)
        await crash(system, "dyn/b")
        assert log.since(mark) == ["got dyn/b#1 crash", "terminate dyn/b#1 crashed", "init dyn/b#2"]
        assert [system.snapshot(f"dyn/{n}").incarnation for n in "abc"] == [1, 2, 1]
        assert system.snapshot("dyn/b").restarts == 1
        assert system.snapshot("dyn").state["recent_restarts"] == 1


async def test_children_stop_concurrently(log: Log, autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([dynamic()]) as system:
        for name in ("a", "b", "c"):
            spec = worker(name, log, actor=HangsInTerminate, shutdown=2.0)
            await system.start_child(spec, supervisor="dyn")
        await system.terminate_child(ROOT, "dyn")
        assert trio.current_time() == pytest.approx(2.0)  # one grace, not three in a row
        assert sorted(log.starting("terminate")) == [f"terminate dyn/{n}#1 shutdown" for n in "abc"]


# -- passivation ---------------------------------------------------------------------------


async def test_idle_children_are_passivated_and_a_message_brings_them_back(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    # intensity=0: passivating and reactivating must never count as a restart.
    async with actors.open_system([dynamic(intensity=0, passivate_after=10.0)]) as system:
        await start_workers(system, log, "idle", "active")
        await trio.sleep(6.0)
        assert await system.call("dyn/active", "ping") == 1
        await trio.sleep(5.0)  # t=11: the sweep at t=10 found "idle" idle for 10 s
        assert system.snapshot("dyn/idle").status == "passivated"
        assert system.snapshot("dyn/active").status == "running"
        assert log.starting("terminate") == ["terminate dyn/idle#1 passivated"]
        state = system.snapshot("dyn").state
        assert (state["passivated"], state["passivations"]) == (1, 1)
        assert "dyn/idle" in system.registry  # it keeps its address

        before = trio.current_time()
        assert await system.call("dyn/idle", "ping") == 2
        assert trio.current_time() == before
        snap = system.snapshot("dyn/idle")
        assert (snap.status, snap.incarnation, snap.last_exit) == ("running", 2, "passivated")

        await trio.sleep(10.0)  # t=21: the sweep at t=20 found "active" idle for 14 s
        assert system.snapshot("dyn/active").status == "passivated"
        assert system.snapshot("dyn/idle").status == "running"
        system.cast("dyn/active", "hello")
        await settle()
        assert log.since(-2) == ["init dyn/active#2", "got dyn/active#2 hello"]
        dyn = system.snapshot("dyn")
        assert (dyn.incarnation, dyn.state["recent_restarts"], dyn.state["passivations"]) == (
            1,
            0,
            2,
        )


async def test_a_busy_child_is_not_passivated(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic(passivate_after=10.0)]) as system:
        await start_workers(system, log, "busy")
        system.cast("dyn/busy", ("sleep", 30.0))
        await trio.sleep(25.0)
        snap = system.snapshot("dyn/busy")
        assert (snap.status, snap.handling) == ("running", "('sleep', 30.0)")
        assert log.starting("terminate") == []


async def test_a_child_that_passivates_itself_is_reactivated_by_its_next_message(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic(intensity=0)]) as system:
        await start_workers(system, log, "w")
        assert await system.call("dyn/w", "passivate") == 1
        await settle()
        assert system.snapshot("dyn/w").status == "passivated"
        assert log.events[-1] == "terminate dyn/w#1 passivated"

        system.cast("dyn/w", "m1")
        assert await system.call("dyn/w", "ping") == 2
        # Messages queued while it passivates are not lost: they reactivate it at once.
        system.cast("dyn/w", "passivate")
        system.cast("dyn/w", "m2")
        assert await system.call("dyn/w", "ping") == 3
        assert log.events == [
            "init dyn/w#1",
            "got dyn/w#1 passivate",
            "terminate dyn/w#1 passivated",
            "init dyn/w#2",
            "got dyn/w#2 m1",
            "got dyn/w#2 passivate",
            "terminate dyn/w#2 passivated",
            "init dyn/w#3",
            "got dyn/w#3 m2",
        ]
        assert system.snapshot("dyn").state["recent_restarts"] == 0


# -- the supervisor's own exit -------------------------------------------------------------


async def test_children_are_unregistered_when_their_supervisor_is_terminated(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic(passivate_after=10.0)]) as system:
        await start_workers(system, log, "a", "b", "sleepy")
        await trio.sleep(6.0)
        assert [await system.call(f"dyn/{n}", "ping") for n in "ab"] == [1, 1]
        await trio.sleep(5.0)
        assert system.snapshot("dyn/sleepy").status == "passivated"
        await system.terminate_child(ROOT, "dyn")
        assert system.registry.addresses() == [""]
        for name in ("a", "b", "sleepy"):
            with pytest.raises(ActorNotFound):
                await system.call(f"dyn/{name}", "ping")
        assert sorted(log.starting("terminate")) == [
            "terminate dyn/a#1 shutdown",
            "terminate dyn/b#1 shutdown",
            "terminate dyn/sleepy#1 passivated",
        ]


async def test_children_are_unregistered_when_their_supervisor_gives_up_and_is_restarted(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic(intensity=0)], intensity=1) as system:
        await start_workers(system, log, "a", "b", "c")
        await crash(system, "dyn/b")
        snap = system.snapshot("dyn")
        assert (snap.incarnation, snap.children) == (2, 0)
        assert snap.last_exit is not None
        assert snap.last_exit.startswith("crashed: SupervisorGaveUp")
        assert system.registry.addresses("dyn") == ["dyn"]
        assert sorted(log.starting("terminate")) == [
            "terminate dyn/a#1 shutdown",
            "terminate dyn/b#1 crashed",
            "terminate dyn/c#1 shutdown",
        ]
        # The restarted supervisor starts empty and takes new children under the old names.
        await start_workers(system, log, "b")
        assert await system.call("dyn/b", "ping") == 1


async def test_children_are_unregistered_when_their_supervisor_is_killed(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([dynamic(shutdown=1.0)]) as system:
        await start_workers(system, log, "a")
        stuck = worker("stuck", log, actor=HangsInTerminate, shutdown=30.0)
        await system.start_child(stuck, supervisor="dyn")
        await system.restart_child(ROOT, "dyn")
        assert trio.current_time() == pytest.approx(1.0)
        snap = system.snapshot("dyn")
        assert (snap.incarnation, snap.last_exit, snap.children) == (2, "killed", 0)
        assert system.registry.addresses("dyn") == ["dyn"]
        with pytest.raises(ActorNotFound):
            await system.call("dyn/a", "ping")
