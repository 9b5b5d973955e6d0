"""The API on a real socket, backed by :class:`MemoryService`, the test's database and Redis.

``api_server(store)`` serves ``create_app()`` with ``mount_api`` on a free port (hypercorn's
trio worker, as in production) and yields an :class:`ApiServer`: an httpx client on it, the
in-memory service, the token signer, a settable clock, and helpers for auth headers.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import orjson
import trio

from ops.metrics import Metrics
from switch.api import Admission, Api, Role, TokenSigner, mount_api
from switch.http import PROBLEM_JSON, create_app, serve_http
from switch.store import Database, OrderUpdates, Store
from tests.switch.api.memory_service import MemoryService

START = 1_795_000_000.0  # 2026-11-18, whole seconds so token times are exact


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class ApiServer:
    url: str
    client: httpx.AsyncClient
    service: MemoryService
    signer: TokenSigner
    clock: Clock
    api: Api
    updates: OrderUpdates

    def token(self, subject: str, role: Role, *stations: str, ttl_s: int = 3600) -> str:
        return self.signer.issue(subject, role, stations=stations, ttl_s=ttl_s, now=self.clock())

    def customer(self, subject: str = "c1", *, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(subject, Role.CUSTOMER)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def staff(self, subject: str, *stations: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, Role.STAFF, *stations)}"}


@asynccontextmanager
async def api_server(
    store: Store,
    *,
    db: Database | None = None,
    updates: OrderUpdates | None = None,
    keepalive_s: float = 15.0,
    poll_s: float = 2.0,
    admission: Admission | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[ApiServer]:
    service = MemoryService()
    signer = TokenSigner(secrets.token_bytes(32))
    clock = Clock()
    updates = OrderUpdates(store.redis) if updates is None else updates
    app = create_app(metrics=metrics)
    api = mount_api(
        app,
        service=service,
        signer=signer,
        db=store.db if db is None else db,
        updates=updates,
        clock=clock,
        keepalive_s=keepalive_s,
        poll_s=poll_s,
        admission=admission,
        metrics=metrics,
    )
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(serve_http, app, "127.0.0.1", 0, shutdown=shutdown))
        try:
            async with httpx.AsyncClient(base_url=bound.url, timeout=30.0) as client:
                yield ApiServer(bound.url, client, service, signer, clock, api, updates)
        finally:
            shutdown.set()


def new_key() -> str:
    return secrets.token_hex(16)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> Any:
    """The problem document, after checking the status, media type and (if given) type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    document = orjson.loads(response.content)
    assert document["status"] == status
    assert isinstance(document["detail"], str) and document["detail"]
    if code is not None:
        assert document["type"] == f"/problems/{code}"
    return document


ORDER_BODY: dict[str, Any] = {
    "station_id": "s001",
    "pump_no": 2,
    "preset_kind": "amount",
    "preset_value": 20000,
    "method": "wechatpay",
    "payer_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
}
