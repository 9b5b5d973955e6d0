"""The journal against a real PostgreSQL: durability, group commit, conflicts, outages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from actors import ActorSystem, Backoff, open_system
from switch.store import (
    ConflictError,
    EmbeddedPostgres,
    QueryError,
    Store,
    StoreUnavailable,
    migrate,
    open_database,
)
from switch.store.journal import Event, Journal, journal_writer_spec

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def journal_for(
    store: Store, *, max_inflight: int = 2
) -> AsyncIterator[tuple[ActorSystem, Journal]]:
    spec = journal_writer_spec(store.db, max_inflight=max_inflight)
    async with open_system([spec], intensity=20, period=5.0) as system:
        yield system, Journal(system, store.db)


async def test_append_then_load_round_trip(store: Store) -> None:
    async with journal_for(store) as (_, journal):
        assert (
            await journal.append("order:a1", [Event("created", {"fen": 30000})], expected_seq=0)
            == 1
        )
        head = await journal.append(
            "order:a1",
            [Event("held", {"fen": 30000, "channel": "wx"}), Event("authorized", {"token": 7})],
            expected_seq=1,
        )
        assert head == 3
        events = await journal.load("order:a1")
        assert [(e.seq, e.type) for e in events] == [(1, "created"), (2, "held"), (3, "authorized")]
        assert events[1].payload == {"fen": 30000, "channel": "wx"}
        assert isinstance(events[0].payload["fen"], int)
        assert [e.seq for e in await journal.load("order:a1", after_seq=1)] == [2, 3]
        stream = await journal.head("order:a1")
        assert stream is not None
        assert (stream.kind, stream.last_seq, stream.terminal) == ("order", 3, False)
        assert await journal.head("order:none") is None


async def test_a_stale_expected_seq_is_a_conflict_and_writes_nothing(store: Store) -> None:
    async with journal_for(store) as (_, journal):
        await journal.append("order:c1", [Event("created", {})], expected_seq=0)
        with pytest.raises(ConflictError) as excinfo:
            await journal.append("order:c1", [Event("second writer", {})], expected_seq=0)
        assert (excinfo.value.expected, excinfo.value.actual) == (0, 1)
        with pytest.raises(ConflictError):  # ahead of the head would leave a gap: refused too
            await journal.append("order:c1", [Event("gap", {})], expected_seq=5)
        assert [e.type for e in await journal.load("order:c1")] == ["created"]


async def test_a_conflict_fails_only_its_own_append_in_a_batch(store: Store) -> None:
    async with journal_for(store, max_inflight=1) as (system, journal):
        await journal.append("order:x", [Event("created", {})], expected_seq=0)
        results: dict[str, object] = {}

        async def append(stream: str, expected: int) -> None:
            try:
                results[stream] = await journal.append(
                    stream, [Event("e", {})], expected_seq=expected
                )
            except ConflictError as exc:
                results[stream] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, "order:x", 0)  # stale
            for i in range(20):
                nursery.start_soon(append, f"order:ok{i}", 0)
        assert isinstance(results.pop("order:x"), ConflictError)
        assert set(results.values()) == {1}
        assert system.snapshot("journal").state["conflicts"] == 1


async def test_expected_seq_none_appends_at_the_head(store: Store) -> None:
    async with journal_for(store) as (_, journal):
        assert await journal.append("audit:n1", [Event("a", {})], expected_seq=None) == 1
        assert (
            await journal.append("audit:n1", [Event("b", {}), Event("c", {})], expected_seq=None)
            == 3
        )

        async def one(k: int) -> None:
            await journal.append("audit:n1", [Event("concurrent", {"k": k})], expected_seq=None)

        async with trio.open_nursery() as nursery:
            for k in range(10):
                nursery.start_soon(one, k)
        events = await journal.load("audit:n1")
        assert [e.seq for e in events] == list(range(1, 14))
        assert sorted(e.payload["k"] for e in events[3:]) == list(range(10))


async def test_concurrent_appends_are_group_committed(store: Store) -> None:
    async with journal_for(store) as (system, journal):
        heads: dict[int, int] = {}

        async def stream(i: int) -> None:
            seq = 0
            for k in range(3):
                seq = await journal.append(
                    f"pump_sale:g{i}", [Event("tick", {"k": k})], expected_seq=seq
                )
            heads[i] = seq

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(stream, i)
        state = system.snapshot("journal").state
        assert state["events"] == 600
        assert state["batches"] < 600 / 4  # many appends share a commit
        assert state["max_batch"] > 10
        assert set(heads.values()) == {3}
        count = await store.db.fetchval(
            "SELECT count(*) FROM journal WHERE stream_id LIKE 'pump_sale:g%'"
        )
        assert count == 600


async def test_terminal_streams_leave_the_open_list(store: Store) -> None:
    async with journal_for(store) as (_, journal):
        await journal.append("order:t1", [Event("created", {})], expected_seq=0)
        await journal.append("order:t2", [Event("created", {})], expected_seq=0)
        await journal.append("pump_sale:t3", [Event("auth_requested", {})], expected_seq=0)
        await journal.append("order:t2", [Event("settled", {})], expected_seq=1, terminal=True)
        open_orders = [
            s.stream_id
            for s in await journal.open_streams("order")
            if s.stream_id.endswith(("t1", "t2"))
        ]
        assert open_orders == ["order:t1"]
        assert "pump_sale:t3" in [s.stream_id for s in await journal.open_streams()]
        assert all(s.kind == "pump_sale" for s in await journal.open_streams("pump_sale"))


async def test_bad_appends_are_refused_before_the_writer(store: Store) -> None:
    async with journal_for(store) as (system, journal):
        for stream in ("nokind", "Order:1", "order:", "order:a b", ":x", "x" * 40 + ":1"):
            with pytest.raises(ValueError, match="stream id"):
                await journal.append(stream, [Event("e", {})], expected_seq=0)
        with pytest.raises(ValueError, match="at least one"):
            await journal.append("order:e1", [], expected_seq=0)
        with pytest.raises(ValueError, match="expected_seq"):
            await journal.append("order:e1", [Event("e", {})], expected_seq=-1)
        with pytest.raises(TypeError):
            await journal.append("order:e1", [Event("e", {"amount": object()})], expected_seq=0)
        assert system.snapshot("journal").mailbox.processed == 0


async def test_a_failed_batch_fails_every_waiter_and_the_writer_goes_on(store: Store) -> None:
    await store.db.execute(
        "ALTER TABLE journal ADD CONSTRAINT test_no_poison CHECK (NOT payload ? 'poison')"
    )
    try:
        async with journal_for(store, max_inflight=1) as (system, journal):
            outcomes: dict[str, object] = {}

            async def append(stream: str, payload: dict[str, int]) -> None:
                try:
                    outcomes[stream] = await journal.append(
                        stream, [Event("e", payload)], expected_seq=0
                    )
                except QueryError as exc:
                    outcomes[stream] = exc

            # Hold the writer's only commit slot so the next appends form one batch.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(append, "order:p0", {})
                await trio.lowlevel.checkpoint()
                nursery.start_soon(append, "order:p1", {"poison": 1})
                for i in range(2, 6):
                    nursery.start_soon(append, f"order:p{i}", {})
            failed = [s for s, o in outcomes.items() if isinstance(o, QueryError)]
            assert "order:p1" in failed
            # Whatever shared the poisoned commit failed with it; nothing it held was written.
            for stream in failed:
                assert await journal.load(stream) == []
            for stream, outcome in outcomes.items():
                if stream not in failed:
                    assert outcome == 1
                    assert len(await journal.load(stream)) == 1
            assert await journal.append("order:p9", [Event("after", {})], expected_seq=0) == 1
            assert system.snapshot("journal").incarnation == 1
    finally:
        await store.db.execute("ALTER TABLE journal DROP CONSTRAINT test_no_poison")


async def test_a_graceful_stop_flushes_what_was_accepted(store: Store) -> None:
    acknowledged: list[str] = []
    failed: list[str] = []
    async with journal_for(store) as (system, journal):

        async def append(i: int) -> None:
            try:
                await journal.append(f"order:f{i}", [Event("e", {})], expected_seq=0)
            except Exception:
                failed.append(f"order:f{i}")
            else:
                acknowledged.append(f"order:f{i}")

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(append, i)
            await trio.lowlevel.checkpoint()
            await system.terminate_child("/", "journal")
    assert len(acknowledged) + len(failed) == 100
    written = {
        r["stream_id"]
        for r in await store.db.fetch(
            "SELECT stream_id FROM journal WHERE stream_id LIKE 'order:f%'"
        )
    }
    assert set(acknowledged) <= written
    assert acknowledged  # the writer flushed what it had accepted before stopping


WRITER_SCRIPT = """
import sys, trio
from actors import open_system
from switch.store import open_database
from switch.store.journal import Event, Journal, journal_writer_spec

