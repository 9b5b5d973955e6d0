"""Real servers for the tests: one session-wide pair, a fresh database per test module.

The same mechanism as the switch: ``FUELSWITCH_DATABASE_URL`` / ``FUELSWITCH_REDIS_URL``
when set, otherwise the embedded servers under ``$FUELSWITCH_HOME`` (default ``./var``).
These helpers are synchronous so that session- and module-scoped fixtures can use them.
"""

from __future__ import annotations

import re
import secrets

import trio

from switch.store import admin, migrate, open_database
from switch.store.admin import database_url_for

__all__ = ["create_database", "database_url_for", "drop_database", "unique_name"]


def unique_name(prefix: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40]
    return f"t_{cleaned}_{secrets.token_hex(4)}"


def create_database(server_url: str, name: str, *, migrated: bool = True) -> str:
    async def create() -> str:
        url = await admin.create_database(server_url, name)
        if migrated:
            async with open_database(url) as db:
                await migrate(db)
        return url

    return trio.run(create)


def drop_database(server_url: str, name: str) -> None:
    trio.run(admin.drop_database, server_url, name)
