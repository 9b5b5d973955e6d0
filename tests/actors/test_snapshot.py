"""Operator snapshots: every field of ``ActorSnapshot``, JSON output, tree pages and walks."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import time
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import actors
from actors import (
    ROOT,
    Actor,
    ActorCrashed,
    ActorSnapshot,
    ActorSystem,
    Backoff,
    ChildSpec,
    DynamicSupervisor,
    MailboxConfig,
    MailboxStatistics,
    Overflow,
    Reply,
    Restart,
    Strategy,
    Supervisor,
    TreePage,
)


class Counter(Actor):
    """Counts calls; ``("work", s)`` keeps it busy ``s`` seconds; ``"crash"`` raises."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        self.count += 1
        if msg == "crash":
            raise ValueError("boom in handler")
        if isinstance(msg, tuple) and msg[0] == "work":
            await trio.sleep(msg[1])
        return msg

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count, "tags": ["a", "b"], "ratio": 0.5, "nothing": None}


class BrokenSnapshot(Counter):
    def snapshot(self) -> dict[str, Any]:
        raise RuntimeError("cannot look inside")


def group_of(*names: str, strategy: Strategy = Strategy.ONE_FOR_ONE) -> ChildSpec:
    """A nested static supervisor (named after the first entry) over Counters."""
    name, *children = names

    def factory() -> Supervisor:
        return Supervisor([ChildSpec(c, Counter) for c in children], strategy=strategy)

    return ChildSpec(name, factory, shutdown=math.inf)


def dynamic(name: str) -> ChildSpec:
    return ChildSpec(name, DynamicSupervisor, shutdown=math.inf)


async def start_counters(system: ActorSystem, supervisor: str, count: int) -> list[str]:
    names = [f"w{i:02d}" for i in range(count)]
    for name in names:
        await system.start_child(ChildSpec(name, Counter), supervisor=supervisor)
    return [f"{supervisor}/{name}" for name in names]


async def call_in_background(
    results: dict[str, outcome.Outcome[Any]], system: ActorSystem, address: str, msg: Any
) -> None:
    """Record the call's value or exception (a cancellation propagates and records nothing)."""
    result: outcome.Outcome[Any]
    try:
        result = outcome.Value(await system.call(address, msg, timeout=1000.0))
    except Exception as exc:
        result = outcome.Error(exc)
    results[address] = result


# -- worker snapshots -------------------------------------------------------------------


async def test_worker_snapshot_fields(autojump_clock: trio.testing.MockClock) -> None:
    spec = ChildSpec("w", Counter, mailbox=MailboxConfig(16, Overflow.DROP_OLDEST))
    async with actors.open_system([spec]) as system:
        await trio.sleep(2.0)
        snap = system.snapshot("w")
        assert isinstance(snap, ActorSnapshot)
        assert snap.address == "w"
        assert snap.kind == "Counter"
        assert snap.status == "running"
        assert snap.restart == "permanent"
        assert snap.incarnation == 1
        assert snap.restarts == 0
        assert snap.last_exit is None
        assert snap.last_exit_at is None
        assert snap.uptime_s == pytest.approx(2.0, abs=1e-9)
        assert isinstance(snap.mailbox, MailboxStatistics)
        assert snap.mailbox.capacity == 16
        assert snap.mailbox.overflow == "drop_oldest"
        assert snap.mailbox.queued == 0
        assert snap.mailbox.processed == 0
        assert snap.handling is None
        assert snap.handling_for_s is None
        assert snap.late_replies == 0
        assert snap.supervisor is False
        assert snap.children is None
        assert snap.state == {"count": 0, "tags": ["a", "b"], "ratio": 0.5, "nothing": None}

        await system.call("w", "hello")
        await trio.sleep(1.0)
        snap = system.snapshot("w")
        assert snap.state["count"] == 1
        assert snap.mailbox.processed == 1
        assert snap.uptime_s == pytest.approx(3.0, abs=1e-9)
        with pytest.raises(dataclasses.FrozenInstanceError):
            snap.status = "stopped"  # type: ignore[misc]


