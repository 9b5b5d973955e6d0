"""Supervisors under OTP semantics: strategies, restart types, intensity and escalation.

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
from actors import ROOT, ActorNotFound, Restart, Strategy, SupervisorGaveUp
from tests.actors.support import Boom, Log, crash, leaf, settle, supervisor, worker


def incarnations(system: actors.ActorSystem, *names: str) -> dict[str, int]:
    return {name: system.snapshot(name).incarnation for name in names}


# -- strategies ----------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_failed_child(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker(n, log) for n in "abcd"]
    async with actors.open_system(children, strategy=Strategy.ONE_FOR_ONE) as system:
        mark = len(log.events)
        await crash(system, "b")
        assert log.since(mark) == ["got b#1 crash", "terminate b#1 crashed", "init b#2"]
        assert incarnations(system, *"abcd") == {"a": 1, "b": 2, "c": 1, "d": 1}
        assert system.snapshot("b").restarts == 1
        assert system.snapshot("b").last_exit == "crashed: Boom: b#1 crashed"
        assert await system.call("b", "ping") == 2


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker(n, log) for n in "abcd"]
    async with actors.open_system(children, strategy=Strategy.ONE_FOR_ALL, intensity=3) as system:
        mark = len(log.events)
        await crash(system, "b")
        assert log.since(mark) == [
            "got b#1 crash",
            "terminate b#1 crashed",
            "terminate d#1 shutdown",
            "terminate c#1 shutdown",
            "terminate a#1 shutdown",
            "init a#2",
            "init b#2",
            "init c#2",
            "init d#2",
        ]
        assert incarnations(system, *"abcd") == {"a": 2, "b": 2, "c": 2, "d": 2}
        assert [system.snapshot(n).restarts for n in "abcd"] == [1, 1, 1, 1]
        # One failure is one restart against the intensity, however large the group.
        assert system.snapshot(ROOT).state["recent_restarts"] == 1


async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker(n, log) for n in "abcd"]
    async with actors.open_system(children, strategy=Strategy.REST_FOR_ONE) as system:
        mark = len(log.events)
        await crash(system, "b")
        assert log.since(mark) == [
            "got b#1 crash",
            "terminate b#1 crashed",
            "terminate d#1 shutdown",
            "terminate c#1 shutdown",
            "init b#2",
            "init c#2",
            "init d#2",
        ]
        assert incarnations(system, *"abcd") == {"a": 1, "b": 2, "c": 2, "d": 2}


async def test_rest_for_one_failure_of_the_last_child_restarts_only_it(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker(n, log) for n in "abc"]
    async with actors.open_system(children, strategy=Strategy.REST_FOR_ONE) as system:
        await crash(system, "c")
        assert incarnations(system, *"abc") == {"a": 1, "b": 1, "c": 2}
        assert log.starting("terminate") == ["terminate c#1 crashed"]


# -- restart types -------------------------------------------------------------------------


async def test_permanent_child_is_restarted_after_a_normal_exit_and_after_a_crash(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("p", log)], intensity=5) as system:
        assert await system.call("p", "stop") == 1
        await settle()
        assert system.snapshot("p").incarnation == 2
        assert system.snapshot("p").last_exit == "normal"
        await crash(system, "p")
        assert system.snapshot("p").incarnation == 3
        assert log.starting("terminate") == ["terminate p#1 normal", "terminate p#2 crashed"]
        assert await system.call("p", "ping") == 3


async def test_transient_child_is_restarted_after_a_crash_and_removed_after_a_normal_exit(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker("t", log, restart=Restart.TRANSIENT), worker("other", log)]
    async with actors.open_system(children) as system:
        await crash(system, "t")
        assert system.snapshot("t").incarnation == 2
        assert await system.call("t", "stop") == 2
        await settle()
        assert "t" not in system.registry
        with pytest.raises(ActorNotFound):
            await system.call("t", "ping")
        with pytest.raises(ActorNotFound):
            system.cast("t", "ping")
        assert log.starting("init t") == ["init t#1", "init t#2"]
        assert log.starting("terminate t") == ["terminate t#1 crashed", "terminate t#2 normal"]
        assert system.snapshot("other").incarnation == 1


@pytest.mark.parametrize("how", ["crash", "stop"])
async def test_temporary_child_is_never_restarted_and_is_removed(
    how: str, log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker("tmp", log, restart=Restart.TEMPORARY), worker("other", log)]
    async with actors.open_system(children, intensity=0) as system:
        system.cast("tmp", how)
        await settle()
        assert "tmp" not in system.registry
        with pytest.raises(ActorNotFound):
            await system.call("tmp", "ping")
        assert log.starting("init tmp") == ["init tmp#1"]
        # Not restarted, so nothing counted: intensity 0 did not make the root give up.
        assert system.snapshot(ROOT).state["recent_restarts"] == 0
        assert await system.call("other", "ping") == 1


async def test_temporary_sibling_stopped_with_a_one_for_all_group_is_removed_not_restarted(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [
        worker("a", log),
        worker("tmp", log, restart=Restart.TEMPORARY),
        worker("c", log, restart=Restart.TRANSIENT),
    ]
    async with actors.open_system(children, strategy=Strategy.ONE_FOR_ALL) as system:
        mark = len(log.events)
        await crash(system, "c")
        assert log.since(mark) == [
            "got c#1 crash",
            "terminate c#1 crashed",
            "terminate tmp#1 shutdown",
            "terminate a#1 shutdown",
            "init a#2",
            "init c#2",
        ]
        assert "tmp" not in system.registry
        assert incarnations(system, "a", "c") == {"a": 2, "c": 2}


# -- intensity and period ------------------------------------------------------------------


async def test_exactly_intensity_restarts_within_period_are_allowed_and_one_more_gives_up(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [worker("a", log), worker("b", log), worker("c", log)]
    with pytest.RaisesGroup(SupervisorGaveUp) as excinfo:
        async with actors.open_system(children, intensity=3, period=5.0) as system:
            for expected in (2, 3, 4):
                await crash(system, "b")
                assert system.snapshot("b").incarnation == expected
                await trio.sleep(1.0)
            assert system.snapshot(ROOT).state["recent_restarts"] == 3
            # t=3: all three earlier restarts are still within the 5 s period.
            mark = len(log.events)
            system.cast("b", "crash")
            await trio.sleep(10)
    gave_up = leaf(excinfo.value)
    assert isinstance(gave_up, SupervisorGaveUp)
    assert (gave_up.intensity, gave_up.period, gave_up.address) == (3, 5.0, "/")
    assert isinstance(gave_up.last, Boom)
    # Giving up stops every remaining child, in reverse start order.
    assert log.since(mark) == [
        "got b#4 crash",
        "terminate b#4 crashed",
        "terminate c#1 shutdown",
        "terminate a#1 shutdown",
    ]


async def test_restarts_spaced_further_apart_than_period_never_give_up(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_system([worker("a", log)], intensity=1, period=2.0) as system:
        for expected in range(2, 12):
            await crash(system, "a")
            assert system.snapshot("a").incarnation == expected
            await trio.sleep(2.5)
        assert system.snapshot(ROOT).state["recent_restarts"] == 0
        assert await system.call("a", "ping") == 11


async def test_the_intensity_window_slides(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.RaisesGroup(SupervisorGaveUp):
        async with actors.open_system([worker("a", log)], intensity=2, period=5.0) as system:
            # Restarts at t=0, 3, 6, 9: never more than two within any 5 s.
            for _ in range(4):
                await crash(system, "a")
                await trio.sleep(3.0)
            assert system.snapshot("a").incarnation == 5
            # t=12: restarts at 9 and (now) 12 are fine; one more at 12 is the third in 5 s.
            await crash(system, "a")
            assert system.snapshot("a").incarnation == 6
            system.cast("a", "crash")
            await trio.sleep(10)
    assert log.starting("init a") == [f"init a#{n}" for n in range(1, 7)]


@pytest.mark.parametrize("how", ["crash", "stop"])
async def test_intensity_zero_gives_up_on_the_first_exit_of_a_permanent_child(
    how: str, log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.RaisesGroup(SupervisorGaveUp) as excinfo:
        async with actors.open_system([worker("a", log), worker("b", log)], intensity=0) as system:
            system.cast("b", how)
            await trio.sleep(10)
    gave_up = leaf(excinfo.value)
    assert isinstance(gave_up, SupervisorGaveUp)
    assert gave_up.intensity == 0
    assert log.starting("init") == ["init a#1", "init b#1"]
    assert log.starting("terminate a") == ["terminate a#1 shutdown"]


async def test_nested_supervisor_that_gives_up_is_restarted_by_its_parent(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    sub = supervisor("sub", [worker(n, log) for n in "abc"], intensity=1)
    children = [worker("first", log), sub, worker("last", log)]
    async with actors.open_system(children, intensity=1) as system:
        assert system.registry.addresses("sub") == ["sub", "sub/a", "sub/b", "sub/c"]
        await crash(system, "sub/a")
        assert system.snapshot("sub/a").incarnation == 2
        mark = len(log.events)
        await crash(system, "sub/a")  # the second restart in 5 s: sub gives up
        assert log.since(mark) == [
            "got sub/a#2 crash",
            "terminate sub/a#2 crashed",
            # sub's terminate stops the rest of its children, in reverse order ...
            "terminate sub/c#1 shutdown",
            "terminate sub/b#1 shutdown",
            # ... and the root restarts sub, which starts a fresh subtree in order.
            "init sub/a#1",
            "init sub/b#1",
            "init sub/c#1",
        ]
        snap = system.snapshot("sub")
        assert (snap.incarnation, snap.restarts, snap.children) == (2, 1, 3)
        assert snap.last_exit is not None
        assert snap.last_exit.startswith("crashed: SupervisorGaveUp")
        assert incarnations(system, "first", "last") == {"first": 1, "last": 1}
        assert [await system.call(f"sub/{n}", "ping") for n in "abc"] == [1, 1, 1]


async def test_nested_give_up_beyond_the_parents_intensity_stops_the_whole_system(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    sub = supervisor("sub", [worker(n, log) for n in "ab"], intensity=1)
    children = [worker("first", log), sub, worker("last", log)]
    with pytest.RaisesGroup(SupervisorGaveUp) as excinfo:
        async with actors.open_system(children, intensity=1, period=5.0) as system:
            for _ in range(2):
                await crash(system, "sub/b")
            assert system.snapshot("sub").incarnation == 2  # sub gave up once: restarted
            await crash(system, "sub/b")
            mark = len(log.events)
            system.cast("sub/b", "crash")  # sub gives up again: the root's second restart
            await trio.sleep(10)
    root_gave_up = leaf(excinfo.value)
    assert isinstance(root_gave_up, SupervisorGaveUp)
    assert root_gave_up.address == "/"
    assert isinstance(root_gave_up.last, SupervisorGaveUp)
    assert root_gave_up.last.address == "sub"
    assert isinstance(root_gave_up.last.last, Boom)
    assert log.since(mark) == [
        "got sub/b#2 crash",
        "terminate sub/b#2 crashed",
        "terminate sub/a#1 shutdown",
        "terminate last#1 shutdown",
        "terminate first#1 shutdown",
    ]
