"""Schema migrations on fresh databases: applied in order with checksums, idempotent,
serialised between concurrent runs, changed files detected, a broken run rolled back as a
whole; and the schema has the tables and unique keys the switch relies on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from importlib import resources

import pytest
import trio

from switch.store import (
    Database,
    Migration,
    MigrationError,
    MigrationStatus,
    QueryError,
    ServerUrls,
    UniqueViolation,
    load_migrations,
    migrate,
    open_database,
    status,
)
from tests.storage import create_database, drop_database, unique_name


@pytest.fixture
def fresh_url(servers: ServerUrls, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of this test's own (not migrated), dropped afterwards."""
    name = unique_name(f"mig_{request.node.name.removeprefix('test_')}")
    url = create_database(servers.database_url, name, migrated=False)
    yield url
    drop_database(servers.database_url, name)


async def recorded(db: Database) -> list[tuple[int, str, str]]:
    rows = await db.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return [(r["version"], r["name"], r["checksum"]) for r in rows]


async def table_exists(db: Database, name: str) -> bool:
    return bool(await db.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


def edited(m: Migration, sql: str) -> Migration:
    return Migration(m.version, m.name, sql)


# -- the files -------------------------------------------------------------------------------


def test_load_migrations_reads_the_files_in_number_order() -> None:
    files = sorted(
        entry.name
        for entry in resources.files("switch.store").joinpath("migrations").iterdir()
        if entry.name.endswith(".sql")
    )
    migrations = load_migrations()
    assert [f"{m.version:04d}_{m.name}.sql" for m in migrations] == files
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].version == 1
    for m in migrations:
        text = (
            resources.files("switch.store")
            .joinpath("migrations", f"{m.version:04d}_{m.name}.sql")
            .read_text(encoding="utf-8")
        )
        assert m.sql == text
        assert m.checksum == hashlib.sha256(text.encode()).hexdigest()


# -- applying ------------------------------------------------------------------------------


async def test_migrate_applies_all_in_order_and_records_checksums(fresh_url: str) -> None:
    migrations = load_migrations()
    async with open_database(fresh_url) as db:
        before = await status(db)
        assert before == [MigrationStatus(m.version, m.name, None, False) for m in migrations]
        assert not await table_exists(db, "schema_migrations")
        assert not await table_exists(db, "grades")

        applied = await migrate(db)

        assert applied == migrations
        assert await recorded(db) == [(m.version, m.name, m.checksum) for m in migrations]
        after = await status(db)
        assert [(s.version, s.name, s.changed) for s in after] == [
            (m.version, m.name, False) for m in migrations
        ]
        assert all(s.applied_at is not None for s in after)
        assert await table_exists(db, "grades")
        assert await table_exists(db, "journal")


async def test_migrations_run_in_list_order(fresh_url: str) -> None:
    """Each migration sees what the earlier ones created (one depends on the one before)."""
    chain = [
        Migration(1, "base", "CREATE TABLE base (id integer PRIMARY KEY)"),
        Migration(2, "child", "CREATE TABLE child (id integer REFERENCES base (id))"),
        Migration(3, "column", "ALTER TABLE child ADD COLUMN note text"),
    ]
    async with open_database(fresh_url) as db:
        assert await migrate(db, chain) == chain
        assert [v for v, _, _ in await recorded(db)] == [1, 2, 3]
        assert (
            await db.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'child'"
            )
            == 2
        )


async def test_rerunning_applies_nothing(fresh_url: str) -> None:
    async with open_database(fresh_url) as db:
        assert await migrate(db) == load_migrations()
        first = await status(db)
        assert await migrate(db) == []
        assert await migrate(db) == []
        assert await status(db) == first  # same applied_at: nothing re-applied


async def test_only_pending_migrations_are_applied(fresh_url: str) -> None:
    migrations = load_migrations()
    extra = Migration(
        migrations[-1].version + 1, "probe", "ALTER TABLE grades ADD COLUMN probe integer"
    )
    async with open_database(fresh_url) as db:
        assert await migrate(db, migrations[:1]) == migrations[:1]
        assert [s.applied_at is not None for s in await status(db)] == [True] + [False] * (
            len(migrations) - 1
        )
        assert await migrate(db, [*migrations, extra]) == [*migrations[1:], extra]
        assert await recorded(db) == [(m.version, m.name, m.checksum) for m in [*migrations, extra]]