async def test_snapshot_after_a_crash(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([ChildSpec("w", Counter)]) as system:
        await trio.sleep(5.0)
        wall_before = time.time()
        with pytest.raises(ActorCrashed):
            await system.call("w", "crash")
        await system.call("w", "sync")  # handled by the restarted incarnation
        wall_after = time.time()
        await trio.sleep(1.5)
        snap = system.snapshot("w")
        assert snap.status == "running"
        assert snap.incarnation == 2
        assert snap.restarts == 1
        assert snap.last_exit is not None
        assert "crashed" in snap.last_exit
        assert "ValueError" in snap.last_exit
        assert "boom in handler" in snap.last_exit
        assert isinstance(snap.last_exit_at, float)
        assert wall_before <= snap.last_exit_at <= wall_after  # Unix seconds, not trio time
        assert snap.uptime_s == pytest.approx(1.5, abs=1e-9)  # this incarnation's uptime
        assert snap.state["count"] == 1  # a fresh actor object: only "sync"
        assert snap.mailbox.processed == 2  # the mailbox outlives incarnations


async def test_handling_while_stuck_in_a_long_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([ChildSpec("w", Counter)]) as system:
        results: dict[str, outcome.Outcome[Any]] = {}
        seen: list[tuple[Any, Any, int]] = []

        async def reader() -> None:
            for _ in range(3):
                await trio.sleep(2.0)
                snap = system.snapshot("w")
                seen.append((snap.handling, snap.handling_for_s, snap.mailbox.queued))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_in_background, results, system, "w", ("work", 100.0))
            await trio.sleep(1.0)
            snap = system.snapshot("w")
            assert snap.handling == repr(("work", 100.0))
            assert snap.handling_for_s == pytest.approx(1.0, abs=1e-9)
            assert snap.status == "running"
            system.cast("w", "queued")  # waits behind the stuck handler
            nursery.start_soon(reader)
            await trio.sleep(10.0)
            snap = system.snapshot("w")
            assert snap.handling_for_s == pytest.approx(11.0, abs=1e-9)
            assert snap.mailbox.oldest_age_s == pytest.approx(10.0, abs=1e-9)
        assert seen == [
            (repr(("work", 100.0)), pytest.approx(3.0, abs=1e-9), 1),
            (repr(("work", 100.0)), pytest.approx(5.0, abs=1e-9), 1),
            (repr(("work", 100.0)), pytest.approx(7.0, abs=1e-9), 1),
        ]
        assert results["w"].unwrap() == ("work", 100.0)
        snap = system.snapshot("w")
        assert snap.handling is None
        assert snap.handling_for_s is None


async def test_handling_describes_long_messages_briefly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([ChildSpec("w", Counter)]) as system:
        msg = ("work", 10.0, "x" * 500)
        results: dict[str, outcome.Outcome[Any]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_in_background, results, system, "w", msg)
            await trio.sleep(1.0)
            handling = system.snapshot("w").handling
            assert handling is not None
            assert len(handling) == 120
            assert handling.endswith("...")
            assert handling[:-3] == repr(msg)[:117]
        assert results["w"].unwrap() == msg


async def test_actor_snapshot_error_is_reported_in_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([ChildSpec("w", BrokenSnapshot)]) as system:
        snap = system.snapshot("w")
        assert snap.kind == "BrokenSnapshot"
        assert snap.state == {"snapshot_error": repr(RuntimeError("cannot look inside"))}
        assert await system.call("w", "still fine") == "still fine"


async def test_restart_types_and_backoff_status(autojump_clock: trio.testing.MockClock) -> None:
    specs = [
        ChildSpec("perm", Counter),
        ChildSpec("trans", Counter, restart=Restart.TRANSIENT),
        ChildSpec("temp", Counter, restart=Restart.TEMPORARY),
        ChildSpec("slow", Counter, backoff=Backoff(min_delay=2.0, max_delay=2.0, jitter=0.0)),
    ]
    async with actors.open_system(specs) as system:
        assert [system.snapshot(n).restart for n in ("perm", "trans", "temp", "slow")] == [
            "permanent",
            "transient",
            "temporary",
            "permanent",
        ]
        with pytest.raises(ActorCrashed):
            await system.call("slow", "crash")
        await trio.sleep(0.5)
        snap = system.snapshot("slow")
        assert snap.status == "backoff"
        assert snap.uptime_s is None  # no incarnation is running
        assert snap.incarnation == 1
        assert snap.restarts == 0
        assert snap.last_exit is not None
        assert "ValueError" in snap.last_exit
        assert snap.state == {}  # no actor object to ask
        await trio.sleep(2.0)
        snap = system.snapshot("slow")
        assert snap.status == "running"
        assert snap.incarnation == 2
        assert snap.restarts == 1
        assert snap.uptime_s == pytest.approx(0.5, abs=1e-9)


