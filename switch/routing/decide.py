"""The routing decision itself, as a pure function of the request, the channels and a die.

specs/routing.md, "Choosing a channel": keep the eligible channels, score each by expected net
cost, send most orders to the cheapest healthy one and a small share elsewhere so that every
channel's health stays measured, and record the whole table on the order. No trio, no clock,
no actor here: the :class:`~switch.routing.router.Router` gathers the inputs, and tests drive
this module with hand-made health snapshots and a seeded ``random.Random``.

The score, in milli-fen (lower is better)::

    cost = fee(amount) - promotion + penalty
    penalty = technical_failure_mfen * (1 - health score)
            + decline_mfen * (1 - approval rate)

``1 - health score`` stands for the chance that the provider does not answer (the AIMD score of
:mod:`channels.health` is 1.0 for a channel that works and shrinks by 10 % per failure); ``1 -
approval rate`` for the chance that the customer's payment is declined there (decayed over
hours, smoothed towards a prior, so it moves traffic slowly). Each chance is taken in integer
parts per million and priced at what such a failure costs the chain: a technical failure keeps
a driver waiting at the pump through a query and a reroute; a decline costs a retry. Both
prices are :class:`RoutingParams` fields. The penalty is part of the cost so that a FLUCTUATING
channel keeps its traffic only while it is clearly cheaper; a DOWN channel is not chosen at all
unless every eligible channel is DOWN ("least bad": serve the customer rather than refuse).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from channels.fees import PPM, Rounding, divide
from channels.health import HealthLevel, HealthSnapshot
from channels.model import Provider
from switch.routing.policy import ChannelPolicy
from switch.service import Flow, Unavailable

__all__ = [
    "CandidateScore",
    "ChannelView",
    "DecisionReason",
    "Exclusion",
    "NoEligibleChannel",
    "RouteRequest",
    "RoutingDecision",
    "RoutingParams",
    "decide",
    "score",
]


class DecisionReason(enum.Enum):
    CHEAPEST = "cheapest"  # the lowest expected cost among healthy eligible channels
    EXPLORE = "explore"  # the exploration share: another healthy eligible channel
    LEAST_BAD = "least_bad"  # every eligible channel is DOWN: the healthiest of them
    ONLY = "only"  # exactly one healthy eligible channel


class Exclusion(enum.StrEnum):
    """Why a channel cannot take this payment; the values are what an operator reads."""

    NOT_RUNNING = "not_running"  # no ChannelActor at channels/<name>
    NO_ANSWER = "no_answer"  # its actor did not answer (restarting, overloaded)
    ALREADY_FAILED = "already_failed"  # this order already failed on it
    METHOD = "method_unsupported"
    FLOW = "flow_unsupported"
    STATION = "station_not_served"
    OUTAGE = "planned_outage"
    DISABLED = "disabled"  # an operator switched it off


@dataclass(frozen=True, slots=True)
class RoutingParams:
    """The router's tunables. ``exploration_permille``: share of orders (per mille) sent to a
    healthy eligible channel other than the cheapest. ``technical_failure_mfen`` and
    ``decline_mfen``: what one technical failure and one decline cost, in milli-fen (the
    defaults, 3 yuan and 1 yuan, price a health score of 0.9, one failure away from full
    health, at 30 fen: like a fee 0.15 % higher on a 200-yuan fill)."""

    exploration_permille: int = 50
    technical_failure_mfen: int = 300_000
    decline_mfen: int = 100_000

    def __post_init__(self) -> None:
        for name in ("exploration_permille", "technical_failure_mfen", "decline_mfen"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if self.exploration_permille > 1000:
            raise ValueError("exploration_permille must be within 0..1000")

    def penalty_mfen(self, health: HealthSnapshot | None) -> int:
        """The expected cost of failures on a channel with this health (0 without data)."""
        if health is None:
            return 0
        technical_ppm = _ppm(1.0 - health.score)
        decline_ppm = _ppm(1.0 - health.approval_rate)
        weighted = self.technical_failure_mfen * technical_ppm + self.decline_mfen * decline_ppm
        return divide(weighted, PPM, Rounding.HALF_UP)


def _ppm(share: float) -> int:
    return min(PPM, max(0, round(share * PPM)))


@dataclass(frozen=True, slots=True)
class RouteRequest:
    order_id: str
    method: str  # "wechatpay" | "alipay" | "unionpay"
    flow: Flow
    station_id: str
    amount_fen: int  # what the hold (or the post-pay payment) will be for
    now: datetime  # timezone-aware: planned outages are compared with it
    exclude: frozenset[str] = frozenset()  # channels this order already failed on

    def __post_init__(self) -> None:
        object.__setattr__(self, "flow", Flow(self.flow))  # a plain "prepay" is accepted
        if isinstance(self.amount_fen, bool) or not isinstance(self.amount_fen, int):
            raise TypeError(f"amounts are integer fen, got {self.amount_fen!r}")
        if self.amount_fen < 0:
            raise ValueError("amount_fen cannot be negative")
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")


@dataclass(frozen=True, slots=True)
class ChannelView:
    """One channel as the router sees it at decision time. ``eligible`` and ``enabled`` are
    :class:`~channels.actor_messages.ChannelStatistics`'s (eligible = enabled and not DOWN);
    ``unavailable`` is set by the router when the channel's actor could not be asked."""

    policy: ChannelPolicy
    eligible: bool
    enabled: bool
    health: HealthSnapshot | None
    unavailable: Exclusion | None = None

    @property
    def down(self) -> bool:
        if self.health is not None and self.health.level is HealthLevel.DOWN:
            return True
        return self.enabled and not self.eligible


