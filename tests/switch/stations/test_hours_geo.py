"""Opening hours (zoneinfo, overnight ranges) and distances: pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from switch.stations import distance_m, latitude_span_e6, open_now, parse_opening_hours

SHANGHAI = timezone(timedelta(hours=8))


def at(day: int, hh: int, mm: int = 0) -> datetime:
    """Shanghai wall-clock time in the week of Monday 2026-11-16."""
    return datetime(2026, 11, 16 + day, hh, mm, tzinfo=SHANGHAI)


def test_empty_hours_is_always_open() -> None:
    assert open_now({}, "Asia/Shanghai", at(0, 3))


def test_day_range() -> None:
    hours = parse_opening_hours({"mon": [["06:00", "22:00"]]})
    assert not open_now(hours, "Asia/Shanghai", at(0, 5, 59))
    assert open_now(hours, "Asia/Shanghai", at(0, 6))
    assert open_now(hours, "Asia/Shanghai", at(0, 21, 59))
    assert not open_now(hours, "Asia/Shanghai", at(0, 22))  # the end is exclusive
    assert not open_now(hours, "Asia/Shanghai", at(1, 12))  # Tuesday is not listed: closed


def test_overnight_range_belongs_to_the_day_it_starts() -> None:
    hours = parse_opening_hours({"fri": [["22:00", "06:00"]], "sun": [["00:00", "24:00"]]})
    assert not open_now(hours, "Asia/Shanghai", at(4, 21, 59))
    assert open_now(hours, "Asia/Shanghai", at(4, 23))  # Friday night
    assert open_now(hours, "Asia/Shanghai", at(5, 5, 59))  # Saturday early, Friday's shift
    assert not open_now(hours, "Asia/Shanghai", at(5, 6))
    assert not open_now(hours, "Asia/Shanghai", at(5, 23))  # Saturday has no shift
    assert open_now(hours, "Asia/Shanghai", at(6, 0))  # Sunday all day
    assert open_now(hours, "Asia/Shanghai", at(6, 23, 59))
    assert not open_now(hours, "Asia/Shanghai", at(7, 0))  # Monday


def test_local_time_of_the_station_not_of_the_caller() -> None:
    hours = parse_opening_hours({"mon": [["06:00", "22:00"]]})
    # Monday 07:00 in Shanghai is Sunday 23:00 UTC
    assert open_now(hours, "Asia/Shanghai", datetime(2026, 11, 15, 23, 0, tzinfo=UTC))
    assert not open_now(hours, "Europe/London", datetime(2026, 11, 15, 23, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        open_now(hours, "Asia/Shanghai", datetime(2026, 11, 16, 7))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mon": [["06:00", "06:00"]]}, "h.mon[0]: start and end are equal (06:00)"),
        ({"mon": [["24:00", "06:00"]]}, "h.mon[0]: '24:00' is not a time \"HH:MM\" (00:00-23:59)"),
        ({"mon": [["6:00", "22:00"]]}, "h.mon[0]: '6:00' is not a time"),
        ({"mon": [["06:00"]]}, 'h.mon[0]: expected ["HH:MM", "HH:MM"]'),
        ({"mon": "06:00-22:00"}, "h.mon: expected a list of [start, end] pairs"),
        ({"lundi": []}, "h.lundi: not a day"),
        ([], "h: expected a table of days"),
    ],
)
def test_bad_hours(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_opening_hours(raw, "h")


def test_distances() -> None:
    square = (31_230_416, 121_473_701)
    assert distance_m(*square, *square) == 0
    # 0.01 degree of latitude is about 1112 m anywhere
    assert distance_m(31_230_416, 121_473_701, 31_240_416, 121_473_701) == 1112
    # Shanghai to Beijing (Tiananmen): about 1067 km
    assert 1_060_000 < distance_m(*square, 39_908_692, 116_397_477) < 1_075_000
    assert distance_m(0, 179_999_999, 0, -179_999_999) < 1  # across the antimeridian
    span = latitude_span_e6(5_000)
    assert distance_m(0, 0, span, 0) >= 5_000