async def main(url):
    async with open_database(url) as db, open_system([journal_writer_spec(db)]) as system:
        journal = Journal(system, db)
        heads = [0] * 20
        async def stream(i):
            while True:
                heads[i] = await journal.append(f"kill:{i}", [Event("e", {"n": heads[i] + 1})],
                                                expected_seq=heads[i])
                print(f"ack kill:{i} {heads[i]}", flush=True)
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(stream, i)

trio.run(main, sys.argv[1])
"""


def test_sigkill_mid_run_loses_nothing_acknowledged(database_url: str) -> None:
    """Kill the writing process at an arbitrary point: every acknowledged append is in the
    database, every stream is gap-free, and a new writer carries on from the heads."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, database_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    for line in proc.stdout:
        _, stream, seq = line.split()
        acked[stream] = int(seq)
        if sum(acked.values()) >= 400:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # acknowledgements already in the pipe count too
        _, stream, seq = line.split()
        acked[stream] = max(acked.get(stream, 0), int(seq))

    async def check() -> None:
        async with open_database(database_url) as db:
            rows = await db.fetch(
                "SELECT stream_id, array_agg(seq ORDER BY seq) AS seqs FROM journal "
                "WHERE stream_id LIKE 'kill:%' GROUP BY stream_id"
            )
            durable = {r["stream_id"]: list(r["seqs"]) for r in rows}
            for stream, seq in acked.items():
                assert durable[stream][-1] >= seq
            for seqs in durable.values():
                assert seqs == list(range(1, len(seqs) + 1))
            registered = {
                r["stream_id"]
                for r in await db.fetch(
                    "SELECT stream_id FROM journal_streams WHERE kind = 'kill' AND NOT terminal"
                )
            }
            assert registered == set(durable)

    trio.run(check)


