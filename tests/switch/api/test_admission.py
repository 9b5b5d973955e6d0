"""Admission control: the pure policy, the lag meter, and the gate over HTTP.

Over HTTP the gate counts the memory service's live orders against ``max_open=1``: a second
order is refused with 503 ``/problems/overloaded`` (nothing created, its Idempotency-Key not
claimed), reads and cancels still pass, and the same request with the same key succeeds once
the first order ended.
"""

from __future__ import annotations

import math

import orjson
import pytest
import trio
import trio.testing

from ops.metrics import Metrics
from switch.api import Admission, AdmissionLimits, LagMeter, Overload, decide
from switch.api.admission import smooth
from switch.api.shed_gate import is_order_creation
from switch.store import Store
from tests.switch.api.harness import ORDER_BODY, api_server, assert_problem, new_key


def test_under_both_bounds_is_admitted() -> None:
    assert decide(AdmissionLimits(max_open=10, max_lag_s=0.5), 9, 0.49) is None


def test_open_orders_at_the_bound_are_shed_first() -> None:
    shed = decide(AdmissionLimits(max_open=10, max_lag_s=0.5, retry_after_s=3), 10, 2.0)
    assert shed is not None
    assert (shed.reason, shed.value, shed.limit, shed.retry_after_s) == (
        Overload.OPEN_ORDERS,
        10,
        10,
        3,
    )
    assert "10 live orders" in shed.detail and "retry after 3 s" in shed.detail


def test_lag_over_the_bound_is_shed() -> None:
    shed = decide(AdmissionLimits(max_open=10, max_lag_s=0.5), 0, 0.75)
    assert shed is not None and shed.reason is Overload.LOOP_LAG
    assert "750 ms late" in shed.detail and "500 ms" in shed.detail


def test_creates_in_progress_at_the_bound_are_shed() -> None:
    limits = AdmissionLimits(max_open=10, max_creating=4, max_lag_s=0.5)
    assert decide(limits, 0, 0.0, creating=3) is None
    shed = decide(limits, 0, 0.0, creating=4)
    assert shed is not None and shed.reason is Overload.CREATING
    assert "4 orders are being created now" in shed.detail


def test_a_slow_database_is_shed() -> None:
    limits = AdmissionLimits(max_open=10, max_lag_s=0.5, max_store_s=0.25)
    assert decide(limits, 0, 0.0, store_s=0.2) is None
    shed = decide(limits, 0, 0.0, store_s=1.5)
    assert shed is not None and shed.reason is Overload.STORE_LATENCY
    assert "database calls take 1500 ms" in shed.detail and "250 ms" in shed.detail


def test_the_gate_reads_the_database_latency_it_is_given() -> None:
    latency = [0.0]
    gate = Admission(AdmissionLimits(max_store_s=0.1), lambda: 0, store_latency=lambda: latency[0])
    assert gate.check() is None
    gate.done()
    latency[0] = 0.4
    shed = gate.check()
    assert shed is not None and shed.reason is Overload.STORE_LATENCY
    assert gate.shed["store_latency"] == 1
    assert gate.statistics()["store_latency_ms"] == 400.0


def test_zero_disables_a_bound() -> None:
    off = AdmissionLimits(max_open=0, max_creating=0, max_lag_s=0.0, max_store_s=0.0)
    assert decide(off, 10**6, 60.0, creating=10**6, store_s=60.0) is None
    assert decide(AdmissionLimits(max_open=0, max_lag_s=0.5), 10**6, 0.1) is None


def test_smoothing_follows_a_step_without_jumping_to_it() -> None:
    value = 0.0
    seen = []
    for _ in range(10):
        value = smooth(value, 1.0, 0.3)
        seen.append(value)
    assert seen[0] == pytest.approx(0.3)
    assert seen == sorted(seen) and 0.95 < seen[-1] < 1.0


def test_the_meter_smooths_ticks_and_keeps_the_worst() -> None:
    meter = LagMeter(interval_s=0.05, alpha=0.5)
    meter.observe(0.2)
    meter.observe(-0.01)  # early is on time
    assert meter.lag_s == pytest.approx(0.05)
    assert meter.max_lag_s == pytest.approx(0.2)
    assert meter.ticks == 2
    with pytest.raises(ValueError):
        LagMeter(interval_s=0.0)
    with pytest.raises(ValueError):
        LagMeter(alpha=1.5)


