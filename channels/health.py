"""A channel's health, as two separate signals the router reads (specs/routing.md).

*Technical health* answers "does the provider work?": timeouts, 5xx, refused connections and
badly signed responses lower it; any answer the provider gave on purpose (approved, declined,
pending) raises it. It trips fast (a multiplicative penalty per failure) and comes back slowly
(an additive reward per success), AIMD-style, so a flapping provider stays penalised while a
single success after an outage does not make it look healthy.

*Approval* answers "do customers' payments go through here?": only business outcomes count,
decayed over a long half-life so that it moves traffic slowly. A decline never touches technical
health: "insufficient funds" says nothing about the channel.

Everything here is pure: time is passed in (monotonic seconds), so the rules are tested without a
clock and the same object serves the ChannelActor and the router's tests.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from channels.model import Operation, Outcome

__all__ = [
    "APPROVAL_OPERATIONS",
    "APPROVAL_SIGNAL",
    "TECHNICAL_SIGNAL",
    "ApprovalPolicy",
    "ApprovalStats",
    "ChannelHealth",
    "HealthLevel",
    "HealthPolicy",
    "HealthSnapshot",
    "LatencyStats",
    "TechnicalHealth",
]


class HealthLevel(enum.Enum):
    HEALTHY = "healthy"
    FLUCTUATING = "fluctuating"  # still routed to, at a penalty
    DOWN = "down"  # excluded; only probes and exploration reach it


# Outcome -> counts as a technical success (True) or failure (False). Every outcome is here.
TECHNICAL_SIGNAL: Final[Mapping[Outcome, bool]] = {
    Outcome.APPROVED: True,
    Outcome.DECLINED: True,  # the provider answered, on purpose
    Outcome.PENDING: True,
    Outcome.UNKNOWN: False,  # timeouts, 5xx, SYSTEM_ERROR, unsigned money-moving replies
    Outcome.TECHNICAL_FAILURE: False,  # refused connections, bad response signatures
}

# Outcome -> approved (True) or declined (False); the others say nothing about approval.
APPROVAL_SIGNAL: Final[Mapping[Outcome, bool]] = {
    Outcome.APPROVED: True,
    Outcome.DECLINED: False,
}

# Operations where the provider decides on the customer's money. A refused refund or a query's
# answer is not a customer's payment being approved or declined.
APPROVAL_OPERATIONS: Final = frozenset({Operation.HOLD, Operation.CAPTURE})

_PENALTY: Final = 0.9
_FLUCTUATING_AFTER: Final = 20  # consecutive failures from full health (routing.md)
_DOWN_AFTER: Final = 45
_REWARD: Final = 0.01


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Thresholds as data. The defaults put the levels where routing.md's reference systems
    have them: from full health, the 20th consecutive failure makes a channel FLUCTUATING and
    the 45th makes it DOWN (each threshold sits halfway, geometrically, between n-1 and n
    penalties, so float rounding cannot move the count). A DOWN channel counts as FLUCTUATING
    again once successes lift it to ``recover_at`` (three successes after a long outage with
    the defaults, since the reward is additive), and as HEALTHY once it is back above
    ``fluctuating_below``.
    """

    penalty: float = _PENALTY
    reward: float = _REWARD
    fluctuating_below: float = _PENALTY ** (_FLUCTUATING_AFTER - 0.5)
    down_below: float = _PENALTY ** (_DOWN_AFTER - 0.5)
    recover_at: float = 2.5 * _REWARD
    probe_interval_s: float = 30.0  # a DOWN channel with no traffic is probed this often

    def __post_init__(self) -> None:
        # Positive checks, so that NaN fails them too.
        if not (0.0 < self.penalty < 1.0 and 0.0 < self.reward <= 1.0):
            raise ValueError("need 0 < penalty < 1 and 0 < reward <= 1")
        if not (0.0 < self.down_below <= self.recover_at <= 1.0):
            raise ValueError("need 0 < down_below <= recover_at <= 1")
        if not (self.down_below <= self.fluctuating_below <= 1.0):
            raise ValueError("need down_below <= fluctuating_below <= 1")
        if not self.probe_interval_s > 0:
            raise ValueError("probe_interval_s must be positive")

    @classmethod
    def from_counts(
        cls,
        fluctuating_after: int = _FLUCTUATING_AFTER,
        down_after: int = _DOWN_AFTER,
        *,
        penalty: float = _PENALTY,
        reward: float = _REWARD,
        recover_successes: int = 3,
        probe_interval_s: float = 30.0,
    ) -> HealthPolicy:
        """The policy whose levels trip after these many consecutive failures from full health."""
        if not 0 < fluctuating_after <= down_after:
            raise ValueError("need 0 < fluctuating_after <= down_after")
        down_below = penalty ** (down_after - 0.5)
        return cls(
            penalty=penalty,
            reward=reward,
            fluctuating_below=penalty ** (fluctuating_after - 0.5),
            down_below=down_below,
            # Halfway between n-1 and n rewards from nothing: float sums cannot move the count.
            recover_at=min(1.0, max(down_below, (recover_successes - 0.5) * reward)),
            probe_interval_s=probe_interval_s,
        )

    def level(self, current: HealthLevel, score: float) -> HealthLevel:
        """The level for ``score``; a DOWN channel stays DOWN until it reaches ``recover_at``."""
        if score < self.down_below:
            return HealthLevel.DOWN
        if current is HealthLevel.DOWN and score < self.recover_at:
            return HealthLevel.DOWN
        if score < self.fluctuating_below:
            return HealthLevel.FLUCTUATING
        return HealthLevel.HEALTHY