# -- supervisor snapshots ---------------------------------------------------------------


async def test_supervisor_snapshots(autojump_clock: trio.testing.MockClock) -> None:
    specs = [ChildSpec("a", Counter), group_of("grp", "x", "y", strategy=Strategy.ONE_FOR_ALL)]
    async with actors.open_system(specs, strategy=Strategy.REST_FOR_ONE, intensity=3) as system:
        root = system.snapshot(ROOT)
        assert system.snapshot("") == root
        assert root.address == str(ROOT)
        assert root.kind == "Supervisor"
        assert root.status == "running"
        assert root.supervisor is True
        assert root.children == 2
        assert root.handling is None
        assert root.state == {
            "strategy": "rest_for_one",
            "intensity": 3,
            "period_s": 5.0,
            "recent_restarts": 0,
            "children": 2,
        }

        grp = system.snapshot("grp")
        assert grp.address == "grp"
        assert grp.kind == "Supervisor"
        assert grp.restart == "permanent"
        assert grp.supervisor is True
        assert grp.children == 2
        assert grp.state["strategy"] == "one_for_all"
        assert grp.state["intensity"] == 1

        with pytest.raises(ActorCrashed):
            await system.call("grp/y", "crash")
        await trio.sleep(0.1)  # let the group restart settle (no time is needed for it)
        grp = system.snapshot("grp")
        assert grp.state["recent_restarts"] == 1
        assert grp.restarts == 0  # the group itself did not restart
        x = system.snapshot("grp/x")  # one_for_all restarted the sibling too
        assert (x.status, x.incarnation, x.restarts) == ("running", 2, 1)
        assert x.last_exit == "shutdown"
        assert system.snapshot(ROOT).state["recent_restarts"] == 0

        await trio.sleep(6.0)  # outside the intensity period
        assert system.snapshot("grp").state["recent_restarts"] == 0


