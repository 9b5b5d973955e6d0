"""Tests for the pure supervision policy in ``actors.policy``.

Plain example tests pin the OTP semantics on hand-picked cases; hypothesis properties
check ``RestartWindow`` against a keep-everything reference model, ``Backoff`` against
its documented bounds, and the restart tables/strategies over generated inputs.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.policy import (
    ABNORMAL,
    KILLED,
    NORMAL,
    PASSIVATED,
    RESTART_ON_EXIT,
    SHUTDOWN,
    Backoff,
    Exit,
    ExitKind,
    Restart,
    RestartWindow,
    Strategy,
    restart_group,
    should_restart,
)

PROPS = settings(max_examples=100, deadline=None)
FEW = settings(max_examples=60, deadline=None)

INF = math.inf
NAN = math.nan

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

# Quarter-second ticks: every sum/difference of these is exact in binary floating point,
# so "now - t <= period" and OTP's "t >= now - period" are the same test on them.
QUARTER = 0.25
exact_times = st.lists(st.integers(min_value=0, max_value=4_000), max_size=40).map(
    lambda ticks: [tick * QUARTER for tick in sorted(ticks)]
)
exact_periods = st.integers(min_value=1, max_value=400).map(lambda ticks: ticks * QUARTER)
int_times = st.lists(st.integers(min_value=-1_000, max_value=1_000), max_size=40).map(sorted)
intensities = st.integers(min_value=0, max_value=8)

finite_times = st.lists(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
    max_size=40,
).map(sorted)
finite_periods = st.floats(
    min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False, exclude_min=False
)

# Moderate Backoff parameters: wide enough to exercise every branch of ``base``.
min_delays = st.one_of(
    st.just(0.0), st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)
)
max_delays = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
jitters = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
factors = st.one_of(
    st.just(1.0), st.floats(min_value=1.0, max_value=100.0, allow_nan=False, allow_infinity=False)
)
attempts = st.integers(min_value=0, max_value=10_000)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    lo = draw(min_delays)
    hi = max(lo, draw(max_delays))
    return Backoff(min_delay=lo, max_delay=hi, jitter=draw(jitters), factor=draw(factors))


@st.composite
def any_valid_backoffs(draw: st.DrawFn) -> Backoff:
    """Every parameter the constructor accepts as valid (finite, ordered, in range)."""
    finite_nonneg = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
    lo = draw(finite_nonneg)
    hi = draw(finite_nonneg)
    lo, hi = min(lo, hi), max(lo, hi)
    factor = draw(st.floats(min_value=1.0, allow_nan=False, allow_infinity=False))
    return Backoff(min_delay=lo, max_delay=hi, jitter=draw(jitters), factor=factor)


names = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8),
    min_size=1,
    max_size=12,
    unique=True,
)


# ---------------------------------------------------------------------------
# Reference model for RestartWindow
# ---------------------------------------------------------------------------


class ReferenceWindow:
    """Keep every restart ever recorded; count those at most ``period`` seconds old."""

    def __init__(self, intensity: int, period: float) -> None:
        self.intensity = intensity
        self.period = period
        self.times: list[float] = []

    def recent(self, now: float) -> int:
        return sum(1 for t in self.times if now - t <= self.period)

    def record(self, now: float) -> bool:
        self.times.append(now)
        return self.recent(now) <= self.intensity


class OtpWindow:
    """Literal transcription of OTP ``supervisor:add_restart/3`` (takewhile R >= Now - P)."""

    def __init__(self, intensity: int, period: float) -> None:
        self.intensity = intensity
        self.period = period
        self.restarts: list[float] = []  # newest first, like the Erlang list

    def record(self, now: float) -> bool:
        threshold = now - self.period
        kept: list[float] = []
        for r in self.restarts:
            if not r >= threshold:
                break
            kept.append(r)
        self.restarts = [now, *kept]
        return len(self.restarts) <= self.intensity


# ---------------------------------------------------------------------------
# RestartWindow: examples
# ---------------------------------------------------------------------------


def test_window_allows_intensity_restarts_then_refuses() -> None:
    window = RestartWindow(intensity=3, period=5.0)
    assert [window.record(0.0), window.record(1.0), window.record(2.0)] == [True] * 3
    assert window.record(3.0) is False


def test_window_restart_exactly_period_ago_still_counts() -> None:
    window = RestartWindow(intensity=1, period=5.0)
    assert window.record(10.0) is True
    assert window.record(15.0) is False  # 10.0 is exactly `period` old: still in the window


def test_window_restart_just_over_period_ago_is_dropped() -> None:
    window = RestartWindow(intensity=1, period=5.0)
    assert window.record(10.0) is True
    assert window.record(15.25) is True
    assert window.recent(15.25) == 1


def test_window_refused_restarts_are_still_counted() -> None:
    # OTP keeps the refused restart in the list too (State1 carries R1 either way).
    window = RestartWindow(intensity=1, period=10.0)
    assert window.record(0.0) is True
    assert window.record(1.0) is False
    assert window.recent(1.0) == 2
    # 0.0 falls out at 10.25, but 1.0 (the refused one) is still inside.
    assert window.record(10.25) is False
    # 10.25 was refused yet counted, so it keeps 11.5 over the limit too.
    assert window.record(11.5) is False
    assert window.recent(11.5) == 2
    # Only a gap longer than `period` after the last refusal clears the window.
    assert window.record(22.0) is True
    assert window.recent(22.0) == 1


def test_window_intensity_zero_refuses_first_restart() -> None:
    window = RestartWindow(intensity=0, period=1.0)
    assert window.record(0.0) is False
    assert window.record(100.0) is False


def test_window_recent_starts_empty_and_ages_out() -> None:
    window = RestartWindow(intensity=5, period=2.0)
    assert window.recent(0.0) == 0
    window.record(0.0)
    window.record(1.0)
    assert window.recent(1.0) == 2
    assert window.recent(2.0) == 2  # 0.0 is exactly period old
    assert window.recent(2.5) == 1
    assert window.recent(3.5) == 0


def test_window_keeps_constructor_arguments() -> None:
    window = RestartWindow(intensity=4, period=2.5)
    assert (window.intensity, window.period) == (4, 2.5)


@pytest.mark.parametrize(
    ("intensity", "period"),
    [(-1, 5.0), (-100, 1.0), (1, 0.0), (1, -0.0), (1, -1.0), (0, 0), (3, -INF)],
)
def test_window_rejects_invalid_arguments(intensity: int, period: float) -> None:
    with pytest.raises(ValueError):
        RestartWindow(intensity, period)


@pytest.mark.parametrize(("intensity", "period"), [(0, 1e-12), (0, 5.0), (10, INF), (1, 1)])
def test_window_accepts_boundary_arguments(intensity: int, period: float) -> None:
    RestartWindow(intensity, period)


# ---------------------------------------------------------------------------
# RestartWindow: properties
# ---------------------------------------------------------------------------


@PROPS
@given(times=exact_times, intensity=intensities, period=exact_periods)
def test_window_matches_reference_model_exact_times(
    times: list[float], intensity: int, period: float
) -> None:
    window = RestartWindow(intensity, period)
    model = ReferenceWindow(intensity, period)
    for now in times:
        assert window.record(now) == model.record(now), (now, model.times)
        assert window.recent(now) == model.recent(now)


@PROPS
@given(
    times=int_times,
    intensity=intensities,
    period=st.integers(min_value=1, max_value=300),
)
def test_window_matches_reference_model_int_times(
    times: list[int], intensity: int, period: int
) -> None:
    window = RestartWindow(intensity, period)
    model = ReferenceWindow(intensity, period)
    for now in times:
        assert window.record(now) == model.record(now)


@PROPS
@given(times=finite_times, intensity=intensities, period=finite_periods)
def test_window_matches_literal_otp_add_restart_on_any_floats(
    times: list[float], intensity: int, period: float
) -> None:
    window = RestartWindow(intensity, period)
    otp = OtpWindow(intensity, period)
    for now in times:
        assert window.record(now) == otp.record(now)


@PROPS
@given(
    times=exact_times,
    intensity=intensities,
    period=exact_periods,
    later=st.integers(min_value=0, max_value=2_000),
)
def test_window_recent_matches_reference_at_later_time(
    times: list[float], intensity: int, period: float, later: int
) -> None:
    window = RestartWindow(intensity, period)
    model = ReferenceWindow(intensity, period)
    for now in times:
        window.record(now)
        model.record(now)
    query = (times[-1] if times else 0.0) + later * QUARTER
    assert window.recent(query) == model.recent(query)


@PROPS
@given(
    intensity=st.integers(min_value=1, max_value=20),
    period=finite_periods,
    now=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_window_k_restarts_at_one_instant_allowed_then_refused(
    intensity: int, period: float, now: float
) -> None:
    window = RestartWindow(intensity, period)
    assert all(window.record(now) for _ in range(intensity))
    assert window.record(now) is False
    assert window.recent(now) == intensity + 1


@PROPS
@given(
    intensity=st.integers(min_value=1, max_value=5),
    period=st.integers(min_value=1, max_value=1_000),
    start=st.integers(min_value=-(10**6), max_value=10**6),
    extras=st.lists(st.integers(min_value=1, max_value=10_000), max_size=30),
)
def test_window_restarts_spaced_beyond_period_always_allowed(
    intensity: int, period: int, start: int, extras: list[int]
) -> None:
    window = RestartWindow(intensity, period)
    now = start
    assert window.record(now) is True
    for extra in extras:
        now += period + extra
        assert window.record(now) is True
        assert window.recent(now) == 1


@PROPS
@given(
    period=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
    spacing=st.floats(min_value=1.001, max_value=10.0),
    count=st.integers(min_value=1, max_value=30),
)
def test_window_float_spacing_beyond_period_always_allowed(
    period: float, spacing: float, count: int
) -> None:
    window = RestartWindow(1, period)
    for i in range(count):
        assert window.record(i * period * spacing) is True


@FEW
@given(times=finite_times, period=finite_periods)
def test_window_intensity_zero_refuses_everything(times: list[float], period: float) -> None:
    window = RestartWindow(0, period)
    assert not any(window.record(now) for now in times)


@PROPS
@given(times=exact_times, intensity=intensities, period=exact_periods)
def test_window_allowed_iff_recent_within_intensity(
    times: list[float], intensity: int, period: float
) -> None:
    window = RestartWindow(intensity, period)
    for now in times:
        allowed = window.record(now)
        assert allowed == (window.recent(now) <= intensity)
        assert window.recent(now) >= 1


@FEW
@given(
    intensity=st.integers(max_value=-1),
    period=st.floats(allow_nan=False),
)
def test_window_rejects_negative_intensity(intensity: int, period: float) -> None:
    with pytest.raises(ValueError):
        RestartWindow(intensity, period)


@FEW
@given(intensity=st.integers(min_value=0), period=st.floats(max_value=0.0, allow_nan=False))
def test_window_rejects_nonpositive_period(intensity: int, period: float) -> None:
    with pytest.raises(ValueError):
        RestartWindow(intensity, period)


# ---------------------------------------------------------------------------
# Backoff: examples
# ---------------------------------------------------------------------------


def test_backoff_defaults() -> None:
    b = Backoff()
    assert (b.min_delay, b.max_delay, b.jitter, b.factor, b.reset_after) == (
        0.1,
        30.0,
        0.2,
        2.0,
        60.0,
    )


def test_backoff_base_sequence_doubles_then_caps() -> None:
    b = Backoff(min_delay=1.0, max_delay=10.0, factor=2.0)
    assert [b.base(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_base_negative_attempt_is_min_delay() -> None:
    b = Backoff(min_delay=0.5, max_delay=10.0)
    assert b.base(-1) == 0.5
    assert b.base(-(10**9)) == 0.5


def test_backoff_zero_min_delay_stays_zero() -> None:
    b = Backoff(min_delay=0.0, max_delay=10.0, factor=3.0)
    assert [b.base(n) for n in (0, 1, 50, 10**6)] == [0.0] * 4


def test_backoff_factor_one_is_constant() -> None:
    b = Backoff(min_delay=0.3, max_delay=10.0, factor=1.0)
    assert {b.base(n) for n in (0, 1, 7, 10**6, 10**12)} == {0.3}


def test_backoff_equal_min_and_max_is_constant() -> None:
    b = Backoff(min_delay=2.0, max_delay=2.0, factor=5.0)
    assert {b.base(n) for n in (0, 1, 2, 10**6)} == {2.0}


def test_backoff_huge_attempt_with_default_parameters() -> None:
    b = Backoff()
    assert b.base(10**6) == b.max_delay
    assert b.base(10**100) == b.max_delay
    assert b.max_delay * (1 - b.jitter) <= b.delay(10**6, random.Random(0)) <= b.max_delay


def test_backoff_huge_attempt_with_extreme_delay_ratio_does_not_overflow() -> None:
    # Valid parameters whose max/min ratio exceeds the float range: max_delay / min_delay
    # overflows to inf, the exponent guard is then always true, and factor**attempt raises
    # OverflowError instead of capping at max_delay.
    b = Backoff(min_delay=1e-10, max_delay=1e300, factor=2.0)
    assert b.base(10**6) == 1e300


def test_backoff_subnormal_min_delay_does_not_overflow() -> None:
    b = Backoff(min_delay=5e-324, max_delay=1.0, factor=2.0)
    assert b.base(2_000) == 1.0
    assert b.base(10**6) == 1.0


def test_backoff_delay_uses_module_random_when_no_rng() -> None:
    b = Backoff(min_delay=1.0, max_delay=8.0, jitter=0.5)
    for _ in range(50):
        d = b.delay(3)
        assert 4.0 <= d <= 8.0


def test_backoff_delay_full_jitter_range() -> None:
    b = Backoff(min_delay=4.0, max_delay=4.0, jitter=1.0)
    rng = random.Random(1234)
    samples = [b.delay(0, rng) for _ in range(200)]
    assert all(0.0 < s <= 4.0 for s in samples)
    assert min(samples) < 1.0 and max(samples) > 3.0  # actually spread out


def test_backoff_delay_is_reproducible_with_seeded_rng() -> None:
    b = Backoff()
    first = [b.delay(n, random.Random(7)) for n in range(10)]
    second = [b.delay(n, random.Random(7)) for n in range(10)]
    assert first == second


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_delay": 2.0, "max_delay": 1.0},
        {"min_delay": -0.1},
        {"min_delay": -1.0, "max_delay": -0.5},
        {"max_delay": -1.0},
        {"jitter": -0.01},
        {"jitter": 1.01},
        {"factor": 0.99},
        {"factor": 0.0},
        {"factor": -2.0},
        {"reset_after": -1.0},
        {"max_delay": INF},
        {"min_delay": INF, "max_delay": INF},
        {"min_delay": -INF},
    ],
)
def test_backoff_rejects_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@pytest.mark.parametrize("field", ["min_delay", "max_delay", "jitter", "factor", "reset_after"])
def test_backoff_rejects_nan_parameters(field: str) -> None:
    # NaN satisfies none of the documented constraints (0 <= x, factor >= 1, ...).
    with pytest.raises(ValueError):
        Backoff(**{field: NAN})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_delay": 0.0, "max_delay": 0.0},
        {"jitter": 0.0},
        {"jitter": 1.0},
        {"factor": 1.0},
        {"reset_after": 0.0},
        {"min_delay": 5.0, "max_delay": 5.0},
    ],
)
def test_backoff_accepts_boundary_parameters(kwargs: dict[str, float]) -> None:
    Backoff(**kwargs)


def test_backoff_is_frozen() -> None:
    b = Backoff()
    with pytest.raises(AttributeError):
        b.min_delay = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Backoff: properties
# ---------------------------------------------------------------------------


@PROPS
@given(b=backoffs(), attempt=attempts)
def test_backoff_base_non_decreasing(b: Backoff, attempt: int) -> None:
    assert b.base(attempt) <= b.base(attempt + 1)


@PROPS
@given(b=backoffs(), seq=st.lists(attempts, min_size=2, max_size=20).map(sorted))
def test_backoff_base_non_decreasing_over_sequences(b: Backoff, seq: list[int]) -> None:
    values = [b.base(n) for n in seq]
    assert values == sorted(values)


@PROPS
@given(b=backoffs())
def test_backoff_base_at_zero_is_min_delay(b: Backoff) -> None:
    assert b.base(0) == b.min_delay


@PROPS
@given(b=backoffs(), attempt=st.one_of(attempts, st.integers(min_value=0)))
def test_backoff_base_within_min_and_max(b: Backoff, attempt: int) -> None:
    assert b.min_delay <= b.base(attempt) <= b.max_delay


@PROPS
@given(b=backoffs(), attempt=st.integers(min_value=0, max_value=60))
def test_backoff_base_matches_closed_form(b: Backoff, attempt: int) -> None:
    expected = min(b.max_delay, b.min_delay * b.factor**attempt)
    assert b.base(attempt) == pytest.approx(expected, rel=1e-12)


@PROPS
@given(
    lo=st.floats(min_value=1e-6, max_value=1e3),
    ratio=st.floats(min_value=1.0, max_value=1e6),
    factor=st.floats(min_value=1.01, max_value=100.0),
)
def test_backoff_reaches_max_eventually(lo: float, ratio: float, factor: float) -> None:
    b = Backoff(min_delay=lo, max_delay=lo * ratio, factor=factor)
    needed = math.ceil(math.log(b.max_delay / b.min_delay) / math.log(factor)) + 1
    assert b.base(needed) == b.max_delay
    assert b.base(needed + 1) == b.max_delay


@PROPS
@given(b=backoffs(), attempt=st.sampled_from([10**6, 10**9, 10**18, 10**100]))
def test_backoff_huge_attempts_do_not_overflow(b: Backoff, attempt: int) -> None:
    base = b.base(attempt)
    assert math.isfinite(base)
    if b.min_delay == 0 or b.factor == 1:
        assert base == b.min_delay
        return
    # Closed form through logarithms, capped before exp() so the reference cannot overflow.
    log_ratio = math.log(b.max_delay / b.min_delay)
    exponent = min(attempt * math.log(b.factor), log_ratio + 1.0)
    expected = min(b.max_delay, b.min_delay * math.exp(exponent))
    assert base == pytest.approx(expected, rel=1e-6)
    if exponent > log_ratio:
        assert base == b.max_delay


@PROPS
@given(b=any_valid_backoffs(), attempt=st.sampled_from([0, 1, 100, 10**6]))
def test_backoff_huge_attempts_do_not_overflow_for_any_valid_parameters(
    b: Backoff, attempt: int
) -> None:
    base = b.base(attempt)
    assert b.min_delay <= base <= b.max_delay


@PROPS
@given(b=backoffs(), attempt=attempts, seed=st.integers())
def test_backoff_delay_within_jitter_bounds(b: Backoff, attempt: int, seed: int) -> None:
    base = b.base(attempt)
    d = b.delay(attempt, random.Random(seed))
    assert base * (1 - b.jitter) <= d <= base
    assert d >= 0.0


@PROPS
@given(b=backoffs(), attempt=attempts, seed=st.integers())
def test_backoff_zero_jitter_delay_equals_base(b: Backoff, attempt: int, seed: int) -> None:
    exact = Backoff(min_delay=b.min_delay, max_delay=b.max_delay, jitter=0.0, factor=b.factor)
    assert exact.delay(attempt, random.Random(seed)) == exact.base(attempt)


@FEW
@given(
    lo=st.floats(min_value=0.0, max_value=1e6),
    gap=st.floats(min_value=1e-6, max_value=1e6),
)
def test_backoff_rejects_min_above_max(lo: float, gap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(min_delay=lo + gap, max_delay=lo)


@FEW
@given(jitter=st.one_of(st.floats(max_value=-1e-12), st.floats(min_value=1 + 1e-12)))
def test_backoff_rejects_jitter_outside_unit_interval(jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(jitter=jitter)


@FEW
@given(factor=st.floats(max_value=0.999999, allow_nan=False))
def test_backoff_rejects_factor_below_one(factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(factor=factor)


@FEW
@given(value=st.floats(max_value=-1e-300, allow_nan=False))
def test_backoff_rejects_negative_delays(value: float) -> None:
    with pytest.raises(ValueError):
        Backoff(min_delay=value)
    with pytest.raises(ValueError):
        Backoff(min_delay=value, max_delay=value)
    with pytest.raises(ValueError):
        Backoff(reset_after=value)


# ---------------------------------------------------------------------------
# Exit reasons and the restart table
# ---------------------------------------------------------------------------


def test_abnormal_set_is_crashed_and_killed() -> None:
    assert frozenset({ExitKind.CRASHED, ExitKind.KILLED}) == ABNORMAL


@pytest.mark.parametrize(
    ("kind", "abnormal"),
    [
        (ExitKind.NORMAL, False),
        (ExitKind.SHUTDOWN, False),
        (ExitKind.PASSIVATED, False),
        (ExitKind.CRASHED, True),
        (ExitKind.KILLED, True),
    ],
)
def test_exit_abnormal_by_kind(kind: ExitKind, abnormal: bool) -> None:
    assert Exit(kind).abnormal is abnormal
    assert Exit(kind, RuntimeError("x")).abnormal is abnormal


def test_exit_constants() -> None:
    assert Exit(ExitKind.NORMAL) == NORMAL
    assert Exit(ExitKind.SHUTDOWN) == SHUTDOWN
    assert Exit(ExitKind.PASSIVATED) == PASSIVATED
    assert Exit(ExitKind.KILLED) == KILLED
    assert all(e.error is None for e in (NORMAL, SHUTDOWN, PASSIVATED, KILLED))


def test_exit_describe_without_error() -> None:
    assert NORMAL.describe() == "normal"
    assert KILLED.describe() == "killed"


def test_exit_describe_with_error() -> None:
    exit_ = Exit(ExitKind.CRASHED, ValueError("bad pump id"))
    assert exit_.describe() == "crashed: ValueError: bad pump id"


def test_exit_is_frozen() -> None:
    with pytest.raises(AttributeError):
        NORMAL.kind = ExitKind.CRASHED  # type: ignore[misc]


def test_restart_table_covers_every_pair() -> None:
    expected = {(r, abnormal) for r in Restart for abnormal in (False, True)}
    assert set(RESTART_ON_EXIT) == expected
    assert len(RESTART_ON_EXIT) == 6


def test_restart_table_values() -> None:
    for abnormal in (False, True):
        assert RESTART_ON_EXIT[Restart.PERMANENT, abnormal] is True
        assert RESTART_ON_EXIT[Restart.TEMPORARY, abnormal] is False
        assert RESTART_ON_EXIT[Restart.TRANSIENT, abnormal] is abnormal


@pytest.mark.parametrize("restart", list(Restart))
@pytest.mark.parametrize("kind", list(ExitKind))
def test_should_restart_every_combination(restart: Restart, kind: ExitKind) -> None:
    abnormal = kind in {ExitKind.CRASHED, ExitKind.KILLED}
    expected = {
        Restart.PERMANENT: True,
        Restart.TRANSIENT: abnormal,
        Restart.TEMPORARY: False,
    }[restart]
    assert should_restart(restart, Exit(kind)) is expected
    assert should_restart(restart, Exit(kind, RuntimeError("boom"))) is expected


def test_transient_restarts_only_after_crash_or_kill() -> None:
    assert should_restart(Restart.TRANSIENT, Exit(ExitKind.CRASHED, OSError("io")))
    assert should_restart(Restart.TRANSIENT, KILLED)
    assert not should_restart(Restart.TRANSIENT, NORMAL)
    assert not should_restart(Restart.TRANSIENT, SHUTDOWN)
    assert not should_restart(Restart.TRANSIENT, PASSIVATED)


# ---------------------------------------------------------------------------
# restart_group
# ---------------------------------------------------------------------------


def test_restart_group_examples() -> None:
    order = ["db", "cache", "pumps", "api"]
    assert restart_group(Strategy.ONE_FOR_ONE, order, "pumps") == ["pumps"]
    assert restart_group(Strategy.ONE_FOR_ALL, order, "pumps") == order
    assert restart_group(Strategy.REST_FOR_ONE, order, "pumps") == ["pumps", "api"]
    assert restart_group(Strategy.REST_FOR_ONE, order, "db") == order
    assert restart_group(Strategy.REST_FOR_ONE, order, "api") == ["api"]


def test_restart_group_returns_fresh_list() -> None:
    order = ["a", "b"]
    group = restart_group(Strategy.ONE_FOR_ALL, order, "a")
    assert group == order
    assert group is not order
    group.append("c")
    assert order == ["a", "b"]


def test_restart_group_accepts_tuple_order() -> None:
    order = ("a", "b", "c")
    assert restart_group(Strategy.REST_FOR_ONE, order, "b") == ["b", "c"]
    assert restart_group(Strategy.ONE_FOR_ALL, order, "b") == ["a", "b", "c"]


@PROPS
@given(data=st.data(), order=names)
def test_restart_group_one_for_one_is_just_the_child(data: st.DataObject, order: list[str]) -> None:
    failed = data.draw(st.sampled_from(order))
    assert restart_group(Strategy.ONE_FOR_ONE, order, failed) == [failed]


@PROPS
@given(data=st.data(), order=names)
def test_restart_group_one_for_all_is_everyone_in_order(
    data: st.DataObject, order: list[str]
) -> None:
    failed = data.draw(st.sampled_from(order))
    assert restart_group(Strategy.ONE_FOR_ALL, order, failed) == order


@PROPS
@given(data=st.data(), order=names)
def test_restart_group_rest_for_one_is_suffix_from_failed(
    data: st.DataObject, order: list[str]
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(order) - 1))
    failed = order[index]
    group = restart_group(Strategy.REST_FOR_ONE, order, failed)
    assert group == order[index:]
    assert group[0] == failed
    # Nobody started before the failed child is touched.
    assert not set(group) & set(order[:index])


@PROPS
@given(data=st.data(), order=names, strategy=st.sampled_from(list(Strategy)))
def test_restart_group_is_ordered_subsequence_containing_failed(
    data: st.DataObject, order: list[str], strategy: Strategy
) -> None:
    failed = data.draw(st.sampled_from(order))
    group = restart_group(strategy, order, failed)
    assert failed in group
    positions = [order.index(name) for name in group]
    assert positions == sorted(set(positions))


def test_restart_group_rest_for_one_unknown_child_raises() -> None:
    with pytest.raises(ValueError):
        restart_group(Strategy.REST_FOR_ONE, ["a", "b"], "zzz")