class TechnicalHealth:
    """Score in (0, 1]: times ``penalty`` per failure, plus ``reward`` per success (capped at 1)."""

    __slots__ = (
        "consecutive_failures",
        "consecutive_successes",
        "failures",
        "last_failure_at",
        "last_failure_reason",
        "last_success_at",
        "level",
        "level_since",
        "policy",
        "score",
        "successes",
    )

    def __init__(self, policy: HealthPolicy | None = None, *, now: float = 0.0) -> None:
        self.policy = policy or HealthPolicy()
        self.score = 1.0
        self.level = HealthLevel.HEALTHY
        self.level_since = now
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.failures = 0
        self.successes = 0
        self.last_failure_at: float | None = None
        self.last_failure_reason: str | None = None
        self.last_success_at: float | None = None

    def success(self, now: float) -> None:
        self.score = min(1.0, self.score + self.policy.reward)
        self.successes += 1
        self.consecutive_successes += 1
        self.consecutive_failures = 0
        self.last_success_at = now
        self._relevel(now)

    def failure(self, now: float, reason: str | None = None) -> None:
        self.score *= self.policy.penalty
        self.failures += 1
        self.consecutive_failures += 1
        self.consecutive_successes = 0
        self.last_failure_at = now
        self.last_failure_reason = reason
        self._relevel(now)

    def _relevel(self, now: float) -> None:
        level = self.policy.level(self.level, self.score)
        if level is not self.level:
            self.level = level
            self.level_since = now

    @property
    def excluded(self) -> bool:
        return self.level is HealthLevel.DOWN

    def probe_due(self, now: float) -> bool:
        """A DOWN channel that nothing has tried for ``probe_interval_s``: without a probe it
        would never be seen to recover, since the router sends it no regular traffic."""
        if not self.excluded:
            return False
        last = max(self.last_failure_at or -math.inf, self.last_success_at or -math.inf)
        return now - max(last, self.level_since) >= self.policy.probe_interval_s


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """``half_life_s``: how fast old outcomes fade. The rate is smoothed towards ``prior_rate``
    with the weight of ``prior_weight`` outcomes, so that three declines in a quiet hour do not
    push a channel's traffic away."""

    half_life_s: float = 6 * 3600.0
    prior_rate: float = 0.9
    prior_weight: float = 10.0
    max_reasons: int = 32  # distinct decline reasons kept; the rest count as "other"

    def __post_init__(self) -> None:
        if not (self.half_life_s > 0 and 0.0 <= self.prior_rate <= 1.0 and self.prior_weight >= 0):
            raise ValueError("need half_life_s > 0, 0 <= prior_rate <= 1, prior_weight >= 0")
        if self.max_reasons < 1:
            raise ValueError("max_reasons must be at least 1")


