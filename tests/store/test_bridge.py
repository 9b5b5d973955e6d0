"""The trio-asyncio bridge: query methods, transactions (commit, rollback on error and on
cancellation), cancelling slow queries, the mapping of asyncpg/redis errors to the
store's own, and that nothing but the bridge imports asyncio, asyncpg or redis."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncpg
import pytest
import redis.exceptions
import trio

from switch.store import (
    CacheError,
    Database,
    QueryError,
    ServerUrls,
    Store,
    StoreError,
    StoreUnavailable,
    UniqueViolation,
    connect_once,
    open_database,
    open_store,
)
from tests.storage import unique_name

ROOT = Path(__file__).resolve().parents[2]
REFUSED_PG = "postgresql://postgres@127.0.0.1:1/x"
REFUSED_REDIS = "redis://127.0.0.1:1/0"


class Boom(Exception):
    pass


async def new_table(db: Database, prefix: str) -> str:
    name = unique_name(prefix)
    await db.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, note text)")
    return name


async def settled(db: Database, sql: str, *args: object) -> int:
    """The value of a count query once it reaches 0 (cancellation reaches the server
    asynchronously); the last value seen if it never does within a few seconds."""
    count: int = -1
    for _ in range(250):  # a few seconds: far less than the pg_sleep(10) being cancelled
        count = await db.fetchval(sql, *args)
        if count == 0:
            break
        await trio.sleep(0.02)
    return count


OUR_SLEEPS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND state = 'active' AND query LIKE '%pg_sleep(%'
"""
OUR_OPEN_TRANSACTIONS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND state LIKE 'idle in transaction%'
"""


# -- query methods -------------------------------------------------------------------------


async def test_query_methods(store: Store) -> None:
    db = store.db
    table = unique_name("items")
    assert await db.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, note text)") == (
        "CREATE TABLE"
    )
    assert await db.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "one") == "INSERT 0 1"
    await db.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(2, "two"), (3, "three")])
    copied = await db.copy_records(table, [(4, "four"), (5, None)], columns=["id", "note"])
    assert copied == "COPY 2"

    rows = await db.fetch(f"SELECT id, note FROM {table} ORDER BY id")
    assert [(r["id"], r["note"]) for r in rows] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "four"),
        (5, None),
    ]
    assert await db.fetch(f"SELECT * FROM {table} WHERE id > $1", 99) == []

    row = await db.fetchrow(f"SELECT id, note FROM {table} WHERE id = $1", 3)
    assert row is not None
    assert dict(row) == {"id": 3, "note": "three"}
    assert await db.fetchrow(f"SELECT * FROM {table} WHERE id = $1", 99) is None

    assert await db.fetchval(f"SELECT count(*) FROM {table}") == 5
    assert await db.fetchval(f"SELECT note FROM {table} WHERE id = $1", 99) is None
    assert await db.execute(f"UPDATE {table} SET note = upper(note)") == "UPDATE 5"
    assert await db.execute(f"DELETE FROM {table} WHERE id >= $1", 4) == "DELETE 2"


async def test_query_methods_on_a_transaction(store: Store) -> None:
    table = await new_table(store.db, "tx_items")
    async with store.db.transaction() as tx:
        assert await tx.execute(f"INSERT INTO {table} VALUES (1, 'a')") == "INSERT 0 1"
        await tx.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(2, "b"), (3, "c")])
        assert await tx.copy_records(table, [(4, "d")], columns=["id", "note"]) == "COPY 1"
        assert [r["id"] for r in await tx.fetch(f"SELECT id FROM {table} ORDER BY id")] == [
            1,
            2,
            3,
            4,
        ]
        row = await tx.fetchrow(f"SELECT note FROM {table} WHERE id = 4")
        assert row is not None
        assert row["note"] == "d"
        assert await tx.fetchval(f"SELECT count(*) FROM {table}") == 4
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 4


# -- transactions ----------------------------------------------------------------------------


async def test_transaction_commits(store: Store) -> None:
    table = await new_table(store.db, "commit")
    async with store.db.transaction() as tx:
        await tx.execute(f"INSERT INTO {table} VALUES (1, 'kept')")
        # Not visible outside the transaction before it commits.
        assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await store.db.fetchval(f"SELECT note FROM {table} WHERE id = 1") == "kept"


async def test_transaction_isolation_level(store: Store) -> None:
    async with store.db.transaction(isolation="serializable") as tx:
        assert await tx.fetchval("SHOW transaction_isolation") == "serializable"
    async with store.db.transaction() as tx:
        assert await tx.fetchval("SHOW transaction_isolation") == "read committed"


async def test_transaction_rolls_back_on_exception(store: Store) -> None:
    table = await new_table(store.db, "rollback")
    with pytest.raises(Boom):
        async with store.db.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'lost')")
            raise Boom
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await settled(store.db, OUR_OPEN_TRANSACTIONS) == 0


async def test_transaction_rolls_back_on_query_error(store: Store) -> None:
    table = await new_table(store.db, "rollback_err")
    with pytest.raises(UniqueViolation):
        async with store.db.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'lost')")
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'duplicate')")
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await store.db.fetchval("SELECT 1") == 1


async def test_transaction_rolls_back_on_cancellation(store: Store) -> None:
    table = await new_table(store.db, "rollback_cancel")
    reached_sleep = False
    with trio.move_on_after(0.2) as scope:
        async with store.db.transaction() as tx:
            await tx.execute(f"INSERT INTO {table} VALUES (1, 'lost')")
            reached_sleep = True
            await tx.execute("SELECT pg_sleep(10)")
        pytest.fail("the transaction was not cancelled")
    assert scope.cancelled_caught
    assert reached_sleep
    assert await store.db.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await settled(store.db, OUR_SLEEPS) == 0, "the pg_sleep was not cancelled"
    assert await settled(store.db, OUR_OPEN_TRANSACTIONS) == 0, "a transaction was left open"
    # The connection went back to the pool in a usable state.
    async with store.db.transaction() as tx:
        await tx.execute(f"INSERT INTO {table} VALUES (2, 'kept')")
    assert await store.db.fetchval(f"SELECT note FROM {table}") == "kept"


# -- cancellation --------------------------------------------------------------------------


async def test_cancelling_a_slow_query(store: Store) -> None:
    db = store.db
    with trio.move_on_after(0.2) as scope:
        await db.fetchval("SELECT pg_sleep(10)")
        pytest.fail("the query was not cancelled")
    assert scope.cancelled_caught
    assert await settled(db, OUR_SLEEPS) == 0, "the pg_sleep still runs on the server"

    # The pool is still usable, sequentially and with every connection at once.
    for i in range(5):
        assert await db.fetchval("SELECT $1::int", i) == i
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await db.fetchval("SELECT $1::int FROM pg_sleep(0.05)", i)

    async with trio.open_nursery() as nursery:
        for i in range(db.statistics()["max_size"]):
            nursery.start_soon(one, i)
    assert results == {i: i for i in range(db.statistics()["max_size"])}


# -- error mapping ---------------------------------------------------------------------------


def assert_own_error(err: BaseException, cause: type[BaseException]) -> None:
    """A store error (from switch.store.errors), the library's original chained as the cause."""
    assert type(err).__module__ == "switch.store.errors"
    assert isinstance(err, StoreError)
    assert not isinstance(err, asyncpg.PostgresError | asyncpg.InterfaceError)
    assert not isinstance(err, redis.exceptions.RedisError)
    assert isinstance(err.__cause__, cause), repr(err.__cause__)


