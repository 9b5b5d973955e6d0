"""Real servers for the tests: one session-wide pair, a fresh database per test module.

The same mechanism as the switch: ``FUELSWITCH_DATABASE_URL`` / ``FUELSWITCH_REDIS_URL``
when set, otherwise the embedded servers under ``$FUELSWITCH_HOME`` (default ``./var``).
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit, urlunsplit

import trio

from switch.store import connect_once, migrate, open_database


def database_url_for(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


def unique_name(prefix: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40]
    return f"t_{cleaned}_{secrets.token_hex(4)}"


def create_database(server_url: str, name: str, *, migrated: bool = True) -> str:
    trio.run(connect_once, server_url, f'CREATE DATABASE "{name}"')
    url = database_url_for(server_url, name)
    if migrated:

        async def apply() -> None:
            async with open_database(url) as db:
                await migrate(db)

        trio.run(apply)
    return url


def drop_database(server_url: str, name: str) -> None:
    trio.run(connect_once, server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
