"""The Router against real ChannelActors in an actor system (their provider replaced by the
scripted in-memory Channel of the ChannelActor tests): health read from the actors, the cache,
channels that do not answer, and the counts."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import NOREPLY, ChildSpec, Reply
from channels.actor_messages import Query
from channels.health import HealthLevel
from channels.model import Operation, Outcome, Provider
from channels.supervision import start_channels
from ops.metrics import Metrics
from switch.routing import (
    ChannelPolicy,
    DecisionReason,
    Exclusion,
    NoEligibleChannel,
    Router,
    RouteRequest,
    RoutingDecision,
    RoutingParams,
)
from switch.service import Flow
from tests.channels.test_channel_actor import DoubleChannel, config, hold, result_for

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone(timedelta(hours=8)))
GREEDY = RoutingParams(exploration_permille=0)


def policy(name: str, rate_ppm: int) -> ChannelPolicy:
    return ChannelPolicy.from_mapping(name, Provider.WECHATPAY, {"fee": {"rate_ppm": rate_ppm}})


def request(order_id: str = "O3FA29C0B7D11E402") -> RouteRequest:
    return RouteRequest(order_id, "wechatpay", Flow.PREPAY, "s001", 20000, NOW)


def row(decision: RoutingDecision, channel: str) -> Any:
    return next(c for c in decision.candidates if c.channel == channel)


class Mute(actors.Actor):
    """A channel actor that never answers: one that is stuck or restarting."""

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        return NOREPLY


@asynccontextmanager
async def chain(*names: str) -> AsyncIterator[tuple[actors.ActorSystem, dict[str, DoubleChannel]]]:
    doubles = {name: DoubleChannel() for name in names}
    configs = [config(name, merchant_id=str(i)) for i, name in enumerate(names)]
    async with actors.open_system() as system:
        await start_channels(system, configs, make_channel=lambda c: doubles[c.name])
        yield system, doubles


async def test_a_channel_driven_down_by_failures_is_avoided(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metrics = Metrics()
    policies = [policy("wx-a", 5000), policy("wx-b", 6000), policy("wx-gone", 1000)]
    async with chain("wx-a", "wx-b") as (system, doubles):
        router = Router(system, policies, GREEDY, random.Random(1), metrics=metrics)
        first = await router.route(request())
        assert (first.channel, first.reason) == ("wx-a", DecisionReason.CHEAPEST)
        assert row(first, "wx-gone").excluded is Exclusion.NOT_RUNNING
        assert row(first, "wx-a").level is HealthLevel.HEALTHY

        doubles["wx-a"].behaviour = result_for(Outcome.UNKNOWN, "timeout")
        for i in range(45):  # routing.md: DOWN after ~45 consecutive failures
            await system.call("channels/wx-a", Query(f"Q{i}"), timeout=60.0)
        await trio.sleep(1.0)  # older than stats_ttl_s: the next route reads the actors again

        after = await router.route(request())
        assert (after.channel, after.reason) == ("wx-b", DecisionReason.ONLY)
        down = row(after, "wx-a")
        assert (down.eligible, down.down, down.level) == (True, True, HealthLevel.DOWN)
        assert down.penalty_mfen > row(after, "wx-b").penalty_mfen
        # The hold goes where the router said, and wx-a sees nothing more than its probes.
        await system.call(f"channels/{after.channel}", hold("O3FA29C0B7D11E402H1"))
        assert doubles["wx-b"].calls == [(Operation.HOLD, "O3FA29C0B7D11E402H1")]
        assert not [key for op, key in doubles["wx-a"].calls if op is Operation.HOLD]

        stats = router.statistics()
        assert stats.decisions == {"wx-a": {"cheapest": 1}, "wx-b": {"only": 1}, "wx-gone": {}}
        assert stats.unavailable == {"wx-gone": 2}
        assert stats.refreshes == 2
        assert metrics.routing_decision_count("wx-a", "cheapest") == 1
        assert metrics.routing_decision_count("wx-b", "only") == 1
        assert b'fuelswitch_routing_decisions_total{channel="wx-b",reason="only"} 1.0' in (
            metrics.exposition()
        )


async def test_statistics_are_cached_for_the_ttl_and_shared_by_concurrent_routes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with chain("wx-a", "wx-b") as (system, _):
        policies = [policy("wx-a", 5000), policy("wx-b", 6000)]
        router = Router(system, policies, GREEDY, random.Random(1), stats_ttl_s=0.5)
        decisions: list[RoutingDecision] = []

        async def route(i: int) -> None:
            decisions.append(await router.route(request(f"O{i:016X}")))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(route, i)
        assert len(decisions) == 20
        assert router.statistics().refreshes == 1
        await router.route(request())
        assert router.statistics().refreshes == 1
        await trio.sleep(0.5)
        await router.route(request())
        assert router.statistics().refreshes == 2
        router.invalidate()
        await router.route(request())
        assert router.statistics().refreshes == 3
        assert router.statistics().decisions["wx-a"] == {"cheapest": 23}
        assert router.snapshot()["decisions"] == {"wx-a": {"cheapest": 23}, "wx-b": {}}


async def test_a_channel_whose_actor_does_not_answer_is_routed_around(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with chain("wx-b") as (system, _):
        await system.start_child(ChildSpec("wx-mute", Mute), supervisor="channels")
        policies = [policy("wx-mute", 1000), policy("wx-b", 6000)]
        router = Router(system, policies, GREEDY, random.Random(1), stats_timeout_s=2.0)
        decision = await router.route(request())
        assert decision.channel == "wx-b"
        assert row(decision, "wx-mute").excluded is Exclusion.NO_ANSWER
        assert router.statistics().unavailable == {"wx-mute": 1}


async def test_nothing_eligible_is_counted_and_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with chain("wx-a") as (system, _):
        router = Router(system, [policy("wx-a", 6000)], GREEDY, random.Random(1))
        excluded = RouteRequest(
            "O3FA29C0B7D11E402", "wechatpay", Flow.PREPAY, "s001", 20000, NOW, frozenset({"wx-a"})
        )
        with pytest.raises(NoEligibleChannel, match="wx-a: already_failed"):
            await router.route(excluded)
        assert router.statistics().no_eligible == 1
        assert router.statistics().decisions == {"wx-a": {}}


def test_policy_lookup_and_duplicates() -> None:
    system = actors.ActorSystem()
    router = Router(system, [policy("wx-a", 6000)])
    assert router.policy("wx-a").fee.contract.rate_ppm == 6000
    assert [p.name for p in router.policies] == ["wx-a"]
    with pytest.raises(KeyError, match="no routing policy for channel 'wx-z'"):
        router.policy("wx-z")
    with pytest.raises(ValueError, match="unique: wx-a"):
        Router(system, [policy("wx-a", 6000), policy("wx-a", 5000)])