async def test_dynamic_supervisor_snapshot(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([dynamic("dyn")]) as system:
        await start_counters(system, "dyn", 3)
        snap = system.snapshot("dyn")
        assert snap.kind == "DynamicSupervisor"
        assert snap.supervisor is True
        assert snap.children == 3
        assert snap.state["strategy"] == "one_for_one"
        assert snap.state["children"] == 3
        assert snap.state["passivate_after_s"] is None
        assert snap.state["passivations"] == 0
        assert snap.state["passivated"] == 0


async def test_to_dict_is_json_serialisable(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([ChildSpec("w", Counter), dynamic("dyn")]) as system:
        await start_counters(system, "dyn", 2)
        with pytest.raises(ActorCrashed):
            await system.call("w", "crash")
        results: dict[str, outcome.Outcome[Any]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call_in_background, results, system, "w", ("work", 5.0))
            await trio.sleep(1.0)
            snaps = [system.snapshot(a) for a in ("w", ROOT, "dyn", "dyn/w00")]
            page = system.tree_page("dyn")
        assert results["w"].unwrap() == ("work", 5.0)

        for snap in snaps:
            data = snap.to_dict()
            text = json.dumps(data)
            assert json.loads(text) == data
            assert set(data) == {f.name for f in dataclasses.fields(ActorSnapshot)}
            assert data["mailbox"] == dataclasses.asdict(snap.mailbox)
            assert data["state"] == snap.state

        w = json.loads(json.dumps(snaps[0].to_dict()))
        assert w["address"] == "w"
        assert w["handling"] == repr(("work", 5.0))
        assert w["handling_for_s"] == pytest.approx(1.0, abs=1e-9)
        assert "ValueError" in w["last_exit"]
        assert isinstance(w["last_exit_at"], float)
        assert w["mailbox"]["capacity"] == 1024

        page_data = page.to_dict()
        decoded = json.loads(json.dumps(page_data))
        assert decoded == page_data
        assert decoded["supervisor"]["address"] == "dyn"
        assert [c["address"] for c in decoded["children"]] == ["dyn/w00", "dyn/w01"]
        assert (decoded["offset"], decoded["total"], decoded["next_offset"]) == (0, 2, None)


# -- tree paging ------------------------------------------------------------------------


async def test_tree_page_paging(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([dynamic("dyn")]) as system:
        addresses = await start_counters(system, "dyn", 25)
        pages: list[TreePage] = []
        offset: int | None = 0
        while offset is not None:
            page = system.tree_page("dyn", offset=offset, limit=10)
            pages.append(page)
            offset = page.next_offset
        assert [(p.offset, len(p.children), p.total, p.next_offset) for p in pages] == [
            (0, 10, 25, 10),
            (10, 10, 25, 20),
            (20, 5, 25, None),
        ]
        for page in pages:
            assert page.supervisor.address == "dyn"
            assert page.supervisor.children == 25
            assert all(c.kind == "Counter" and c.status == "running" for c in page.children)
        assert [c.address for p in pages for c in p.children] == addresses  # in start order

        past = system.tree_page("dyn", offset=25, limit=10)
        assert (past.children, past.total, past.next_offset) == ([], 25, None)
        exact = system.tree_page("dyn", offset=15, limit=10)
        assert [c.address for c in exact.children] == addresses[15:25]
        assert exact.next_offset is None


async def test_tree_page_of_root_and_of_a_worker(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([ChildSpec("a", Counter), ChildSpec("b", Counter)]) as system:
        page = system.tree_page()
        assert page.supervisor.address == str(ROOT)
        assert [c.address for c in page.children] == ["a", "b"]
        assert (page.offset, page.total, page.next_offset) == (0, 2, None)

        worker = system.tree_page("a")
        assert worker.supervisor.address == "a"
        assert worker.supervisor.supervisor is False
        assert (worker.children, worker.total, worker.next_offset) == ([], 0, None)


async def test_walk_tree_visits_every_supervisor_and_child_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def outer() -> Supervisor:
        return Supervisor(
            [ChildSpec("x", Counter), group_of("inner", "z"), ChildSpec("y", Counter)]
        )

    specs = [
        ChildSpec("echo", Counter),
        ChildSpec("group", outer, shutdown=math.inf),
        dynamic("dyn"),
    ]
    async with actors.open_system(specs) as system:
        await start_counters(system, "dyn", 25)
        pages = [page async for page in system.walk_tree(page_size=10)]

        # Breadth first, each supervisor's pages in order.
        assert [(p.supervisor.address, p.offset) for p in pages] == [
            (str(ROOT), 0),
            ("group", 0),
            ("dyn", 0),
            ("dyn", 10),
            ("dyn", 20),
            ("group/inner", 0),
        ]
        assert all(p.supervisor.supervisor for p in pages)
        supervisors = {p.supervisor.address for p in pages}
        assert supervisors == {str(ROOT), "group", "group/inner", "dyn"}

        visited = collections.Counter(c.address for p in pages for c in p.children)
        assert all(n == 1 for n in visited.values()), visited.most_common(3)
        every_actor = [a for a in system.registry.addresses() if a]
        assert sorted(visited) == every_actor
        assert len(visited) == 1 + 5 + 1 + 25  # echo; group, x, inner, z, y; dyn; 25 workers


async def test_snapshot_addresses_resolve_back_to_their_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    specs = [ChildSpec(f"c{i}", Counter) for i in range(3)] + [dynamic("dyn")]
    async with actors.open_system(specs) as system:
        await start_counters(system, "dyn", 3)
        root_page = system.tree_page(limit=2)
        assert root_page.next_offset == 2
        # An operator pages on with the address the page itself reports (the root's too).
        rest = system.tree_page(root_page.supervisor.address, offset=2, limit=2)
        assert [c.address for c in rest.children] == ["c2", "dyn"]
        async for page in system.walk_tree():
            for snap in [page.supervisor, *page.children]:
                assert system.snapshot(snap.address).address == snap.address