async def test_concurrent_migrations_apply_once(fresh_url: str) -> None:
    migrations = load_migrations()
    results: list[list[Migration]] = []

    async def run() -> None:
        async with open_database(fresh_url, max_size=2) as db:
            results.append(await migrate(db))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(run)

    assert sorted(results, key=len) == [[], migrations]
    async with open_database(fresh_url) as db:
        assert await recorded(db) == [(m.version, m.name, m.checksum) for m in migrations]
        counts = await db.fetch(
            "SELECT version, count(*) AS n FROM schema_migrations GROUP BY version"
        )
        assert {r["version"]: r["n"] for r in counts} == {m.version: 1 for m in migrations}


# -- disagreement and failure ----------------------------------------------------------------


async def test_changed_migration_is_detected(fresh_url: str) -> None:
    migrations = load_migrations()
    changed = [edited(migrations[0], migrations[0].sql + "\n-- edited afterwards\n")]
    changed += migrations[1:]
    extra = Migration(migrations[-1].version + 1, "later", "CREATE TABLE later (x integer)")
    async with open_database(fresh_url) as db:
        await migrate(db)
        before = await recorded(db)

        with pytest.raises(MigrationError, match=f"{migrations[0].version:04d}"):
            await migrate(db, changed)
        with pytest.raises(MigrationError):
            await migrate(db, [*changed, extra])  # nothing pending is applied either

        assert await recorded(db) == before
        assert not await table_exists(db, "later")
        report = await status(db, changed)
        assert [s.changed for s in report] == [True] + [False] * (len(migrations) - 1)
        assert all(s.applied_at is not None for s in report)
        assert [s.changed for s in await status(db)] == [False] * len(migrations)


async def test_broken_migration_rolls_back_the_whole_run(fresh_url: str) -> None:
    migrations = load_migrations()
    broken = Migration(
        migrations[-1].version + 1,
        "broken",
        "CREATE TABLE half_done (x integer);\nINSERT INTO half_done VALUES (1);\nSELEC broken;",
    )
    async with open_database(fresh_url) as db:
        # A first run on an empty database: not even schema_migrations is left behind.
        with pytest.raises(QueryError) as info:
            await migrate(db, [*migrations, broken])
        assert info.value.sqlstate == "42601"
        assert not await table_exists(db, "schema_migrations")
        assert not await table_exists(db, "grades")
        assert not await table_exists(db, "half_done")

        # A later run: what that run applied before the broken one is rolled back too.
        await migrate(db, migrations[:1])
        with pytest.raises(QueryError):
            await migrate(db, [*migrations, broken])
        assert await recorded(db) == [(m.version, m.name, m.checksum) for m in migrations[:1]]
        assert await table_exists(db, "grades")
        assert not await table_exists(db, "journal")
        assert not await table_exists(db, "half_done")

        assert await migrate(db) == migrations[1:]  # and the good ones still apply


# -- the schema ------------------------------------------------------------------------------

TABLES = {
    "stations",
    "pumps",
    "nozzles",
    "grades",
    "price_sets",
    "price_set_items",
    "orders",
    "payment_attempts",
    "pump_sales",
    "callback_inbox",
    "api_idempotency_keys",
    "audit_log",
    "journal",
    "journal_streams",
}
_INDEX_COLUMNS = re.compile(r"USING \w+ \(([^)]*)\)(?: WHERE (.*))?$")


async def unique_keys(db: Database, table: str) -> set[tuple[tuple[str, ...], str | None]]:
    """The table's unique indexes (primary keys included): (columns, partial predicate)."""
    keys = set()
    for r in await db.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1", table
    ):
        definition: str = r["indexdef"]
        if not definition.startswith("CREATE UNIQUE INDEX"):
            continue
        match = _INDEX_COLUMNS.search(definition)
        assert match is not None, definition
        columns = tuple(c.strip().strip('"') for c in match[1].split(","))
        keys.add((columns, match[2]))
    return keys


async def test_schema_has_the_tables(database_url: str) -> None:
    async with open_database(database_url) as db:
        rows = await db.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        assert {r["table_name"] for r in rows} >= TABLES | {"schema_migrations"}
        assert (
            await db.fetchval(
                "SELECT count(*) FROM information_schema.routines "
                "WHERE routine_schema = 'public' AND routine_name = 'journal_append'"
            )
            == 1
        )


