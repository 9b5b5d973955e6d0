"""Fixtures of the end-to-end tests: one :class:`World` per test module (its simulators and
config; the module's own database), and per test an HTTP client and the pump control."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from switch.store import ServerUrls

from .client import PumpSim
from .harness import World


@pytest.fixture(scope="module")
def world(database_url: str, servers: ServerUrls) -> Iterator[World]:
    started = World(database_url, servers.redis_url).start()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def pumps(world: World) -> PumpSim:
    return PumpSim(world.pumps.control_port)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as client:
        yield client
