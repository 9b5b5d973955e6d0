"""Idempotency-Key over HTTP on the real ``api_idempotency_keys`` table."""

from __future__ import annotations

import httpx
import orjson
import trio

from switch.api import IDEMPOTENCY_HEADER, REPLAYED_HEADER
from switch.api.idempotency import Claim, IdempotencyStore
from switch.store import ServerUrls, Store, open_store
from tests.switch.api.harness import ORDER_BODY, ApiServer, api_server, assert_problem, new_key


async def _rows(store: Store, key: str) -> list[dict[str, object]]:
    rows = await store.db.fetch(
        "SELECT principal, status FROM api_idempotency_keys WHERE key = $1", key
    )
    return [dict(row) for row in rows]


async def test_a_retry_gets_the_first_answer_again(store: Store) -> None:
    async with api_server(store) as server:
        key = new_key()
        first = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert first.status_code == 201
        assert REPLAYED_HEADER.lower() not in first.headers
        # The same request with its fields in another order is the same request.
        reordered = orjson.dumps(dict(reversed(list(ORDER_BODY.items()))))
        headers = server.customer(key=key) | {"content-type": "application/json"}
        again = await server.client.post("/v1/orders", content=reordered, headers=headers)
        assert again.status_code == 201
        assert again.headers[REPLAYED_HEADER] == "true"
        assert again.content == first.content
        assert again.headers["location"] == first.headers["location"]
        assert server.service.calls["create_order"] == 1
        assert await _rows(store, key) == [{"principal": "customer:c1", "status": 201}]
        # Keys belong to their principal: another customer's same key is another request.
        other = await server.client.post(
            "/v1/orders", json=ORDER_BODY | {"pump_no": 3}, headers=server.customer("c2", key=key)
        )
        assert other.status_code == 201 and other.json()["customer_id"] == "c2"
        stats = server.api.statistics()["idempotency"]
        assert stats["replayed"] == 1 and stats["claimed"] == 2 and stats["stored"] == 2


async def test_a_used_key_for_another_request_is_refused(store: Store) -> None:
    async with api_server(store) as server:
        key = new_key()
        headers = server.customer(key=key)
        assert (
            await server.client.post("/v1/orders", json=ORDER_BODY, headers=headers)
        ).status_code == 201
        changed = ORDER_BODY | {"preset_value": 30000}
        reused = await server.client.post("/v1/orders", json=changed, headers=headers)
        assert_problem(reused, 422, "idempotency-key-reused")
        elsewhere = await server.client.post(
            "/v1/stations/s001/pumps/1/pay", json={"method": "alipay"}, headers=headers
        )
        assert_problem(elsewhere, 422, "idempotency-key-reused")
        assert server.service.calls["create_order"] == 1
        assert server.service.calls["pay_pump_sale"] == 0


async def test_a_retry_while_the_first_runs_is_a_conflict(store: Store) -> None:
    async with api_server(store) as server:
        key = new_key()
        server.service.gate = trio.Event()
        results: list[httpx.Response] = []

        async def first() -> None:
            response = await server.client.post(
                "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
            )
            results.append(response)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await server.service.entered.wait()
            retry = await server.client.post(
                "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
            )
            assert_problem(retry, 409, "idempotency-request-in-progress")
            assert await _rows(store, key) == [{"principal": "customer:c1", "status": None}]
            server.service.gate.set()
        assert [r.status_code for r in results] == [201]
        replay = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert replay.headers[REPLAYED_HEADER] == "true" and replay.content == results[0].content


