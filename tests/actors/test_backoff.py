"""``actors.policy.Backoff``: restart delays, their growth, caps, jitter and validation.

Example tests pin hand-picked cases; hypothesis properties check ``Backoff`` against its
documented bounds, including attempts large enough to overflow a naive implementation.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.policy import Backoff
from tests.actors.support import FEW, INF, PROPS

NAN = math.nan

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

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
