"""The customers against a stand-in switch over real sockets: a customer the switch turns
away (503 overloaded) is counted as shed and never retried; a switch that is starting up
gets the same Idempotency-Key again; a normal customer costs few requests."""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from loadtest.driver import Driver, open_loop
from loadtest.http_pool import HttpPool
from loadtest.schedule import Flow, PumpPool, plan_arrivals
from loadtest.standin import StandIn, serve_standin
from loadtest.stats import Recorder
from switch.demo.sims import PumpControl

SECRET = b"k" * 32
STATIONS = ["s001", "s002"]


@dataclass
class Rig:
    standin: StandIn
    driver: Driver
    pool: PumpPool
    recorder: Recorder


async def _run(
    nursery: trio.Nursery,
    standin: StandIn,
    *,
    arrivals: int,
    postpay_share: float = 0.0,
) -> Rig:
    """``arrivals`` customers, 20 a second, against ``standin``; returns when all are done."""
    url, port = await nursery.start(serve_standin, standin)
    control = PumpControl(port, dict(enumerate(STATIONS, start=1)))
    pool = PumpPool(STATIONS, 4, 2 if postpay_share else 0, seed=1)
    recorder = Recorder()
    http = HttpPool(url, size=8, timeout_s=10.0)
    driver = Driver(http, SECRET, [control], pool, recorder, speed=100.0, wall_t0=time.time())
    plan = plan_arrivals(20.0, arrivals / 20.0, seed=2, postpay_share=postpay_share, poisson=False)
    driver.trio_t0 = trio.current_time()
    async with trio.open_nursery() as customers:
        await open_loop(customers, plan, driver.trio_t0, driver.arrive)
    await control.aclose()
    await http.aclose()
    return Rig(standin, driver, pool, recorder)


async def test_overloaded_customers_are_shed_once_and_free_their_pump() -> None:
    async with trio.open_nursery() as nursery:
        rig = await _run(nursery, StandIn(shed_all=True), arrivals=5)
        nursery.cancel_scope.cancel()
    assert rig.recorder.arrived == 5
    assert rig.recorder.shed == 5 and rig.recorder.accepted == 0
    assert rig.recorder.completed == 0 and not rig.recorder.errors
    assert rig.recorder.outcomes == {"prepay:shed": 5}
    # one request per customer: no retry, and the nozzle was never lifted
    assert rig.standin.requests == {"POST create": 5}
    assert len(set(rig.standin.keys)) == 5
    assert rig.standin.control_calls == 0
    assert rig.driver.state.retries == 0
    assert rig.pool.free(Flow.PREPAY) == rig.pool.size[Flow.PREPAY]
    assert sum(w.shed for w in rig.recorder.windows.values()) == 5


async def test_a_post_pay_customer_turned_away_waits_and_pays() -> None:
    """The fuel is in the tank: an ``overloaded`` payment is tried again, not given up."""
    async with trio.open_nursery() as nursery:
        standin = StandIn(shed_first=2, sale_s=0.0)
        rig = await _run(nursery, standin, arrivals=1, postpay_share=1.0)
        nursery.cancel_scope.cancel()
    assert rig.recorder.outcomes == {"postpay:completed": 1}
    assert rig.recorder.shed == 0 and rig.recorder.accepted == 1
    assert len(standin.keys) == 3 and len(set(standin.keys)) == 1
    assert rig.driver.state.retries == 2
    assert not rig.recorder.errors


async def test_a_starting_switch_gets_the_same_key_again() -> None:
    async with trio.open_nursery() as nursery:
        standin = StandIn(unavailable_first=2, sale_s=0.0)
        rig = await _run(nursery, standin, arrivals=1)
        nursery.cancel_scope.cancel()
    assert len(standin.keys) == 3 and len(set(standin.keys)) == 1
    assert rig.driver.state.retries == 2
    assert rig.recorder.accepted == 1 and rig.recorder.shed == 0
    assert rig.recorder.completed == 1 and not rig.recorder.errors


async def test_a_customer_reads_its_order_once_when_the_sale_is_quick() -> None:
    async with trio.open_nursery() as nursery:
        rig = await _run(nursery, StandIn(sale_s=0.2), arrivals=6, postpay_share=0.5)
        nursery.cancel_scope.cancel()
    outcomes = rig.recorder.outcomes
    assert rig.recorder.completed == 6 and rig.recorder.accepted == 6
    assert not rig.recorder.errors
    assert outcomes["prepay:completed"] + outcomes["postpay:completed"] == 6
    assert outcomes["postpay:completed"] > 0
    requests = rig.standin.requests
    assert requests["POST create"] == 6 and requests["GET order"] == 6  # one read each
    assert requests["GET pumps"] == outcomes["postpay:completed"]
    assert rig.standin.control_calls == 6  # every customer lifted a nozzle once
    assert rig.driver.state.requests == sum(requests.values())
    assert rig.pool.free(Flow.PREPAY) == rig.pool.size[Flow.PREPAY]
