from __future__ import annotations

from switch.store import Store


async def test_store_reaches_both_servers(store: Store) -> None:
    assert await store.db.fetchval("SELECT count(*) FROM schema_migrations") >= 2
    assert await store.redis.ping()
