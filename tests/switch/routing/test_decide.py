"""The pure routing decision: eligibility and its reasons, cost, exploration, least bad, and the
record an order keeps. Health snapshots come from the real :class:`channels.health.ChannelHealth`
fed outcomes, so the levels are the ones the ChannelActor would report."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from channels.health import ChannelHealth, HealthLevel, HealthSnapshot
from channels.model import Operation, Outcome, Provider
from switch.routing import (
    ChannelPolicy,
    ChannelView,
    DecisionReason,
    Exclusion,
    NoEligibleChannel,
    RouteRequest,
    RoutingDecision,
    RoutingParams,
    decide,
    score,
)
from switch.service import Flow, Unavailable

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=CST)
GREEDY = RoutingParams(exploration_permille=0)


def policy(name: str, rate_ppm: int = 6000, **table: Any) -> ChannelPolicy:
    table.setdefault("fee", {"rate_ppm": rate_ppm})
    table.setdefault("methods", ["wechatpay"])
    return ChannelPolicy.from_mapping(name, Provider.WECHATPAY, table)


def health(failures: int = 0, declines: int = 0, approvals: int = 0) -> HealthSnapshot:
    h = ChannelHealth()
    for _ in range(failures):
        h.observe(Operation.QUERY, Outcome.UNKNOWN, "timeout", 0.0)
    for _ in range(declines):
        h.observe(Operation.HOLD, Outcome.DECLINED, "NOTENOUGH", 0.0)
    for _ in range(approvals):
        h.observe(Operation.HOLD, Outcome.APPROVED, None, 0.0)
    return h.snapshot(0.0)


def view(p: ChannelPolicy, failures: int = 0, *, enabled: bool = True, **kw: int) -> ChannelView:
    snap = health(failures, **kw)
    return ChannelView(p, enabled and not snap.excluded, enabled, snap)


def request(**changes: Any) -> RouteRequest:
    fields: dict[str, Any] = {
        "order_id": "O3FA29C0B7D11E402",
        "method": "wechatpay",
        "flow": Flow.PREPAY,
        "station_id": "s001",
        "amount_fen": 20000,
        "now": NOW,
    }
    fields.update(changes)
    return RouteRequest(**fields)


def row(decision: RoutingDecision, channel: str) -> Any:
    return next(c for c in decision.candidates if c.channel == channel)


# -- cost ----------------------------------------------------------------------------------------


def test_the_cheapest_healthy_channel_wins_and_the_cost_is_itemised() -> None:
    views = [view(policy("a", 6000)), view(policy("b", 5500))]
    decision = decide(request(), views, GREEDY, random.Random(1))
    assert (decision.channel, decision.reason) == ("b", DecisionReason.CHEAPEST)
    assert decision.fee_mfen == 110_000  # 0.55 % of 200.00 yuan
    # No failures: no technical penalty; the approval prior (0.9) costs every channel alike.
    assert row(decision, "b").penalty_mfen == 10_000
    assert decision.cost_mfen == 120_000
    assert row(decision, "a").cost_mfen == 130_000


def test_a_promotion_lowers_the_net_cost() -> None:
    views = [view(policy("a", 6000, promotion_mfen=20_000)), view(policy("b", 5500))]
    decision = decide(request(), views, GREEDY, random.Random(1))
    assert decision.channel == "a"
    assert row(decision, "a").cost_mfen == 120_000 - 20_000 + 10_000


def test_the_penalty_formula() -> None:
    params = RoutingParams(technical_failure_mfen=300_000, decline_mfen=100_000)
    snap = dataclasses.replace(health(), score=0.5, approval_rate=0.8)
    assert params.penalty_mfen(snap) == 300_000 // 2 + 100_000 // 5
    assert params.penalty_mfen(None) == 0
    penalties = [params.penalty_mfen(health(n)) for n in (0, 1, 5, 20, 45)]
    assert penalties == sorted(set(penalties))  # strictly more with every failure


def test_technical_failures_move_traffic_to_a_dearer_healthy_channel() -> None:
    cheap, dear = policy("cheap", 5000), policy("dear", 6000)  # 20,000 mfen apart on 200 yuan
    assert decide(request(), [view(cheap), view(dear)], GREEDY, random.Random()).channel == "cheap"
    flaky = decide(request(), [view(cheap, 1), view(dear)], GREEDY, random.Random())
    assert flaky.channel == "dear"
    assert row(flaky, "cheap").level is HealthLevel.HEALTHY  # still eligible, just dearer
    assert row(flaky, "cheap").eligible


def test_declines_move_traffic_without_touching_health() -> None:
    cheap, dear = policy("cheap", 5800), policy("dear", 6000)
    views = [view(cheap, declines=10), view(dear, approvals=10)]
    decision = decide(request(), views, GREEDY, random.Random())
    assert decision.channel == "dear"
    assert row(decision, "cheap").health_score == 1.0
    assert row(decision, "cheap").approval_rate == pytest.approx(0.45)


# -- eligibility ---------------------------------------------------------------------------------

OUTAGE = {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(hours=1)}


@pytest.mark.parametrize(
    ("table", "enabled", "changes", "why"),
    [
        ({}, True, {"exclude": frozenset({"cheap"})}, Exclusion.ALREADY_FAILED),
        ({}, True, {"method": "alipay"}, Exclusion.METHOD),
        ({"flows": ["postpay"]}, True, {}, Exclusion.FLOW),
        ({"stations": ["s002"]}, True, {}, Exclusion.STATION),
        ({"outages": [OUTAGE]}, True, {}, Exclusion.OUTAGE),
        ({}, False, {}, Exclusion.DISABLED),
    ],
)
def test_each_exclusion_has_its_reason(
    table: dict[str, Any], enabled: bool, changes: dict[str, Any], why: Exclusion
) -> None:
    cheap = policy("cheap", 3000, **table)
    dear = policy("dear", 6000, methods=["wechatpay", "alipay"])
    decision = decide(
        request(**changes), [view(cheap, enabled=enabled), view(dear)], GREEDY, random.Random()
    )
    assert (decision.channel, decision.reason) == ("dear", DecisionReason.ONLY)
    excluded = row(decision, "cheap")
    assert (excluded.eligible, excluded.excluded) == (False, why)
    assert excluded.fee_mfen == 60_000  # what it would have cost is still shown


def test_outages_outside_now_do_not_exclude() -> None:
    later = {"start": NOW + timedelta(hours=1), "end": NOW + timedelta(hours=2)}
    views = [view(policy("cheap", 3000, outages=[later])), view(policy("dear"))]
    assert decide(request(), views, GREEDY, random.Random()).channel == "cheap"


@pytest.mark.parametrize("why", [Exclusion.NOT_RUNNING, Exclusion.NO_ANSWER])
def test_a_channel_whose_actor_did_not_answer_is_not_eligible(why: Exclusion) -> None:
    silent = ChannelView(policy("cheap", 3000), False, False, None, unavailable=why)
    decision = decide(request(), [silent, view(policy("dear"))], GREEDY, random.Random())
    assert decision.channel == "dear"
    assert (row(decision, "cheap").excluded, row(decision, "cheap").level) == (why, None)


def test_no_eligible_channel_says_why_for_each() -> None:
    views = [
        view(policy("wx-a", stations=["s009"])),
        view(policy("wx-b"), enabled=False),
        view(policy("wx-c")),
    ]
    with pytest.raises(NoEligibleChannel) as info:
        decide(request(exclude=frozenset({"wx-c"})), views, GREEDY, random.Random())
    error = info.value
    assert isinstance(error, Unavailable) and error.status == 503
    assert error.code == "no-eligible-channel"
    assert error.detail == (
        "no payment channel can take a wechatpay prepay payment at station s001: "
        "wx-a: station_not_served; wx-b: disabled; wx-c: already_failed"
    )
    assert [c.excluded for c in error.candidates] == [
        Exclusion.STATION,
        Exclusion.DISABLED,
        Exclusion.ALREADY_FAILED,
    ]


def test_no_channel_at_all() -> None:
    with pytest.raises(NoEligibleChannel, match="no channel is configured"):
        decide(request(), [], GREEDY, random.Random())


# -- health levels -------------------------------------------------------------------------------


def test_a_down_channel_is_avoided_while_another_is_healthy() -> None:
    views = [view(policy("cheap", 3000), 45), view(policy("dear"), 20)]  # DOWN, FLUCTUATING
    decision = decide(request(), views, RoutingParams(), random.Random())
    assert (decision.channel, decision.reason) == ("dear", DecisionReason.ONLY)
    down = row(decision, "cheap")
    assert (down.eligible, down.down, down.level) == (True, True, HealthLevel.DOWN)
    assert row(decision, "dear").level is HealthLevel.FLUCTUATING


def test_when_every_channel_is_down_the_least_bad_is_used() -> None:
    views = [view(policy("cheap", 3000), 60), view(policy("dear"), 45), view(policy("x"), 50)]
    decision = decide(request(), views, RoutingParams(), random.Random())
    assert (decision.channel, decision.reason) == ("dear", DecisionReason.LEAST_BAD)


def test_least_bad_ties_go_to_the_cheaper() -> None:
    views = [view(policy("dear"), 45), view(policy("cheap", 3000), 45)]
    decision = decide(request(), views, RoutingParams(), random.Random())
    assert (decision.channel, decision.reason) == ("cheap", DecisionReason.LEAST_BAD)


def test_a_disabled_channel_is_never_the_least_bad() -> None:
    views = [view(policy("off"), enabled=False), view(policy("down"), 45)]
    decision = decide(request(), views, RoutingParams(), random.Random())
    assert (decision.channel, decision.reason) == ("down", DecisionReason.LEAST_BAD)


# -- exploration ---------------------------------------------------------------------------------


def explore_run(seed: int, n: int, params: RoutingParams) -> list[tuple[str, DecisionReason]]:
    views = [view(policy("a", 5000)), view(policy("b", 5500)), view(policy("c", 6000))]
    rng = random.Random(seed)
    return [
        (d.channel, d.reason) for d in (decide(request(), views, params, rng) for _ in range(n))
    ]


def test_the_exploration_share_is_about_the_configured_permille() -> None:
    decisions = explore_run(2024, 4000, RoutingParams(exploration_permille=50))
    reasons = Counter(reason for _, reason in decisions)
    # 5 % of 4000 is 200 (one standard deviation is ~14); the seed fixes the exact count.
    assert 150 <= reasons[DecisionReason.EXPLORE] <= 250
    explored = Counter(channel for channel, r in decisions if r is DecisionReason.EXPLORE)
    assert set(explored) == {"b", "c"}  # never the cheapest; the others alike
    assert all(60 <= n <= 140 for n in explored.values())
    assert {c for c, r in decisions if r is DecisionReason.CHEAPEST} == {"a"}
    assert explore_run(2024, 4000, RoutingParams(exploration_permille=50)) == decisions


@pytest.mark.parametrize(("permille", "reason"), [(0, "cheapest"), (1000, "explore")])
def test_exploration_bounds(permille: int, reason: str) -> None:
    decisions = explore_run(7, 200, RoutingParams(exploration_permille=permille))
    assert {r.value for _, r in decisions} == {reason}


def test_the_die_is_thrown_only_when_there_is_a_choice() -> None:
    rng = random.Random(5)
    state = rng.getstate()
    views = [view(policy("a")), view(policy("b"), 45)]
    assert decide(request(), views, RoutingParams(), rng).reason is DecisionReason.ONLY
    assert rng.getstate() == state


# -- the record ----------------------------------------------------------------------------------


def test_the_decision_round_trips_through_orjson() -> None:
    views = [
        view(policy("wx-a", 5000), 3, declines=2),
        view(policy("wx-b", promotion_mfen=5000), 45),
        ChannelView(policy("wx-c"), False, False, None, unavailable=Exclusion.NO_ANSWER),
        view(policy("wx-d", methods=["alipay"])),
    ]
    decision = decide(
        request(exclude=frozenset({"wx-e"})), views, RoutingParams(), random.Random(3)
    )
    data = orjson.loads(orjson.dumps(decision.to_json()))
    assert data == decision.to_json()
    assert RoutingDecision.from_json(data) == decision
    assert data["channel"] == "wx-a" and data["reason"] == "only"
    assert data["decided_at"] == "2026-11-22T12:00:00+08:00"
    assert data["exclude"] == ["wx-e"]
    assert [c["excluded"] for c in data["candidates"]] == [
        None,
        None,
        "no_answer",
        "method_unsupported",
    ]
    assert data["candidates"][1]["level"] == "down"
    assert data["candidates"][2]["health_score"] is None


# -- inputs --------------------------------------------------------------------------------------


def test_request_checks() -> None:
    assert request(flow="postpay").flow is Flow.POSTPAY
    with pytest.raises(ValueError, match="timezone-aware"):
        request(now=datetime(2026, 11, 22, 12))
    with pytest.raises(TypeError, match="integer fen"):
        request(amount_fen=200.0)
    with pytest.raises(ValueError, match="negative"):
        request(amount_fen=-1)
    with pytest.raises(ValueError):
        request(flow="later")


@pytest.mark.parametrize(
    "changes",
    [
        {"exploration_permille": 1001},
        {"exploration_permille": -1},
        {"technical_failure_mfen": 0.5},
        {"decline_mfen": True},
    ],
)
def test_params_checks(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"exploration_permille|_mfen"):
        RoutingParams(**changes)


def test_score_alone_gives_the_table() -> None:
    rows = score(request(), [view(policy("a")), view(policy("b"), enabled=False)], GREEDY)
    assert [(r.channel, r.eligible, r.excluded) for r in rows] == [
        ("a", True, None),
        ("b", False, Exclusion.DISABLED),
    ]
