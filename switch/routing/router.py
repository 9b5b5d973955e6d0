"""The payment router: which channel takes an order's next payment attempt.

Theory of operation
-------------------
An OrderActor that needs to hold money calls :meth:`Router.route` with a
:class:`~switch.routing.decide.RouteRequest` (method, flow, station, amount, the channels this
order already failed on). The router

1. reads every configured channel's :class:`~channels.actor_messages.ChannelStatistics` from its
   ChannelActor at ``channels/<name>`` (``GetStatistics``), all at once under one short
   deadline, and keeps the answers for ``stats_ttl_s`` so that a burst of orders costs one
   round of calls, not one per order. A channel whose actor does not answer (restarting after
   a crash, or not running at all) is ineligible for that round with that reason: the router
   never waits on one sick channel to serve a customer through another;
2. hands the channels' policies, their health and a die to the pure
   :func:`~switch.routing.decide.decide`, which excludes what cannot take the payment, scores
   the rest by expected net cost (fee - promotion + failure penalty), and picks the cheapest
   healthy channel, now and then another one (exploration), or the least bad one when every
   eligible channel is DOWN;
3. counts the decision by channel and reason (``statistics()`` and the
   ``fuelswitch_routing_decisions_total`` metric) and returns it; the order records
   :meth:`~switch.routing.decide.RoutingDecision.to_json` so an operator can see why.

Health is aggregated across all stations, as specs/routing.md asks, and that is what the
actors give for free: there is one ChannelActor per merchant account for the whole chain, and
every station's payments on that account go through it, so its statistics already are the
chain-wide figures. The router adds no state of its own to health; it only reads.

The router is not an actor: it holds no mailbox and does no I/O besides actor calls, so any
number of orders route concurrently. One lock makes concurrent callers that find the cache
stale share one refresh instead of each sending their own round of calls.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from actors import ActorError, ActorNotFound, ActorStopped, ActorSystem, Address
from channels.actor_messages import ChannelStatistics, GetStatistics
from ops.metrics import METRICS, Metrics
from switch.routing.decide import (
    ChannelView,
    Exclusion,
    NoEligibleChannel,
    RouteRequest,
    RoutingDecision,
    RoutingParams,
    decide,
)
from switch.routing.policy import ChannelPolicy

__all__ = ["Router", "RouterStatistics"]


@dataclass(frozen=True, slots=True)
class RouterStatistics:
    decisions: Mapping[str, Mapping[str, int]]  # channel -> reason -> n
    no_eligible: int  # requests refused with NoEligibleChannel
    refreshes: int  # rounds of GetStatistics calls
    unavailable: Mapping[str, int]  # channel -> rounds in which its actor did not answer
    views_age_s: float | None  # age of the cached channel views; None before the first read

    def to_dict(self) -> dict[str, Any]:
        return {
            "decisions": {channel: dict(by) for channel, by in self.decisions.items()},
            "no_eligible": self.no_eligible,
            "refreshes": self.refreshes,
            "unavailable": dict(self.unavailable),
            "views_age_s": self.views_age_s,
        }


class Router:
    """Chooses a channel per payment attempt from the channels' policies and live health.

    ``rng``: the exploration die (pass a seeded ``random.Random`` for reproducible runs; None
    seeds one from the OS). ``stats_timeout_s`` bounds one round of statistics calls.
    """

    def __init__(
        self,
        system: ActorSystem,
        policies: Sequence[ChannelPolicy],
        params: RoutingParams | None = None,
        rng: random.Random | None = None,
        stats_ttl_s: float = 0.5,
        *,
        stats_timeout_s: float = 1.0,
        channels: str = "channels",
        metrics: Metrics = METRICS,
    ) -> None:
        names = [p.name for p in policies]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"channel policies must be unique: {', '.join(duplicates)}")
        if not (stats_ttl_s >= 0 and stats_timeout_s > 0):
            raise ValueError("need stats_ttl_s >= 0 and stats_timeout_s > 0")
        self._system = system
        self._policies = {p.name: p for p in policies}
        self._addresses = {p.name: Address.parse(f"{channels}/{p.name}") for p in policies}
        self.params = params or RoutingParams()
        self._rng = rng or random.Random()
        self._ttl = stats_ttl_s
        self._timeout = stats_timeout_s
        self._metrics = metrics
        self._lock = trio.Lock()
        self._views: tuple[ChannelView, ...] = ()
        self._read_at: float | None = None
        self._decisions: dict[str, Counter[str]] = {name: Counter() for name in names}
        self._unavailable: Counter[str] = Counter()
        self._no_eligible = 0
        self._refreshes = 0

    @property
    def policies(self) -> tuple[ChannelPolicy, ...]:
        return tuple(self._policies.values())

    def policy(self, name: str) -> ChannelPolicy:
        """The policy of channel ``name`` (``KeyError`` if no such channel is configured)."""
        try:
            return self._policies[name]
        except KeyError:
            raise KeyError(f"no routing policy for channel {name!r}") from None

    async def route(self, request: RouteRequest) -> RoutingDecision:
        """Choose the channel for one payment attempt; raises
        :class:`~switch.routing.decide.NoEligibleChannel` (a 503 ``Unavailable``)."""
        views = await self.views()
        try:
            decision = decide(request, views, self.params, self._rng)
        except NoEligibleChannel:
            self._no_eligible += 1
            raise
        self._decisions[decision.channel][decision.reason.value] += 1
        self._metrics.count_routing_decision(decision.channel, decision.reason.value)
        return decision

    async def views(self) -> tuple[ChannelView, ...]:
        """Every channel's current view, read at most once per ``stats_ttl_s``."""
        if self._fresh():
            return self._views
        async with self._lock:
            if not self._fresh():  # another caller may have refreshed while we waited
                await self._refresh()
            return self._views

    def invalidate(self) -> None:
        """Forget the cached views: the next route reads every channel again (for a caller
        that has just seen a channel fail and wants the next decision to know)."""
        self._read_at = None

    def statistics(self) -> RouterStatistics:
        age = None if self._read_at is None else trio.current_time() - self._read_at
        return RouterStatistics(
            decisions={name: dict(by) for name, by in self._decisions.items()},
            no_eligible=self._no_eligible,
            refreshes=self._refreshes,
            unavailable=dict(self._unavailable),
            views_age_s=age,
        )

    def snapshot(self) -> dict[str, Any]:
        return self.statistics().to_dict()

    # -- reading the channels ----------------------------------------------------------------

    def _fresh(self) -> bool:
        return self._read_at is not None and trio.current_time() - self._read_at < self._ttl

    async def _refresh(self) -> None:
        names = list(self._policies)
        calls = [(self._addresses[name], GetStatistics()) for name in names]
        outcomes = await self._system.multi_call(calls, timeout=self._timeout)
        views = []
        for name, result in zip(names, outcomes, strict=True):
            policy = self._policies[name]
            try:
                stats = result.unwrap()
            except (ActorNotFound, ActorStopped):
                views.append(self._unanswered(policy, Exclusion.NOT_RUNNING))
                continue
            except ActorError:  # timeout, crash, full mailbox: restarting or overloaded
                views.append(self._unanswered(policy, Exclusion.NO_ANSWER))
                continue
            if not isinstance(stats, ChannelStatistics):
                raise TypeError(f"channels/{name} answered GetStatistics with {stats!r}")
            views.append(ChannelView(policy, stats.eligible, stats.enabled, stats.health))
        self._views = tuple(views)
        self._read_at = trio.current_time()
        self._refreshes += 1

    def _unanswered(self, policy: ChannelPolicy, why: Exclusion) -> ChannelView:
        self._unavailable[policy.name] += 1
        return ChannelView(policy, eligible=False, enabled=False, health=None, unavailable=why)
