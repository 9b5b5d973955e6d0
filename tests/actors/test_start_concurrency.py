"""``Supervisor(start_concurrency=N)``: independent children start N at a time.

What must not change with it: every child's ``init`` completes before the supervisor is
reported started, ``children`` (and so the registry, ``rest_for_one`` groups and ordered
shutdown) keeps the declared order whatever order the inits finish in, a child that fails
to start stops the ones already started and fails the start, and restarts go one child
after another as before. Example tests run on pytest-trio's ``autojump_clock``; the
property runs each example under its own ``trio.run`` with a mock clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import actors
from actors import ChildSpec, StartFailed, Strategy, Supervisor
from tests.actors.support import ALWAYS, FEW, Boom, Log, Worker, crash, leaf, worker


class Gauge:
    """How many inits are in flight now, and the most ever seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0


class Counted(Worker):
    """A Worker whose ``init`` is counted in the shared gauge while it runs."""

    gauge = Gauge()

    async def init(self) -> None:
        gauge = self.gauge
        gauge.now += 1
        gauge.peak = max(gauge.peak, gauge.now)
        try:
            await super().init()
        finally:
            gauge.now -= 1
        self.log.add(f"ready {self.tag}")


def concurrent(
    name: str,
    children: Sequence[ChildSpec],
    *,
    start_concurrency: int,
    start_alone: int = 0,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: int = 1,
) -> ChildSpec:
    return ChildSpec(
        name,
        lambda: Supervisor(
            children,
            strategy=strategy,
            intensity=intensity,
            start_concurrency=start_concurrency,
            start_alone=start_alone,
        ),
        shutdown=math.inf,
    )


def counted(name: str, log: Log, *, delay: float, fail: bool = False) -> ChildSpec:
    return worker(name, log, actor=Counted, init_delay=delay, fail_init=ALWAYS if fail else ())


@pytest.fixture(autouse=True)
def fresh_gauge() -> None:
    Counted.gauge = Gauge()


