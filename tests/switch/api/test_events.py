"""Order updates as server-sent events: Redis pub/sub live, polling when Redis is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import trio

from switch.api import order_view_to_json
from switch.api.models import OrderOut
from switch.store import OrderUpdates, Store, open_store
from tests.switch.api.harness import ORDER_BODY, ApiServer, api_server, assert_problem, new_key


async def _frames(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """``("order", view)`` per event and ``("comment", text)`` per comment line."""
    event, data = "", ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
        elif line == "" and event:
            yield event, orjson.loads(data)
            event, data = "", ""


async def _all_closed(server: ApiServer) -> dict[str, int]:
    """The stream counters once the server has finished its side of every stream (the client
    may see the end of a stream just before the server's cleanup after it)."""
    with trio.fail_after(5):
        await server.api.streams.wait_idle()
    return server.api.streams.statistics()


async def _order(server: ApiServer) -> str:
    created = await server.client.post(
        "/v1/orders", json=ORDER_BODY, headers=server.customer(key=new_key())
    )
    order_id: str = created.json()["id"]
    return order_id


async def test_the_stream_sends_the_order_then_every_update_until_terminal(store: Store) -> None:
    async with api_server(store) as server:
        order_id = await _order(server)
        url = f"/v1/orders/{order_id}/events"
        seen: list[dict[str, Any]] = []
        async with server.client.stream("GET", url, headers=server.customer()) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            frames = _frames(response)
            async for kind, view in frames:
                assert kind == "order"
                seen.append(view)
                if len(seen) == 1:  # subscribed before this was read: publish now
                    held = server.service.update(order_id, state="held")
                    await server.updates.publish(order_id, order_view_to_json(held))
                    done = server.service.complete(order_id, 18_000)
                    await server.updates.publish(order_id, order_view_to_json(done))
        assert [v["state"] for v in seen] == ["holding", "held", "completed"]
        assert seen[-1]["terminal"] is True and seen[-1]["captured_fen"] == 18_000
        for view in seen:
            OrderOut.model_validate(view)
        assert (await _all_closed(server))["events"] == 3


async def test_an_idle_stream_sends_keepalives(store: Store) -> None:
    async with api_server(store, keepalive_s=0.05) as server:
        order_id = await _order(server)
        url = f"/v1/orders/{order_id}/events"
        kinds: list[str] = []
        async with server.client.stream("GET", url, headers=server.customer()) as response:
            async for kind, _ in _frames(response):
                kinds.append(kind)
                if kinds.count("comment") == 2:
                    view = server.service.update(order_id, state="failed", terminal=True)
                    await server.updates.publish(order_id, order_view_to_json(view))
        assert kinds[0] == "order" and kinds[-1] == "order"
        assert kinds.count("comment") >= 2
        assert (await _all_closed(server))["keepalives"] >= 2


async def test_a_terminal_order_is_one_event_and_strangers_get_404(store: Store) -> None:
    async with api_server(store) as server:
        order_id = await _order(server)
        server.service.complete(order_id, 20_000)
        response = await server.client.get(
            f"/v1/orders/{order_id}/events", headers=server.customer()
        )
        assert response.status_code == 200
        assert response.text.count("event: order") == 1
        assert '"terminal":true' in response.text
        stranger = await server.client.get(
            f"/v1/orders/{order_id}/events", headers=server.customer("c2")
        )
        assert_problem(stranger, 404, "not-found")
        assert (await _all_closed(server))["started"] == 1


async def test_without_redis_the_stream_polls_the_switch(database_url: str, store: Store) -> None:
    # Port 1 refuses connections: subscribing fails, so the stream falls back to polling.
    async with open_store(database_url, "redis://127.0.0.1:1/0", namespace="none:") as broken:
        updates = OrderUpdates(broken.redis, timeout_s=2.0)
        async with api_server(store, updates=updates, poll_s=0.02) as server:
            order_id = await _order(server)
            url = f"/v1/orders/{order_id}/events"
            states: list[str] = []
            async with server.client.stream("GET", url, headers=server.customer()) as response:
                async for _, view in _frames(response):
                    states.append(view["state"])
                    if len(states) == 1:
                        server.service.update(order_id, state="authorized")
                    elif view["state"] == "authorized":
                        server.service.complete(order_id, 9_000)
            assert states == ["holding", "authorized", "completed"]
            assert (await _all_closed(server))["polling"] == 1


async def test_a_client_that_leaves_ends_its_stream_and_subscription(store: Store) -> None:
    async with api_server(store) as server:
        order_id = await _order(server)
        url = f"/v1/orders/{order_id}/events"
        async with server.client.stream("GET", url, headers=server.customer()) as response:
            async for kind, _ in _frames(response):
                assert kind == "order"
                assert await server.updates.publish(order_id, {"state": "probe"}) == 1
                break
        assert (await _all_closed(server))["started"] == 1
        view = order_view_to_json(server.service.orders[order_id])
        assert await server.updates.publish(order_id, view) == 0  # nobody listens any more


async def test_an_update_nobody_published_still_reaches_the_stream(store: Store) -> None:
    # A publisher that skipped the order (it saw no subscriber yet, e.g. in another process)
    # sends nothing: the stream's own re-read after poll_s brings the change.
    async with api_server(store, poll_s=0.05) as server:
        order_id = await _order(server)
        url = f"/v1/orders/{order_id}/events"
        seen: list[dict[str, Any]] = []
        async with server.client.stream("GET", url, headers=server.customer()) as response:
            async for kind, view in _frames(response):
                assert kind == "order"
                seen.append(view)
                if len(seen) == 1:
                    server.service.complete(order_id, 18_000)  # no publish
        assert [v["state"] for v in seen] == ["holding", "completed"]
        assert (await _all_closed(server))["polling"] == 0  # still subscribed throughout
