"""Test-wide setup: quiet runtime logs, and real PostgreSQL/Valkey servers for storage tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from switch.config import Settings
from switch.store import ServerUrls, Store, open_store, server_urls
from tests.storage import create_database, drop_database, unique_name

structlog.configure(
    wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
    cache_logger_on_first_use=False,
)


@pytest.fixture(scope="session")
def servers() -> Iterator[ServerUrls]:
    """One pair of servers for the session: the configured URLs, or the embedded servers."""
    settings = Settings.from_env()
    with server_urls(settings.home, settings.database_url, settings.redis_url) as urls:
        yield urls


@pytest.fixture(scope="module")
def database_url(servers: ServerUrls, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for this test module, dropped afterwards."""
    name = unique_name(request.module.__name__.rsplit(".", 1)[-1])
    url = create_database(servers.database_url, name)
    yield url
    drop_database(servers.database_url, name)


@pytest.fixture
async def store(
    database_url: str, servers: ServerUrls, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """The module's database and a Redis namespace of this test's own."""
    namespace = f"test:{unique_name(request.node.name)}:"
    async with open_store(database_url, servers.redis_url, namespace=namespace) as opened:
        yield opened
        await opened.redis.flush_namespace()