# Eligibility as a table: the first rule that matches names the exclusion.
_RULES: Final[tuple[tuple[Exclusion, Callable[[RouteRequest, ChannelView], bool]], ...]] = (
    (Exclusion.NOT_RUNNING, lambda r, v: v.unavailable is Exclusion.NOT_RUNNING),
    (Exclusion.NO_ANSWER, lambda r, v: v.unavailable is not None),
    (Exclusion.ALREADY_FAILED, lambda r, v: v.policy.name in r.exclude),
    (Exclusion.METHOD, lambda r, v: r.method not in v.policy.methods),
    (Exclusion.FLOW, lambda r, v: r.flow not in v.policy.flows),
    (Exclusion.STATION, lambda r, v: not v.policy.serves_station(r.station_id)),
    (Exclusion.OUTAGE, lambda r, v: v.policy.outage_at(r.now) is not None),
    (Exclusion.DISABLED, lambda r, v: not v.enabled),
)


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One row of the decision's table. Fee, penalty and cost are computed for every channel,
    eligible or not, so that an operator sees what an excluded channel would have cost."""

    channel: str
    provider: Provider
    eligible: bool
    excluded: Exclusion | None
    down: bool
    level: HealthLevel | None
    health_score: float | None
    approval_rate: float | None
    fee_mfen: int
    promotion_mfen: int
    penalty_mfen: int
    cost_mfen: int

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "provider": self.provider.value,
            "eligible": self.eligible,
            "excluded": None if self.excluded is None else self.excluded.value,
            "down": self.down,
            "level": None if self.level is None else self.level.value,
            "health_score": self.health_score,
            "approval_rate": self.approval_rate,
            "fee_mfen": self.fee_mfen,
            "promotion_mfen": self.promotion_mfen,
            "penalty_mfen": self.penalty_mfen,
            "cost_mfen": self.cost_mfen,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CandidateScore:
        excluded, level = data["excluded"], data["level"]
        return cls(
            channel=data["channel"],
            provider=Provider(data["provider"]),
            eligible=data["eligible"],
            excluded=None if excluded is None else Exclusion(excluded),
            down=data["down"],
            level=None if level is None else HealthLevel(level),
            health_score=data["health_score"],
            approval_rate=data["approval_rate"],
            fee_mfen=data["fee_mfen"],
            promotion_mfen=data["promotion_mfen"],
            penalty_mfen=data["penalty_mfen"],
            cost_mfen=data["cost_mfen"],
        )


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The channel chosen for one payment attempt, with everything that went into the choice;
    :meth:`to_json` is what the order records so that an operator can see why."""

    order_id: str
    channel: str
    provider: Provider
    reason: DecisionReason
    cost_mfen: int
    fee_mfen: int
    amount_fen: int
    method: str
    flow: Flow
    station_id: str
    exclude: tuple[str, ...]  # sorted: channels the order had already failed on
    candidates: tuple[CandidateScore, ...]
    decided_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "channel": self.channel,
            "provider": self.provider.value,
            "reason": self.reason.value,
            "cost_mfen": self.cost_mfen,
            "fee_mfen": self.fee_mfen,
            "amount_fen": self.amount_fen,
            "method": self.method,
            "flow": self.flow.value,
            "station_id": self.station_id,
            "exclude": list(self.exclude),
            "candidates": [c.to_json() for c in self.candidates],
            "decided_at": self.decided_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoutingDecision:
        """The inverse of :meth:`to_json`, for a decision read back from the journal."""
        return cls(
            order_id=data["order_id"],
            channel=data["channel"],
            provider=Provider(data["provider"]),
            reason=DecisionReason(data["reason"]),
            cost_mfen=data["cost_mfen"],
            fee_mfen=data["fee_mfen"],
            amount_fen=data["amount_fen"],
            method=data["method"],
            flow=Flow(data["flow"]),
            station_id=data["station_id"],
            exclude=tuple(data["exclude"]),
            candidates=tuple(CandidateScore.from_json(c) for c in data["candidates"]),
            decided_at=datetime.fromisoformat(data["decided_at"]),
        )