@pytest.fixture
def outage_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedPostgres, int]]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("outage") / "pg")
    port = pg.start()
    yield pg, port
    pg.stop()


async def test_postgres_outage_fails_callers_restarts_writer_and_recovers(
    outage_postgres: tuple[EmbeddedPostgres, int],
) -> None:
    pg, port = outage_postgres
    url = EmbeddedPostgres.url(port)
    async with open_database(url, max_size=4) as db:
        await migrate(db)
        spec = journal_writer_spec(db, backoff=Backoff(min_delay=0.05, max_delay=0.2, jitter=0))
        async with open_system([spec], intensity=1000, period=1.0) as system:
            journal = Journal(system, db)
            assert await journal.append("order:o1", [Event("before", {})], expected_seq=0) == 1

            await trio.to_thread.run_sync(pg.stop)
            with pytest.raises(StoreUnavailable):
                await journal.append("order:o1", [Event("during", {})], expected_seq=1)

            await trio.to_thread.run_sync(pg.start)
            head = 1
            with trio.fail_after(30):
                while True:
                    try:
                        head = await journal.append(
                            "order:o1", [Event("after", {})], expected_seq=1
                        )
                        break
                    except StoreUnavailable:
                        await trio.sleep(0.1)
            assert head == 2
            assert system.snapshot("journal").restarts >= 1
            assert [e.type for e in await journal.load("order:o1")] == ["before", "after"]


async def test_two_writers_on_one_stream_never_both_win(store: Store) -> None:
    """Two switch processes' writers (two systems here) racing for the same heads: each seq
    is written once, the loser gets ConflictError, and the stream has no gap."""
    wins = {"a": 0, "b": 0}
    conflicts = {"a": 0, "b": 0}
    async with journal_for(store) as (_, first), journal_for(store) as (_, second):

        async def race(name: str, journal: Journal) -> None:
            for _ in range(40):
                head = await journal.head("order:race")
                expected = 0 if head is None else head.last_seq
                try:
                    await journal.append("order:race", [Event(name, {})], expected_seq=expected)
                except ConflictError:
                    conflicts[name] += 1
                else:
                    wins[name] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(race, "a", first)
            nursery.start_soon(race, "b", second)
    events = await first.load("order:race")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == wins["a"] + wins["b"]
    assert sum(conflicts.values()) > 0