async def test_the_meter_reads_no_lag_on_an_idle_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = LagMeter(interval_s=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(meter.run)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert meter.ticks >= 19
    assert meter.lag_s == 0.0


def test_the_gate_counts_what_it_sheds() -> None:
    live = [0]
    seen: list[Overload] = []
    gate = Admission(
        AdmissionLimits(max_open=2, max_creating=2), lambda: live[0], on_shed=seen.append
    )
    assert gate.check() is None
    assert gate.check() is None
    assert gate.creating == 2
    shed = gate.check()  # two creates under way
    assert shed is not None and shed.reason is Overload.CREATING
    gate.done()
    gate.done()
    live[0] = 2
    assert gate.check() is not None
    assert gate.shed == {"open_orders": 1, "creating": 1, "loop_lag": 0, "store_latency": 0}
    assert seen == [Overload.CREATING, Overload.OPEN_ORDERS]
    stats = gate.statistics()
    assert stats["admitted"] == 2 and stats["open_orders"] == 2 and stats["creating"] == 0
    assert not math.isnan(float(str(stats["loop_lag_ms"])))


async def test_over_max_open_a_new_order_is_503_overloaded_then_admitted_once_load_falls(
    store: Store,
) -> None:
    metrics = Metrics()
    gate = Admission(AdmissionLimits(max_open=1, max_lag_s=0.0), lambda: 0)
    async with api_server(store, admission=gate, metrics=metrics) as server:
        service = server.service

        def count_live() -> int:
            return sum(1 for view in service.orders.values() if not view.terminal)

        gate.open_orders = count_live  # the service is made by the harness
        first = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=new_key())
        )
        assert first.status_code == 201, first.text
        first_id = orjson.loads(first.content)["id"]

        key = new_key()
        second_body = ORDER_BODY | {"pump_no": 3}
        refused = await server.client.post(
            "/v1/orders", json=second_body, headers=server.customer(key=key)
        )
        document = assert_problem(refused, 503, "overloaded")
        assert document["reason"] == "open_orders"
        assert "1 live orders" in document["detail"]
        assert refused.headers["retry-after"] == "2"
        # Nothing was created and the key was never claimed: no row, in progress or not.
        assert service.calls["create_order"] == 1
        rows = await store.db.fetch("SELECT status FROM api_idempotency_keys WHERE key = $1", key)
        assert rows == []
        # Post-pay payments are new orders too: the customer is told when to come back.
        paid = await server.client.post(
            "/v1/stations/s001/pumps/4/pay",
            json={"method": "wechatpay", "payer_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            headers=server.customer(key=new_key()),
        )
        assert_problem(paid, 503, "overloaded")
        assert paid.headers["retry-after"] == "2"
        # Reads and cancels are never shed: they finish work already accepted.
        read = await server.client.get(f"/v1/orders/{first_id}", headers=server.customer())
        assert read.status_code == 200
        cancelled = await server.client.post(
            f"/v1/orders/{first_id}/cancel", headers=server.customer()
        )
        assert cancelled.status_code == 200, cancelled.text
        assert orjson.loads(cancelled.content)["terminal"] is True

        # Load fell: the same request with the same key now runs.
        again = await server.client.post(
            "/v1/orders", json=second_body, headers=server.customer(key=key)
        )
        assert again.status_code == 201, again.text
        assert "idempotent-replayed" not in again.headers
        assert service.calls["create_order"] == 2
        assert gate.shed == {"open_orders": 2, "creating": 0, "loop_lag": 0, "store_latency": 0}
        # Counted out when FastAPI closes the route's dependencies, just after the answer:
        # there is no event to wait on, so look again until it happened (bounded).
        with trio.fail_after(5):
            while gate.creating:  # noqa: ASYNC110
                await trio.sleep(0.01)
        scraped = (await server.client.get("/metrics")).text
        assert 'fuelswitch_orders_shed_total{reason="open_orders"} 2.0' in scraped
        assert "fuelswitch_open_orders 1.0" in scraped


async def test_a_retry_of_a_created_order_is_answered_from_the_key_store_even_when_full(
    store: Store,
) -> None:
    """The first create got through, its answer was lost; the retry with the same key meets a
    full switch. It must get the stored 201, not be told that nothing was created."""
    gate = Admission(AdmissionLimits(max_open=1, max_lag_s=0.0), lambda: 0)
    async with api_server(store, admission=gate, metrics=Metrics()) as server:
        service = server.service

        def count_live() -> int:
            return sum(1 for view in service.orders.values() if not view.terminal)

        gate.open_orders = count_live
        key = new_key()
        first = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert first.status_code == 201, first.text
        with trio.fail_after(5):
            while gate.creating:  # noqa: ASYNC110
                await trio.sleep(0.01)
        retried = await server.client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=key)
        )
        assert retried.status_code == 201, retried.text
        assert retried.headers.get("idempotent-replayed") == "true"
        assert orjson.loads(retried.content)["id"] == orjson.loads(first.content)["id"]
        assert service.calls["create_order"] == 1
        assert gate.shed == {"open_orders": 0, "creating": 0, "loop_lag": 0, "store_latency": 0}
        await _counted_out(gate)
        assert gate.creating == 0
        # A new key is still turned away.
        refused = await server.client.post(
            "/v1/orders", json=ORDER_BODY | {"pump_no": 3}, headers=server.customer(key=new_key())
        )
        assert_problem(refused, 503, "overloaded")
        assert gate.shed["open_orders"] == 1


def test_the_gate_in_front_of_the_framework_knows_which_requests_create_orders() -> None:
    assert is_order_creation("POST", "/v1/orders")
    assert is_order_creation("POST", "/v1/stations/s001/pumps/4/pay")
    assert not is_order_creation("GET", "/v1/orders")
    assert not is_order_creation("POST", "/v1/orders/O1/cancel")
    assert not is_order_creation("POST", "/v1/orders/O1/refunds")
    assert not is_order_creation("POST", "/callbacks/wechatpay")
    assert not is_order_creation("POST", "/v1/stations/s001/pumps/4/open")


async def _counted_out(gate: Admission) -> None:
    """Creates are counted out when FastAPI closes the route's dependencies, just after the
    answer: there is no event to wait on, so look again until it happened (bounded)."""
    with trio.fail_after(5):
        while gate.creating:  # noqa: ASYNC110
            await trio.sleep(0.01)