class ApprovalStats:
    """Exponentially decayed approvals and declines, plus plain totals and decline reasons."""

    __slots__ = ("_approved", "_at", "_declined", "approvals", "declines", "policy", "reasons")

    def __init__(self, policy: ApprovalPolicy | None = None, *, now: float = 0.0) -> None:
        self.policy = policy or ApprovalPolicy()
        self._approved = 0.0
        self._declined = 0.0
        self._at = now
        self.approvals = 0
        self.declines = 0
        self.reasons: dict[str, int] = {}

    def _decay_to(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed > 0:  # a clock that went backwards decays nothing
            factor = 0.5 ** (elapsed / self.policy.half_life_s)
            self._approved *= factor
            self._declined *= factor
            self._at = now

    def approved(self, now: float) -> None:
        self._decay_to(now)
        self._approved += 1.0
        self.approvals += 1

    def declined(self, now: float, reason: str | None = None) -> None:
        self._decay_to(now)
        self._declined += 1.0
        self.declines += 1
        key = reason or "unspecified"
        if key not in self.reasons and len(self.reasons) >= self.policy.max_reasons:
            key = "other"
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def weights(self, now: float) -> tuple[float, float]:
        """Decayed (approvals, declines) as of ``now``, without changing the state."""
        elapsed = max(0.0, now - self._at)
        factor = 0.5 ** (elapsed / self.policy.half_life_s)
        return self._approved * factor, self._declined * factor

    def rate(self, now: float) -> float:
        approved, declined = self.weights(now)
        p = self.policy
        return (approved + p.prior_rate * p.prior_weight) / (approved + declined + p.prior_weight)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What the router and operators see of one channel's health at one moment."""

    level: HealthLevel
    score: float
    level_since: float
    consecutive_failures: int
    consecutive_successes: int
    technical_failures: int
    technical_successes: int
    last_failure_at: float | None
    last_failure_reason: str | None
    last_success_at: float | None
    approval_rate: float
    approval_weight: float  # decayed approvals + declines behind the rate
    approvals: int
    declines: int
    decline_reasons: Mapping[str, int] = field(default_factory=dict)

    @property
    def excluded(self) -> bool:
        return self.level is HealthLevel.DOWN

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level.value,
            "score": round(self.score, 6),
            "level_since": self.level_since,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "technical_failures": self.technical_failures,
            "technical_successes": self.technical_successes,
            "last_failure_at": self.last_failure_at,
            "last_failure_reason": self.last_failure_reason,
            "last_success_at": self.last_success_at,
            "approval_rate": round(self.approval_rate, 6),
            "approval_weight": round(self.approval_weight, 3),
            "approvals": self.approvals,
            "declines": self.declines,
            "decline_reasons": dict(self.decline_reasons),
        }


class ChannelHealth:
    """Both signals of one channel, fed one classified outcome at a time."""

    __slots__ = ("approval", "technical")

    def __init__(
        self,
        policy: HealthPolicy | None = None,
        approval: ApprovalPolicy | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        self.technical = TechnicalHealth(policy, now=now)
        self.approval = ApprovalStats(approval, now=now)

    def observe(
        self, operation: Operation, outcome: Outcome, reason: str | None, now: float
    ) -> None:
        """Feed one result through the tables: technical health sees every operation,
        approval only the operations where the provider decides on the customer's money."""
        if TECHNICAL_SIGNAL[outcome]:
            self.technical.success(now)
        else:
            self.technical.failure(now, reason)
        if operation in APPROVAL_OPERATIONS:
            approved = APPROVAL_SIGNAL.get(outcome)
            if approved is not None:
                self.business(approved, reason, now)

    def business(self, approved: bool, reason: str | None, now: float) -> None:
        """A customer's payment approved or declined, however the switch learned it (a result,
        a callback, a query that settled a pending hold). Technical health is not touched."""
        if approved:
            self.approval.approved(now)
        else:
            self.approval.declined(now, reason)

    def snapshot(self, now: float) -> HealthSnapshot:
        tech = self.technical
        approved, declined = self.approval.weights(now)
        return HealthSnapshot(
            level=tech.level,
            score=tech.score,
            level_since=tech.level_since,
            consecutive_failures=tech.consecutive_failures,
            consecutive_successes=tech.consecutive_successes,
            technical_failures=tech.failures,
            technical_successes=tech.successes,
            last_failure_at=tech.last_failure_at,
            last_failure_reason=tech.last_failure_reason,
            last_success_at=tech.last_success_at,
            approval_rate=self.approval.rate(now),
            approval_weight=approved + declined,
            approvals=self.approval.approvals,
            declines=self.approval.declines,
            decline_reasons=dict(self.approval.reasons),
        )


class LatencyStats:
    """Per-operation call latency: count, total, max and last (seconds)."""

    __slots__ = ("count", "last_s", "max_s", "total_s")

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0
        self.last_s = 0.0

    def record(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)
        self.last_s = seconds

    def to_dict(self) -> dict[str, float | int]:
        mean = self.total_s / self.count if self.count else 0.0
        return {
            "count": self.count,
            "mean_s": round(mean, 6),
            "max_s": round(self.max_s, 6),
            "last_s": round(self.last_s, 6),
        }