async def test_unique_violation(store: Store) -> None:
    table = await new_table(store.db, "unique")
    await store.db.execute(f"INSERT INTO {table} VALUES (1, 'first')")
    with pytest.raises(UniqueViolation) as info:
        await store.db.execute(f"INSERT INTO {table} VALUES (1, 'second')")
    err = info.value
    assert isinstance(err, QueryError)
    assert err.sqlstate == "23505"
    assert err.detail is not None
    assert "(id)=(1)" in err.detail
    assert_own_error(err, asyncpg.UniqueViolationError)
    assert await store.db.fetchval(f"SELECT note FROM {table}") == "first"


async def test_syntax_error(store: Store) -> None:
    with pytest.raises(QueryError) as info:
        await store.db.fetch("SELEC 1")
    err = info.value
    assert not isinstance(err, UniqueViolation)
    assert err.sqlstate == "42601"
    assert "syntax error" in str(err)
    assert_own_error(err, asyncpg.PostgresSyntaxError)


async def test_other_constraint_errors_are_query_errors(store: Store) -> None:
    with pytest.raises(QueryError) as info:
        await store.db.execute(
            "INSERT INTO grades (code, name, fuel) VALUES ('x', 'X', 'kerosene')"
        )
    assert not isinstance(info.value, UniqueViolation)
    assert info.value.sqlstate == "23514"  # check_violation
    assert_own_error(info.value, asyncpg.CheckViolationError)