async def test_faults_are_not_stored_and_refusals_are(store: Store) -> None:
    async with api_server(store) as server:
        service = server.service
        key = new_key()
        service.fail_next = True
        crashed = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert_problem(crashed, 500)
        assert await _rows(store, key) == []
        service.unavailable = True
        unavailable = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert_problem(unavailable, 503, "unavailable")
        assert await _rows(store, key) == []
        service.unavailable = False
        retried = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert retried.status_code == 201 and REPLAYED_HEADER.lower() not in retried.headers
        assert service.calls["create_order"] == 3
        # A refusal is an answer: the pump is now busy, and asking again says so again
        # without asking the switch (even once the pump is free).
        busy_key = new_key()
        busy = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer("c2", key=busy_key)
        )
        assert_problem(busy, 409, "pump-busy")
        service.stations["s001"].pumps[2].current_order = None
        again = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer("c2", key=busy_key)
        )
        assert_problem(again, 409, "pump-busy")
        assert again.headers[REPLAYED_HEADER] == "true"
        assert service.calls["create_order"] == 4


async def test_keys_are_required_and_well_formed(store: Store) -> None:
    async with api_server(store) as server:
        missing = await server.client.post("/v1/orders", json=ORDER_BODY, headers=server.customer())
        assert (
            IDEMPOTENCY_HEADER in assert_problem(missing, 428, "idempotency-key-required")["detail"]
        )
        bad = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key="x" * 256)
        )
        assert_problem(bad, 400, "idempotency-key-invalid")
        refund = await server.client.post(
            "/v1/orders/O0000000000000001/refunds",
            json={"amount_fen": 100, "reason": "pump overcharged"},
            headers=server.customer(),
        )
        assert_problem(refund, 428, "idempotency-key-required")
        assert server.service.calls.total() == 0


async def test_an_expired_key_may_be_used_again(store: Store) -> None:
    async with api_server(store) as server:
        key = new_key()
        await server.client.post("/v1/orders", json=ORDER_BODY, headers=server.customer(key=key))
        server.clock.now += 24 * 3600
        changed = ORDER_BODY | {"pump_no": 4}
        fresh = await server.client.post(
            "/v1/orders", json=changed, headers=server.customer(key=key)
        )
        assert fresh.status_code == 201 and fresh.json()["pump_no"] == 4
        assert server.service.calls["create_order"] == 2
        assert await _rows(store, key) == [{"principal": "customer:c1", "status": 201}]
        server.clock.now += 24 * 3600
        assert await server.api.idempotency.purge() >= 1
        assert await _rows(store, key) == []


async def _race(server: ApiServer, key: str) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def post() -> None:
        responses.append(
            await server.client.post(
                "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
            )
        )

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(post)
    return responses


async def test_concurrent_first_requests_run_the_operation_once(store: Store) -> None:
    async with api_server(store) as server:
        key = new_key()
        responses = await _race(server, key)
        assert server.service.calls["create_order"] == 1
        created = [r for r in responses if r.status_code == 201]
        assert created and all(r.content == created[0].content for r in created)
        for response in responses:
            if response.status_code != 201:
                assert_problem(response, 409, "idempotency-request-in-progress")


async def test_without_the_key_store_nothing_runs(servers: ServerUrls, store: Store) -> None:
    # Port 1 refuses connections; min_size=0 so the pool connects only when asked.
    unreachable = "postgresql://fuelswitch@127.0.0.1:1/none"
    async with (
        open_store(unreachable, servers.redis_url, min_size=0) as broken,
        api_server(store, db=broken.db) as server,
    ):
        response = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=new_key())
        )
        assert_problem(response, 503, "unavailable")
        assert response.headers["retry-after"] == "2"
        assert server.service.calls.total() == 0


async def test_keys_claimed_before_a_restart_are_known(
    store: Store,
) -> None:
    """What admission control asks before it sheds a request: answered from memory, the
    last minutes' keys read once from the table (a retry across a restart still counts)."""
    before = IdempotencyStore(store.db)
    key = new_key()
    assert isinstance(await before.claim("customer:c1", key, b"fp"), Claim)
    assert await before.key_taken(key)
    after = IdempotencyStore(store.db)  # a new process
    assert await after.key_taken(key)
    assert not await after.key_taken(new_key())