async def test_schema_unique_keys(database_url: str) -> None:
    async with open_database(database_url) as db:
        payment_keys = await unique_keys(db, "payment_attempts")
        assert (("idempotency_key",), None) in payment_keys
        assert (("order_id", "attempt_no", "operation"), None) in payment_keys
        assert (("provider", "event_id", "status"), None) in await unique_keys(db, "callback_inbox")
        assert (("stream_id", "seq"), None) in await unique_keys(db, "journal")
        assert (("position",), None) in await unique_keys(db, "journal")
        assert (("stream_id",), None) in await unique_keys(db, "journal_streams")
        assert (("principal", "key"), None) in await unique_keys(db, "api_idempotency_keys")
        assert (("station_id", "pump_no", "token"), None) in await unique_keys(db, "pump_sales")
        assert (("station_id",), "(status = 'applied'::text)") in await unique_keys(
            db, "price_sets"
        )
        primary = await db.fetch(
            "SELECT tc.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position)"
            " AS columns"
            " FROM information_schema.table_constraints tc"
            " JOIN information_schema.key_column_usage k"
            "   ON k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name"
            " WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'"
            " GROUP BY tc.table_name"
        )
        keys = {r["table_name"]: tuple(r["columns"]) for r in primary}
        assert keys["journal"] == ("stream_id", "seq")
        assert keys["pumps"] == ("station_id", "pump_no")
        assert keys["nozzles"] == ("station_id", "pump_no", "nozzle_no")
        assert keys["price_set_items"] == ("price_set_id", "grade_code")


async def duplicate_refused(db: Database, sql: str, *args: object) -> UniqueViolation:
    """Run an INSERT twice: the first succeeds, the second hits a unique key."""
    await db.execute(sql, *args)
    with pytest.raises(UniqueViolation) as info:
        await db.execute(sql, *args)
    assert info.value.sqlstate == "23505"
    return info.value


async def test_schema_refuses_duplicates(database_url: str) -> None:
    async with open_database(database_url) as db:
        await db.execute(
            "INSERT INTO stations (id, name, lat_e6, lon_e6) VALUES ('s1', 'One', 31230000, "
            "121470000)"
        )
        await db.execute(
            "INSERT INTO orders (id, customer_id, station_id, pump_no, flow, state)"
            " VALUES ('o1', 'c1', 's1', 1, 'prepay', 'created')"
        )

        attempt = (
            "INSERT INTO payment_attempts"
            " (id, order_id, attempt_no, channel, provider, operation, idempotency_key,"
            "  amount_fen) VALUES ($1, 'o1', $2, 'wx-main', 'wechatpay', 'hold', $3, 100)"
        )
        await duplicate_refused(db, attempt, "o1-1", 1, "key-1")  # same id, key, attempt
        # Another attempt under the same idempotency key is refused.
        with pytest.raises(UniqueViolation) as info:
            await db.execute(attempt, "o1-2", 2, "key-1")
        assert info.value.detail is not None
        assert "idempotency_key" in info.value.detail

        inbox = (
            "INSERT INTO callback_inbox (provider, event_id, status, body)"
            " VALUES ('alipay', 'ev-1', $1, '\\x00'::bytea)"
        )
        await duplicate_refused(db, inbox, "TRADE_SUCCESS")
        await db.execute(inbox, "TRADE_CLOSED")  # same event, another status: a new row
        assert await db.fetchval("SELECT count(*) FROM callback_inbox") == 2

        journal = (
            "INSERT INTO journal (stream_id, seq, type, payload)"
            " VALUES ('order:o1', $1, 'created', '{}'::jsonb)"
        )
        await duplicate_refused(db, journal, 1)
        await db.execute(journal, 2)
        assert await db.fetchval("SELECT max(seq) FROM journal WHERE stream_id = 'order:o1'") == 2

        await duplicate_refused(
            db,
            "INSERT INTO api_idempotency_keys (principal, key, request_hash, expires_at)"
            " VALUES ('customer:1', 'k', '\\x01'::bytea, now() + interval '1 day')",
        )

        price_set = (
            "INSERT INTO price_sets (station_id, status, created_by) VALUES ('s1', $1, 'staff:1')"
        )
        await db.execute(price_set, "draft")
        await db.execute(price_set, "draft")  # any number of drafts
        await duplicate_refused(db, price_set, "applied")  # at most one in force
