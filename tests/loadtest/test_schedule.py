"""Arrivals are open loop: planned up front, started on time whatever earlier ones do."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from loadtest.driver import open_loop
from loadtest.schedule import Arrival, Flow, PumpPool, plan_arrivals, postpay_pumps


def test_fixed_arrivals_are_evenly_spaced() -> None:
    arrivals = plan_arrivals(4.0, 2.0, seed=1, poisson=False)
    assert [a.at_s for a in arrivals] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [a.index for a in arrivals] == list(range(8))


def test_poisson_arrivals_are_seeded_and_near_the_rate() -> None:
    first = plan_arrivals(50.0, 20.0, seed=7)
    assert first == plan_arrivals(50.0, 20.0, seed=7)
    assert first != plan_arrivals(50.0, 20.0, seed=8)
    assert 800 <= len(first) <= 1200  # 1000 expected; far outside is a broken process
    times = [a.at_s for a in first]
    assert times == sorted(times) and times[-1] < 20.0


def test_flows_and_methods_are_mixed() -> None:
    arrivals = plan_arrivals(100.0, 10.0, seed=3, postpay_share=0.2)
    postpay = sum(a.flow is Flow.POSTPAY for a in arrivals) / len(arrivals)
    assert 0.1 < postpay < 0.3
    assert {a.method for a in arrivals} == {"wechatpay", "alipay", "unionpay"}
    # the fill, not the preset, ends the sale: 95# costs 842,000 milli-fen per litre
    assert all(a.preset_fen > a.litres_ml * 842_000 // 1_000_000 for a in arrivals)


def test_postpay_pumps_per_station() -> None:
    assert postpay_pumps(10, 0.2) == 2
    assert postpay_pumps(4, 0.2) == 1
    assert postpay_pumps(4, 0.0) == 0
    assert postpay_pumps(1, 0.5) == 0
    assert postpay_pumps(3, 0.99) == 2  # never every pump


def test_pool_hands_out_each_pump_once() -> None:
    pool = PumpPool(["s001", "s002"], 4, 1, seed=1)
    assert pool.size == {Flow.PREPAY: 6, Flow.POSTPAY: 2}
    taken = {pool.take(Flow.POSTPAY), pool.take(Flow.POSTPAY)}
    assert taken == {("s001", 4), ("s002", 4)}
    assert pool.take(Flow.POSTPAY) is None  # no free pump: the caller counts it
    pool.give(Flow.POSTPAY, ("s002", 4))
    assert pool.take(Flow.POSTPAY) == ("s002", 4)


def test_arrivals_start_on_schedule_while_earlier_ones_hang() -> None:
    """A switch that never answers does not delay the next arrival (MockClock: no wall
    time involved)."""
    started: list[tuple[int, float]] = []
    arrivals = plan_arrivals(10.0, 1.0, seed=1, poisson=False)

    async def play(arrival: Arrival) -> None:
        started.append((arrival.index, trio.current_time()))
        await trio.sleep_forever()

    async def main() -> float:
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            await open_loop(nursery, arrivals, t0, play)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        return t0

    t0 = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [i for i, _ in started] == list(range(10))
    for (_, at), arrival in zip(started, arrivals, strict=True):
        assert at - t0 == pytest.approx(arrival.at_s)
