"""Fee-based payment routing over live channel health (specs/routing.md, "Choosing a channel").

``policy``: what each channel costs and where it may be used (parsed from switch.toml);
``decide``: the pure choice; ``router``: the runtime object that reads the ChannelActors.
"""

from switch.routing.decide import (
    CandidateScore,
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
from switch.routing.policy import (
    ALL_STATIONS,
    DEFAULT_RATE_PPM,
    ChannelPolicy,
    FeeSchedule,
    Outage,
    RoutingConfigError,
    Tier,
)
from switch.routing.router import Router, RouterStatistics

__all__ = [
    "ALL_STATIONS",
    "DEFAULT_RATE_PPM",
    "CandidateScore",
    "ChannelPolicy",
    "ChannelView",
    "DecisionReason",
    "Exclusion",
    "FeeSchedule",
    "NoEligibleChannel",
    "Outage",
    "RouteRequest",
    "Router",
    "RouterStatistics",
    "RoutingConfigError",
    "RoutingDecision",
    "RoutingParams",
    "Tier",
    "decide",
    "score",
]
