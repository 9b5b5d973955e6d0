"""The PumpActor's poll schedule as pure arithmetic: fixed rate, on a grid, no bursts."""

from __future__ import annotations

import itertools
import math

import pytest

from devices.pump_base import next_poll


def test_the_first_poll_sets_the_phase_and_the_rate_does_not_drift() -> None:
    ideal, due = next_poll(-math.inf, 1.0, 10.03, 0.1)
    assert (ideal, due) == pytest.approx((11.03, 11.1))
    # each poll ends some time after it was due; the schedule advances from the ideal
    for n in range(2, 50):
        ideal, due = next_poll(ideal, 1.0, due + 0.04, 0.1)
        assert ideal == pytest.approx(10.03 + n)
        assert due == pytest.approx(math.ceil(round((10.03 + n) * 10, 6)) / 10)


def test_pumps_with_nearby_phases_share_a_grid_tick() -> None:
    dues = {round(next_poll(-math.inf, 1.0, 5.0 + k / 1000, 0.1)[1], 6) for k in range(1, 90)}
    assert dues == {6.1}


def test_a_schedule_that_fell_behind_restarts_from_now_instead_of_bursting() -> None:
    ideal, due = next_poll(3.0, 1.0, 9.0, 0.1)  # a command kept the actor busy for 6 s
    assert (ideal, due) == pytest.approx((9.0, 9.0))
    ideal, due = next_poll(ideal, 1.0, 9.01, 0.1)
    assert (ideal, due) == pytest.approx((10.0, 10.0))


def test_the_grid_is_at_most_a_quarter_of_the_interval_and_none_when_flat_out() -> None:
    _, due = next_poll(1.01, 0.25, 1.0, 0.1)  # active polling at 4 Hz: a 62.5 ms grid
    assert due == pytest.approx(1.3125)
    assert next_poll(1.0, 0.0, 2.5, 0.1) == (2.5, 2.5)  # interval 0: poll again at once
    assert next_poll(1.0, 1.0, 1.5, 0.0) == (2.0, 2.0)  # quantum 0: no grid


def test_pumps_on_one_beat_poll_at_the_same_instant_whatever_they_did_before() -> None:
    # Idle pumps of a station share a phase: their polls leave in one write. Pumps that
    # started at different moments, or came off the active rate, land on the same beat.
    started = [(-math.inf, 5.0 + k / 7) for k in range(7)]
    from_active = [(12.3 + k / 10, 12.5) for k in range(5)]
    for ideal, now in started + from_active:
        new_ideal, due = next_poll(ideal, 1.0, now, 0.1, phase=0.25)
        assert due == new_ideal >= now
        assert due - 0.25 == pytest.approx(round(due - 0.25), abs=1e-9)  # on the beat
        if ideal != -math.inf:
            assert 0.5 - 1e-9 <= due - ideal <= 1.5 + 1e-9  # joins after 0.5-1.5 intervals
    dues = {next_poll(ideal, 1.0, now, 0.1, phase=0.25)[1] for ideal, now in from_active}
    assert dues == {13.25}  # the beat nearest the next point: all at once


def test_a_beat_keeps_its_rate_without_drift_and_restarts_after_falling_behind() -> None:
    ideal, due = next_poll(-math.inf, 1.0, 100.0, 0.1, phase=0.6)
    assert due == pytest.approx(100.6)
    beats = [due]
    for _ in range(1000):
        ideal, due = next_poll(ideal, 1.0, due + 0.03, 0.1, phase=0.6)
        beats.append(due)
    assert beats[-1] == pytest.approx(1100.6)  # computed from the beat: no drift
    assert {round(b - a, 9) for a, b in itertools.pairwise(beats)} == {1.0}
    # a command kept the actor busy for 6 s: the next beat not before now, no burst
    ideal, due = next_poll(ideal, 1.0, ideal + 6.2, 0.1, phase=0.6)
    assert due == pytest.approx(1107.6)
    assert next_poll(1.0, 0.0, 2.5, 0.1, phase=0.6) == (2.5, 2.5)  # interval 0: at once