async def test_children_start_up_to_the_bound_at_once_and_keep_their_declared_order(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    # Later children finish first: c, d and e are ready before b and a.
    delays = {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5, "e": 0.25}
    children = [counted(n, log, delay=d) for n, d in delays.items()]
    async with actors.open_system() as system:
        await system.start_child(concurrent("sup", children, start_concurrency=3))
        # d takes c's slot at 1 s and e d's at 1.5 s; the start is reported only once the
        # last init (a's) completed, at 3 s.
        assert trio.current_time() == pytest.approx(3.0)
        assert log.starting("ready") == [f"ready sup/{n}#1" for n in "cdeba"]
        assert log.at("init sup/d#1") == pytest.approx(1.0)
        assert log.at("init sup/e#1") == pytest.approx(1.5)
        assert Counted.gauge.peak == 3
        assert system.registry.addresses("sup") == ["sup", *(f"sup/{n}" for n in "abcde")]
        page = system.tree_page("sup")
        assert [child.address for child in page.children] == [f"sup/{n}" for n in "abcde"]
        for name in delays:
            assert await system.call(f"sup/{name}", "ping") == 1
    # Ordered shutdown is still the declared order backwards.
    assert log.starting("terminate") == [f"terminate sup/{n}#1 shutdown" for n in "edcba"]


async def test_a_bound_of_one_is_the_sequential_start(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [counted(n, log, delay=1.0) for n in "abc"]
    async with actors.open_system() as system:
        await system.start_child(concurrent("sup", children, start_concurrency=1))
        assert trio.current_time() == pytest.approx(3.0)
        assert Counted.gauge.peak == 1
        assert log.events == [
            "init sup/a#1",
            "ready sup/a#1",
            "init sup/b#1",
            "ready sup/b#1",
            "init sup/c#1",
            "ready sup/c#1",
        ]


async def test_the_first_start_alone_children_are_up_before_the_others_begin(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    # A station: its gateway first, then its pumps all at once.
    children = [counted("gw", log, delay=2.0), *(counted(f"p{n}", log, delay=1.0) for n in "123")]
    async with actors.open_system() as system:
        await system.start_child(
            concurrent(
                "st", children, start_concurrency=3, start_alone=1, strategy=Strategy.REST_FOR_ONE
            )
        )
        assert trio.current_time() == pytest.approx(3.0)
        assert log.events[:2] == ["init st/gw#1", "ready st/gw#1"]
        assert {log.at(f"init st/p{n}#1") for n in "123"} == {2.0}
        assert Counted.gauge.peak == 3
        page = system.tree_page("st")
        assert [c.address for c in page.children] == ["st/gw", "st/p1", "st/p2", "st/p3"]
        # rest_for_one from the gateway: every pump goes, and all come back in order.
        mark = len(log.events)
        await crash(system, "st/gw")
        await trio.sleep(30)  # mock time: the group's inits take 5 s one after another
        assert system.snapshot("st/p3").status == "running"
        assert log.starting("init")[-4:] == [f"init st/{n}#2" for n in ("gw", "p1", "p2", "p3")]
        assert log.since(mark)[2:5] == [f"terminate st/p{n}#1 shutdown" for n in "321"]


async def test_bounds_out_of_range_are_refused(log: Log) -> None:
    with pytest.raises(ValueError, match="start_concurrency"):
        Supervisor([worker("a", log)], start_concurrency=0)
    with pytest.raises(ValueError, match="start_alone"):
        Supervisor([worker("a", log)], start_alone=-1)


async def test_a_failed_start_takes_no_new_child_and_stops_the_started_ones_in_reverse(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    children = [
        counted("a", log, delay=1.0),
        counted("bad", log, delay=0.5, fail=True),
        counted("c", log, delay=2.0),
        counted("never", log, delay=1.0),
    ]
    async with actors.open_system() as system:
        with pytest.raises(StartFailed) as excinfo:
            await system.start_child(concurrent("sup", children, start_concurrency=3))
        failed = excinfo.value
        assert failed.address == "sup"
        assert isinstance(failed.cause, StartFailed)
        assert failed.cause.address == "sup/bad"
        assert isinstance(leaf(failed.cause.cause), Boom)
        # a and c were already starting when bad failed at 0.5 s: their inits finish,
        # then both are stopped, c first; "never" is not taken once a start failed.
        assert sorted(log.starting("init")) == ["init sup/a#1", "init sup/bad#1", "init sup/c#1"]
        assert log.starting("terminate") == [
            "terminate sup/c#1 shutdown",
            "terminate sup/a#1 shutdown",
        ]
        assert log.at("terminate sup/c#1 shutdown") == pytest.approx(2.0)
        assert system.registry.addresses() == [""]


async def test_restarts_after_a_concurrent_start_are_unchanged(
    log: Log, autojump_clock: trio.testing.MockClock
) -> None:
    # rest_for_one: the crashed child and those declared after it, stopped in reverse
    # and started again one after another, exactly as after a sequential start.
    children = [counted(n, log, delay=4.0 - i) for i, n in enumerate("abcd")]
    async with actors.open_system() as system:
        await system.start_child(
            concurrent(
                "sup", children, start_concurrency=4, strategy=Strategy.REST_FOR_ONE, intensity=3
            )
        )
        assert Counted.gauge.peak == 4
        Counted.gauge.peak = 0
        mark = len(log.events)
        await crash(system, "sup/b")
        await trio.sleep(30)  # mock time: the group's inits take 6 s one after another
        assert system.snapshot("sup/d").status == "running"
        assert log.since(mark) == [
            "got sup/b#1 crash",
            "terminate sup/b#1 crashed",
            "terminate sup/d#1 shutdown",
            "terminate sup/c#1 shutdown",
            "init sup/b#2",
            "ready sup/b#2",
            "init sup/c#2",
            "ready sup/c#2",
            "init sup/d#2",
            "ready sup/d#2",
        ]
        assert Counted.gauge.peak == 1
        assert [system.snapshot(f"sup/{n}").incarnation for n in "abcd"] == [1, 2, 2, 2]


@FEW
@given(
    delays=st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=12),
    bound=st.integers(min_value=1, max_value=6),
    alone=st.integers(min_value=0, max_value=3),
    fail_at=st.none() | st.integers(min_value=0, max_value=11),
)
def test_property_order_bound_and_failure(
    delays: list[int], bound: int, alone: int, fail_at: int | None
) -> None:
    """Whatever the init times: never more than ``bound`` inits at once; on success every
    child is ready, in declared order, before the start returns; on a failure no child is
    left running and none is taken once a start failed."""
    if fail_at is not None and fail_at >= len(delays):
        fail_at = None
    names = [f"c{i:02d}" for i in range(len(delays))]

    async def scenario() -> None:
        log = Log()
        Counted.gauge = Gauge()
        children = [
            counted(n, log, delay=d * 0.25, fail=i == fail_at)
            for i, (n, d) in enumerate(zip(names, delays, strict=True))
        ]
        async with actors.open_system() as system:
            spec = concurrent("sup", children, start_concurrency=bound, start_alone=alone)
            if fail_at is None:
                await system.start_child(spec)
                assert len(log.starting("ready")) == len(names)
                assert system.registry.addresses("sup") == ["sup", *(f"sup/{n}" for n in names)]
            else:
                with pytest.raises(StartFailed):
                    await system.start_child(spec)
                assert system.registry.addresses() == [""]
                started = [e.split()[1].removesuffix("#1") for e in log.starting("init")]
                # Taken in declared order (their inits may begin in any order), and none
                # once the failure happened.
                assert sorted(started) == [f"sup/{n}" for n in names[: len(started)]]
                failed_at = log.at(f"init sup/{names[fail_at]}#1") + delays[fail_at] * 0.25
                assert all(t <= failed_at for t, e in log.entries if e.startswith("init"))
                # Every child that got started is stopped again, in reverse declared order.
                ready = [e.split()[1] for e in log.starting("ready")]
                stopped = [e.split()[1] for e in log.starting("terminate")]
                assert stopped == sorted(ready, reverse=True)
            assert Counted.gauge.peak <= bound
            assert Counted.gauge.now == 0
            # The first ``alone`` children start one after another, before any other: no
            # init begins before the previous one of them is ready (or failed: then none).
            events = log.events
            inits = [i for i, e in enumerate(events) if e.startswith("init")]
            for name in names[:alone]:
                if f"init sup/{name}#1" not in events:
                    break
                began = events.index(f"init sup/{name}#1")
                up = f"ready sup/{name}#1"
                done = events.index(up) if up in events else len(events)
                assert all(i <= began or i > done for i in inits)

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
