"""``Database.atomic``: a whole transaction run on the store's loop (commit, rollback on the
function's own error, on a query error and on cancellation, errors unchanged), and pooled
connections given back without a reset query but with no transaction left open."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from switch.store import Store, UniqueViolation, connect_once
from switch.store.bridge import Transaction
from tests.storage import unique_name
from tests.store.test_bridge import OUR_OPEN_TRANSACTIONS, OUR_SLEEPS, Boom, new_table, settled


async def _insert(tx: Transaction, table: str, *rows: tuple[int, str]) -> int:
    for row_id, note in rows:
        await tx.execute(f"INSERT INTO {table} VALUES ($1, $2)", row_id, note)
    count: int = await tx.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def _insert_then_fail(tx: Transaction, table: str) -> None:
    await tx.execute(f"INSERT INTO {table} VALUES (1, 'lost')")
    raise Boom("the function's own error")


async def _insert_then_sleep(tx: Transaction, table: str, started: list[bool]) -> None:
    await tx.execute(f"INSERT INTO {table} VALUES (1, 'lost')")
    started.append(True)
    await tx.execute("SELECT pg_sleep(10)")


async def test_atomic_commits_and_returns_the_result(store: Store) -> None:
    table = await new_table(store.db, "atomic_commit")
    assert await store.db.atomic(_insert, table, (1, "a"), (2, "b")) == 2
    rows = await store.db.fetch(f"SELECT id, note FROM {table} ORDER BY id")
    assert [(r["id"], r["note"]) for r in rows] == [(1, "a"), (2, "b")]


async def test_atomic_isolation_level(store: Store) -> None:
    async def level(tx: Transaction) -> str:
        value: str = await tx.fetchval("SHOW transaction_isolation")
        return value

    assert await store.db.atomic(level) == "read committed"
    assert await store.db.atomic(level, isolation="serializable") == "serializable"


async def test_atomic_rolls_back_and_raises_the_functions_own_error(store: Store) -> None:
    table = await new_table(store.db, "atomic_boom")
    with pytest.raises(Boom, match="own error"):
        await store.db.atomic(_insert_then_fail, table)
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await settled(store.db, OUR_OPEN_TRANSACTIONS) == 0


async def test_atomic_maps_query_errors_and_rolls_back(store: Store) -> None:
    table = await new_table(store.db, "atomic_unique")
    with pytest.raises(UniqueViolation):
        await store.db.atomic(_insert, table, (1, "lost"), (1, "duplicate"))
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await store.db.atomic(_insert, table, (1, "kept")) == 1


async def test_atomic_rolls_back_on_cancellation(store: Store) -> None:
    table = await new_table(store.db, "atomic_cancel")
    started: list[bool] = []
    with trio.move_on_after(0.3) as scope:
        await store.db.atomic(_insert_then_sleep, table, started)
        pytest.fail("the transaction was not cancelled")
    assert scope.cancelled_caught
    assert started == [True]
    assert await settled(store.db, OUR_SLEEPS) == 0, "the pg_sleep was not cancelled"
    assert await settled(store.db, OUR_OPEN_TRANSACTIONS) == 0, "a transaction was left open"
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await store.db.atomic(_insert, table, (2, "kept")) == 1


async def test_pooled_connections_are_released_without_a_reset_query(
    store: Store, database_url: str
) -> None:
    """The pool gives a connection back as it is (no ``RESET ALL`` after each query: the
    switch keeps no session state), so the last statement its server process ran is the
    caller's own; and never inside a transaction."""
    marker = unique_name("released")
    await store.db.execute(f"SELECT 1 AS {marker}")
    last = await connect_once(
        database_url,
        "SELECT array_agg(query) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'fuelswitch' AND state = 'idle'",
    )
    assert f"SELECT 1 AS {marker}" in last
    assert not any("RESET ALL" in q for q in last)
    assert await settled(store.db, OUR_OPEN_TRANSACTIONS) == 0


async def test_the_database_keeps_its_smoothed_call_time(store: Store) -> None:
    """What admission control reads: every call moves the average, none is left in flight."""
    assert store.db.calls_in_flight() == 0
    before = store.db.latency_s()
    for _ in range(20):
        await store.db.fetchval("SELECT pg_sleep(0.01)")
    assert store.db.latency_s() > before
    assert store.db.latency_s() > 0.0
    assert store.db.calls_in_flight() == 0


async def test_a_storm_of_cancelled_calls_leaves_every_connection_in_the_pool(
    store: Store,
) -> None:
    """Callers cancelled at every point (waiting for a connection, mid-statement, inside a
    transaction) must give every connection back: a pool that leaks them ends with every
    database call waiting for ever while PostgreSQL is idle."""
    db = store.db

    async def one(i: int) -> None:
        with trio.move_on_after(0.001 * (i % 13)):
            if i % 3 == 0:
                await db.fetchval("SELECT pg_sleep(0.005)")
            elif i % 3 == 1:
                async with db.transaction() as tx:
                    await tx.fetchval("SELECT pg_sleep(0.005)")
            else:
                await db.atomic(_sleep_in, 0.005)

    async with trio.open_nursery() as nursery:
        for i in range(300):
            nursery.start_soon(one, i)
    with trio.fail_after(10):
        while db.statistics()["idle"] < db.statistics()["size"]:  # noqa: ASYNC110
            await trio.sleep(0.01)  # a connection given back after its acquire completes
    assert await db.fetchval("SELECT 1") == 1
    assert db.calls_in_flight() == 0


async def _sleep_in(tx: Transaction, seconds: float) -> None:
    await tx.fetchval("SELECT pg_sleep($1)", seconds)


async def test_a_dedicated_pool_answers_while_the_shared_one_is_full(store: Store) -> None:
    """The journal writer's own connections: a shared pool busy with slow calls does not
    make it wait."""
    db = store.db
    size = db.statistics()["max_size"]
    release = trio.Event()

    async def hold() -> None:
        async with db.transaction() as tx:
            await tx.fetchval("SELECT 1")
            await release.wait()

    async with db.dedicated(max_size=1) as own, trio.open_nursery() as nursery:
        for _ in range(size):
            nursery.start_soon(hold)
        with trio.fail_after(10):
            while db.statistics()["idle"] > 0 or db.statistics()["size"] < size:  # noqa: ASYNC110
                await trio.sleep(0.01)
        with trio.fail_after(5):
            assert await own.fetchval("SELECT 41 + 1") == 42
        release.set()
    assert await db.fetchval("SELECT 1") == 1


async def test_asyncio_callbacks_queued_together_run_in_one_turn_of_trio(store: Store) -> None:
    """The store's loop runs what is ready at once: a database call's callbacks do not each
    wait for a whole round of the process's runnable tasks."""
    loop = store.db._bridge.loop
    ran: list[int] = []
    for i in range(50):
        loop.call_soon(ran.append, i)
    with trio.fail_after(5):
        while not ran:
            await trio.lowlevel.checkpoint()
    for _ in range(3):
        await trio.lowlevel.checkpoint()  # a turn or two of slack for the loop task itself
    assert ran == list(range(50))
