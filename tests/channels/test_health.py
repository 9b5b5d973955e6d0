"""Channel health without a clock: the levels' failure counts, recovery, and approval decay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.health import (
    APPROVAL_OPERATIONS,
    TECHNICAL_SIGNAL,
    ApprovalPolicy,
    ApprovalStats,
    ChannelHealth,
    HealthLevel,
    HealthPolicy,
    LatencyStats,
    TechnicalHealth,
)
from channels.model import Operation, Outcome

PROPS = settings(max_examples=200, deadline=None)


def level_of(health: TechnicalHealth) -> HealthLevel:
    """Read through a call: mypy would otherwise keep the level it narrowed before a mutation."""
    return health.level


def fail(health: TechnicalHealth, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        health.failure(now, "timeout")


# -- technical health: the levels ------------------------------------------------------------


def test_fluctuating_at_the_20th_and_down_at_the_45th_consecutive_failure() -> None:
    health = TechnicalHealth()
    fail(health, 19)
    assert level_of(health) is HealthLevel.HEALTHY
    fail(health, 1)
    assert level_of(health) is HealthLevel.FLUCTUATING
    fail(health, 24)
    assert level_of(health) is HealthLevel.FLUCTUATING
    fail(health, 1)
    assert level_of(health) is HealthLevel.DOWN
    assert health.excluded
    assert health.consecutive_failures == 45
    assert health.last_failure_reason == "timeout"


@PROPS
@given(fluctuating=st.integers(1, 80), extra=st.integers(0, 80))
def test_from_counts_trips_exactly_at_the_given_counts(fluctuating: int, extra: int) -> None:
    down = fluctuating + extra
    health = TechnicalHealth(HealthPolicy.from_counts(fluctuating, down))
    levels = []
    for _ in range(down):
        health.failure(0.0)
        levels.append(health.level)
    assert levels.index(HealthLevel.FLUCTUATING if fluctuating < down else HealthLevel.DOWN) == (
        fluctuating - 1
    )
    assert levels[-1] is HealthLevel.DOWN
    assert HealthLevel.DOWN not in levels[:-1]


def test_a_degraded_channel_trips_sooner_than_a_healthy_one() -> None:
    """Multiplicative: the penalty is a share of what is left, so a channel already limping
    needs fewer failures to be excluded."""
    fresh, limping = TechnicalHealth(), TechnicalHealth()
    fail(limping, 30)
    for _ in range(5):
        limping.success(1.0)
    count = 0
    while not limping.excluded:
        limping.failure(2.0)
        count += 1
    assert count < 45
    fail(fresh, count)
    assert not fresh.excluded


def test_down_comes_back_gradually_through_successes() -> None:
    policy = HealthPolicy()
    health = TechnicalHealth(policy)
    fail(health, 200)
    assert level_of(health) is HealthLevel.DOWN
    levels = []
    for i in range(200):
        health.success(float(i))
        levels.append(health.level)
    # Three probe successes leave DOWN (hysteresis: crossing down_below is not enough) ...
    assert levels[:2] == [HealthLevel.DOWN] * 2
    assert levels[2] is HealthLevel.FLUCTUATING
    # ... and HEALTHY only after a run of them, never jumping straight back.
    first_healthy = levels.index(HealthLevel.HEALTHY)
    assert first_healthy > 10
    assert all(level is HealthLevel.HEALTHY for level in levels[first_healthy:])
    assert health.score == 1.0
    assert health.consecutive_successes == 200
    assert health.consecutive_failures == 0


def test_one_failure_after_recovery_does_not_exclude_again() -> None:
    health = TechnicalHealth()
    fail(health, 60)
    for _ in range(3):
        health.success(0.0)
    assert level_of(health) is HealthLevel.FLUCTUATING
    health.failure(0.0)
    # Below recover_at again, but above down_below: not excluded.
    assert level_of(health) is HealthLevel.FLUCTUATING


@PROPS
@given(st.lists(st.booleans(), max_size=300))
def test_score_stays_in_range_and_level_follows_the_policy(events: list[bool]) -> None:
    policy = HealthPolicy()
    health = TechnicalHealth(policy)
    for ok in events:
        before = health.score
        if ok:
            health.success(0.0)
            assert health.score == min(1.0, before + policy.reward)
        else:
            health.failure(0.0)
            assert health.score == pytest.approx(before * policy.penalty)
        assert 0.0 < health.score <= 1.0
        if health.score < policy.down_below:
            assert level_of(health) is HealthLevel.DOWN
        if health.score >= policy.recover_at:
            assert level_of(health) is not HealthLevel.DOWN
    assert health.failures + health.successes == len(events)


def test_probe_due_only_when_down_and_untried_for_the_interval() -> None:
    health = TechnicalHealth(HealthPolicy(probe_interval_s=30.0))
    assert not health.probe_due(1_000.0)  # healthy: never probed
    for _ in range(45):
        health.failure(100.0)
    assert health.excluded
    assert not health.probe_due(129.0)
    assert health.probe_due(130.0)
    health.success(130.0)  # the probe answered; still DOWN after one
    assert health.excluded
    assert not health.probe_due(159.0)
    assert health.probe_due(160.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"penalty": 1.0},
        {"penalty": 0.0},
        {"reward": 0.0},
        {"penalty": float("nan")},
        {"down_below": 0.5, "recover_at": 0.4},
        {"down_below": 0.5, "recover_at": 0.6, "fluctuating_below": 0.3},
        {"probe_interval_s": 0.0},
    ],
)
def test_policy_rejects_incoherent_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(**kwargs)


def test_from_counts_rejects_inverted_counts() -> None:
    with pytest.raises(ValueError):
        HealthPolicy.from_counts(50, 20)


# -- approval --------------------------------------------------------------------------------


def test_approval_rate_is_smoothed_by_the_prior() -> None:
    stats = ApprovalStats(ApprovalPolicy(prior_rate=0.9, prior_weight=10.0))
    assert stats.rate(0.0) == pytest.approx(0.9)
    for _ in range(3):
        stats.declined(0.0, "INSUFFICIENT_FUNDS")
    # (0 + 9) / (3 + 10): three declines move it, but not to zero.
    assert stats.rate(0.0) == pytest.approx(9 / 13)
    assert stats.declines == 3
    assert stats.reasons == {"INSUFFICIENT_FUNDS": 3}


def test_old_outcomes_fade_with_the_half_life() -> None:
    stats = ApprovalStats(ApprovalPolicy(half_life_s=3600.0, prior_weight=0.0))
    for _ in range(8):
        stats.declined(0.0)
    assert stats.weights(3600.0) == pytest.approx((0.0, 4.0))
    assert stats.weights(7200.0) == pytest.approx((0.0, 2.0))
    for _ in range(2):
        stats.approved(7200.0)
    assert stats.rate(7200.0) == pytest.approx(0.5)
    assert stats.approvals == 2


def test_a_clock_going_backwards_decays_nothing() -> None:
    stats = ApprovalStats(ApprovalPolicy(prior_weight=0.0))
    stats.approved(100.0)
    stats.declined(50.0)
    assert stats.weights(50.0) == (1.0, 1.0)


def test_decline_reasons_are_bounded() -> None:
    stats = ApprovalStats(ApprovalPolicy(max_reasons=2))
    for reason in ["A", "B", "C", "D", "A", None]:
        stats.declined(0.0, reason)
    assert stats.reasons == {"A": 2, "B": 1, "other": 3}


@PROPS
@given(
    st.lists(st.tuples(st.booleans(), st.floats(0.0, 86_400.0)), max_size=100),
    st.floats(0.0, 1.0),
)
def test_rate_is_a_probability(events: list[tuple[bool, float]], prior: float) -> None:
    stats = ApprovalStats(ApprovalPolicy(prior_rate=prior))
    now = 0.0
    for approved, dt in events:
        now += dt
        if approved:
            stats.approved(now)
        else:
            stats.declined(now)
        assert 0.0 <= stats.rate(now) <= 1.0


# -- both signals together -------------------------------------------------------------------


def test_every_outcome_has_a_technical_signal() -> None:
    assert set(TECHNICAL_SIGNAL) == set(Outcome)


def test_declines_never_touch_technical_health() -> None:
    health = ChannelHealth()
    for _ in range(100):
        health.observe(Operation.HOLD, Outcome.DECLINED, "INSUFFICIENT_FUNDS", 0.0)
    snap = health.snapshot(0.0)
    assert snap.level is HealthLevel.HEALTHY
    assert snap.score == 1.0
    assert snap.technical_failures == 0
    assert snap.technical_successes == 100
    assert snap.declines == 100
    assert snap.approval_rate < 0.1
    assert snap.decline_reasons == {"INSUFFICIENT_FUNDS": 100}


def test_technical_failures_never_touch_approval() -> None:
    health = ChannelHealth()
    for outcome in (Outcome.UNKNOWN, Outcome.TECHNICAL_FAILURE):
        for _ in range(30):
            health.observe(Operation.HOLD, outcome, "timeout", 0.0)
    snap = health.snapshot(0.0)
    assert snap.excluded
    assert snap.approvals == snap.declines == 0
    assert snap.approval_weight == 0.0


@pytest.mark.parametrize("operation", list(Operation))
def test_only_customer_money_operations_count_for_approval(operation: Operation) -> None:
    health = ChannelHealth()
    health.observe(operation, Outcome.DECLINED, "X", 0.0)
    health.observe(operation, Outcome.APPROVED, None, 0.0)
    snap = health.snapshot(0.0)
    counted = operation in APPROVAL_OPERATIONS
    assert (snap.approvals, snap.declines) == ((1, 1) if counted else (0, 0))


def test_pending_counts_as_technical_success_only() -> None:
    health = ChannelHealth()
    health.observe(Operation.HOLD, Outcome.PENDING, None, 0.0)
    snap = health.snapshot(0.0)
    assert snap.technical_successes == 1
    assert snap.approvals == snap.declines == 0


def test_business_outcomes_learned_later_count_for_approval() -> None:
    health = ChannelHealth()
    health.business(False, "PAYERROR", 5.0)
    health.business(True, None, 6.0)
    snap = health.snapshot(6.0)
    assert (snap.approvals, snap.declines, snap.technical_successes) == (1, 1, 0)
    assert snap.to_dict()["decline_reasons"] == {"PAYERROR": 1}
    assert snap.to_dict()["level"] == "healthy"


def test_latency_stats() -> None:
    stats = LatencyStats()
    for seconds in (0.2, 0.4, -1.0):
        stats.record(seconds)
    assert stats.to_dict() == {"count": 3, "mean_s": 0.2, "max_s": 0.4, "last_s": 0.0}