async def test_refused_database_connection_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable) as info:
        async with open_database(REFUSED_PG):
            pytest.fail("opened a database on a refused port")
    assert_own_error(info.value, OSError)

    with pytest.raises(StoreUnavailable) as info:
        async with open_store(REFUSED_PG, REFUSED_REDIS):
            pytest.fail("opened a store on a refused port")
    assert_own_error(info.value, OSError)


async def test_errors_leave_connect_once_and_open_database_unwrapped(database_url: str) -> None:
    """The store's errors reach the caller as themselves, not inside an ExceptionGroup

    (trio_asyncio.open_loop runs the body inside nurseries)."""
    with pytest.raises(QueryError) as info:
        await connect_once(database_url, "SELEC 1")
    assert info.value.sqlstate == "42601"
    with pytest.raises(StoreUnavailable):
        await connect_once(REFUSED_PG, "SELECT 1")
    with pytest.raises(QueryError):
        async with open_database(database_url) as db:
            await db.fetch("SELEC 1")


async def test_refused_redis_is_unavailable_on_first_command(
    store: Store, database_url: str
) -> None:
    async with open_store(database_url, REFUSED_REDIS, namespace="refused:") as refused:
        assert await refused.db.fetchval("SELECT 1") == 1
        with pytest.raises(StoreUnavailable) as info:
            await refused.redis.ping()
        assert_own_error(info.value, redis.exceptions.ConnectionError)
        with pytest.raises(StoreUnavailable):
            await refused.redis.set("k", b"v")


async def test_redis_command_error_is_cache_error(store: Store) -> None:
    await store.redis.set("not-a-number", b"abc")
    with pytest.raises(CacheError) as info:
        await store.redis.incr_window("not-a-number", 10)
    assert not isinstance(info.value, StoreUnavailable)
    assert_own_error(info.value, redis.exceptions.ResponseError)
    assert await store.redis.ping()


# -- the asyncio boundary --------------------------------------------------------------------

PACKAGES = ("switch", "actors", "channels", "devices", "ops", "loadtest")
ASYNCIO_LIBRARIES = {"asyncio", "asyncpg", "redis"}


def asyncio_imports(path: Path) -> set[str]:
    """The asyncio libraries a module imports (anywhere in it, not only at the top)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in ASYNCIO_LIBRARIES)
    return found


def test_only_the_bridge_imports_asyncio_asyncpg_or_redis() -> None:
    sources = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(sources) > 20  # the scan does see the source tree
    offenders = {
        str(p.relative_to(ROOT)): sorted(found)
        for p in sources
        if (found := asyncio_imports(p)) and p != ROOT / "switch" / "store" / "bridge.py"
    }
    assert offenders == {}
    # ... and it would notice them: the bridge itself imports all three.
    assert asyncio_imports(ROOT / "switch" / "store" / "bridge.py") == ASYNCIO_LIBRARIES


async def test_a_message_published_right_after_subscribe_is_received(store: Store) -> None:
    for i in range(20):
        subscription = await store.redis.subscribe(f"race{i}")
        try:
            assert await store.redis.publish(f"race{i}", b"now") == 1
            with trio.fail_after(5):
                assert await subscription.__anext__() == (f"race{i}", b"now")
        finally:
            await subscription.aclose()


async def test_iteration_ends_after_aclose(store: Store) -> None:
    subscription = await store.redis.subscribe("closing")
    await subscription.aclose()
    await subscription.aclose()  # idempotent
    assert [m async for m in subscription] == []


async def test_set_refuses_a_ttl_that_is_not_positive(store: Store) -> None:
    for ttl in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ttl_s"):
            await store.redis.set("k", b"v", ttl_s=ttl)


async def test_flush_namespace_treats_glob_characters_literally(
    store: Store, servers: ServerUrls, database_url: str
) -> None:
    async with (
        open_store(database_url, servers.redis_url, namespace="globtest:[ab]*:") as odd,
        open_store(database_url, servers.redis_url, namespace="globtest:a-other:") as other,
    ):
        await odd.redis.set("k", b"1")
        await other.redis.set("k", b"2")
        assert await odd.redis.flush_namespace() == 1
        assert await other.redis.get("k") == b"2"
        await other.redis.flush_namespace()