class NoEligibleChannel(Unavailable):
    """No channel can take this payment; ``detail`` names why each one was excluded."""

    code = "no-eligible-channel"

    def __init__(self, request: RouteRequest, candidates: Sequence[CandidateScore]) -> None:
        why = "; ".join(f"{c.channel}: {c.excluded}" for c in candidates)
        detail = (
            f"no payment channel can take a {request.method} {request.flow.value} payment "
            f"at station {request.station_id}: {why or 'no channel is configured'}"
        )
        super().__init__(detail)
        self.candidates = tuple(candidates)


def score(
    request: RouteRequest, views: Sequence[ChannelView], params: RoutingParams
) -> tuple[CandidateScore, ...]:
    """Every channel's row: eligibility with its reason, fee, penalty and expected cost."""
    rows = []
    for view in views:
        policy, health = view.policy, view.health
        excluded = next((why for why, rule in _RULES if rule(request, view)), None)
        fee = policy.fee.fee_mfen(request.amount_fen)
        penalty = params.penalty_mfen(health)
        rows.append(
            CandidateScore(
                channel=policy.name,
                provider=policy.provider,
                eligible=excluded is None,
                excluded=excluded,
                down=view.down,
                level=None if health is None else health.level,
                health_score=None if health is None else health.score,
                approval_rate=None if health is None else health.approval_rate,
                fee_mfen=fee,
                promotion_mfen=policy.promotion_mfen,
                penalty_mfen=penalty,
                cost_mfen=fee - policy.promotion_mfen + penalty,
            )
        )
    return tuple(rows)


def decide(
    request: RouteRequest,
    views: Sequence[ChannelView],
    params: RoutingParams,
    rng: random.Random,
) -> RoutingDecision:
    """Choose the channel for one payment attempt; raises :class:`NoEligibleChannel`.

    The die is thrown only when there is a choice to make (two or more healthy eligible
    channels), so a seeded ``rng`` gives the same decisions for the same inputs.
    """
    candidates = score(request, views, params)
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        raise NoEligibleChannel(request, candidates)
    healthy = sorted((c for c in eligible if not c.down), key=lambda c: (c.cost_mfen, c.channel))
    if not healthy:
        reason = DecisionReason.LEAST_BAD
        chosen = min(eligible, key=lambda c: (-(c.health_score or 0.0), c.cost_mfen, c.channel))
    elif len(healthy) == 1:
        reason, chosen = DecisionReason.ONLY, healthy[0]
    elif rng.randrange(1000) < params.exploration_permille:
        reason, chosen = DecisionReason.EXPLORE, rng.choice(healthy[1:])
    else:
        reason, chosen = DecisionReason.CHEAPEST, healthy[0]
    return RoutingDecision(
        order_id=request.order_id,
        channel=chosen.channel,
        provider=chosen.provider,
        reason=reason,
        cost_mfen=chosen.cost_mfen,
        fee_mfen=chosen.fee_mfen,
        amount_fen=request.amount_fen,
        method=request.method,
        flow=request.flow,
        station_id=request.station_id,
        exclude=tuple(sorted(request.exclude)),
        candidates=candidates,
        decided_at=request.now,
    )
