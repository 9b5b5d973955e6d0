"""``actors.policy.RestartWindow``: restart intensity within a period, as OTP counts it.

Example tests pin the OTP semantics on hand-picked cases; hypothesis properties check the
window against a keep-everything reference model and a literal transcription of OTP's
``supervisor:add_restart/3``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.policy import RestartWindow
from tests.actors.support import FEW, INF, PROPS

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
