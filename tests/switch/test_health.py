"""Readiness (``/readyz``) against the real PostgreSQL and Valkey and real ChannelActors (over a
scripted provider double): ready when everything answers; not ready, saying why, when Redis is
unreachable, the database does not answer in time, no channel may take a payment, or the switch
drains."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
import orjson
import trio

from actors import ActorSystem, ChildSpec, Supervisor, open_system
from channels.actor_messages import Disable
from channels.supervision import channel_spec
from ops.metrics import Metrics
from switch.health import Check, Readiness, ReadinessProbe
from switch.http import create_app, serve_http
from switch.store import ServerUrls, Store, open_store
from tests.channels.test_channel_actor import DoubleChannel, config

SAFE = 30.0  # a bound for what must happen, never a measurement


@asynccontextmanager
async def channel_system(names: Sequence[str]) -> AsyncIterator[ActorSystem]:
    specs = [channel_spec(config(name), make_channel=lambda _: DoubleChannel()) for name in names]
    async with open_system([ChildSpec("channels", lambda: Supervisor(specs))]) as system:
        yield system


async def test_ready_when_everything_answers_and_one_channel_is_eligible(store: Store) -> None:
    async with channel_system(["wx-main", "ali-main"]) as system:
        await system.call("channels/ali-main", Disable("maintenance"))
        probe = ReadinessProbe(store.db, store.redis, system, ["wx-main", "ali-main"])
        answer = await probe()
    assert answer.ready and answer.failed == []
    assert answer.to_dict() == {
        "status": "ready",
        "checks": {
            "database": {"ok": True, "detail": "answers"},
            "redis": {"ok": True, "detail": "answers"},
            "channels": {
                "ok": True,
                "detail": "1 of 2 eligible for new payments",
                "channels": {"wx-main": "eligible", "ali-main": "disabled (maintenance)"},
            },
            "draining": {"ok": True, "detail": "taking orders"},
        },
    }


async def test_no_eligible_channel_means_not_ready(store: Store) -> None:
    async with channel_system(["wx-main"]) as system:
        await system.call("channels/wx-main", Disable())
        probe = ReadinessProbe(store.db, store.redis, system, ["wx-main", "gone"])
        answer = await probe()
        nothing = await ReadinessProbe(store.db, store.redis, system, [])()
    assert not answer.ready and answer.failed == ["channels"]
    channels = answer.checks["channels"]
    assert channels.detail == "0 of 2 eligible for new payments"
    assert channels.data["channels"] == {
        "wx-main": "disabled (operator)",
        "gone": "unreachable (ActorNotFound)",
    }
    assert nothing.failed == ["channels"]
    assert nothing.checks["channels"].detail == "no payment channel is configured"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_redis_is_named(database_url: str) -> None:
    dead_redis = f"redis://127.0.0.1:{_closed_port()}/0"
    async with (
        open_store(database_url, dead_redis) as store,
        channel_system(["wx-main"]) as system,
    ):
        answer = await ReadinessProbe(store.db, store.redis, system, ["wx-main"])()
    assert answer.failed == ["redis"]
    assert answer.checks["redis"].detail.startswith("StoreUnavailable: Redis unavailable")
    assert answer.checks["database"].ok


async def test_a_database_that_does_not_answer_in_time_is_not_ready(
    database_url: str, servers: ServerUrls
) -> None:
    """Every connection of the pool is taken (a long transaction): SELECT 1 waits for one."""
    async with (
        open_store(database_url, servers.redis_url, max_size=1) as store,
        channel_system(["wx-main"]) as system,
        trio.open_nursery() as nursery,
    ):
        release = trio.Event()
        holding = trio.Event()

        async def hold_the_only_connection() -> None:
            async with store.db.transaction():
                holding.set()
                await release.wait()

        nursery.start_soon(hold_the_only_connection)
        with trio.fail_after(SAFE):
            await holding.wait()
        probe = ReadinessProbe(store.db, store.redis, system, ["wx-main"], timeout_s=0.2)
        answer = await probe()
        release.set()
        assert (await probe()).ready  # the connection is back
    assert answer.failed == ["database"]
    assert answer.checks["database"] == Check(False, "no answer within 0.2 s")


async def test_readyz_answers_200_or_503_with_the_checks(store: Store) -> None:
    draining = False
    async with channel_system(["wx-main"]) as system:
        probe = ReadinessProbe(store.db, store.redis, system, ["wx-main"], lambda: draining)
        app = create_app(metrics=Metrics(), readiness=probe)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_http, app)
            async with httpx.AsyncClient(base_url=bound.url, timeout=SAFE) as client:
                ready = await client.get("/readyz")
                draining = True
                drained = await client.get("/readyz")
                healthy = await client.get("/healthz")
            nursery.cancel_scope.cancel()
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/json"
    assert ready.headers["cache-control"] == "no-store"
    assert ready.json()["status"] == "ready"
    assert set(ready.json()["checks"]) == {"database", "redis", "channels", "draining"}
    assert drained.status_code == 503
    body = orjson.loads(drained.content)
    assert body["status"] == "not_ready" and body["detail"] == "not ready: draining"
    assert body["checks"]["draining"] == {
        "ok": False,
        "detail": "draining: not taking new orders",
    }
    assert body["checks"]["database"]["ok"] and body["checks"]["channels"]["ok"]
    assert healthy.status_code == 200  # alive all the same: draining is not dying


async def test_without_a_probe_a_switch_that_answers_is_ready() -> None:
    app = create_app(metrics=Metrics())
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_http, app)
        async with httpx.AsyncClient(base_url=bound.url, timeout=SAFE) as client:
            answer = await client.get("/readyz")
        nursery.cancel_scope.cancel()
    assert answer.status_code == 200 and answer.json() == {"status": "ready", "checks": {}}


def test_readiness_is_ready_only_when_every_check_is() -> None:
    good, bad = Check(True, "answers"), Check(False, "down")
    assert Readiness({"a": good, "b": good}).ready
    mixed = Readiness({"a": good, "b": bad, "c": bad})
    assert not mixed.ready and mixed.failed == ["b", "c"]
    assert mixed.to_dict()["status"] == "not_ready"
