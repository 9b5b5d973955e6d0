"""Opening hours: parsed from configuration, stored as jsonb, asked "open now?".

The form is ``{"mon": [["06:00", "22:00"]], ...}`` in the station's own time zone. An empty
mapping means always open; in a non-empty one, a day that is missing is a closed day. A range
whose end is not after its start runs overnight into the next day ("22:00"-"06:00" on Friday
covers Friday 22:00 to Saturday 06:00), so a range belongs to the day its shift starts, which
is how a station manager writes a roster. "24:00" may end a range.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAYS", "OpeningHours", "check_timezone", "open_now", "parse_opening_hours"]

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()

OpeningHours = Mapping[str, tuple[tuple[str, str], ...]]


def parse_opening_hours(
    raw: Any, where: str = "opening_hours"
) -> dict[str, tuple[tuple[str, str], ...]]:
    """Check the configured form and return it normalised (tuples). ValueErrors name the path."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table of days, got {raw!r}")  # noqa: TRY004 (a config value)
    hours: dict[str, tuple[tuple[str, str], ...]] = {}
    for day, ranges in raw.items():
        if day not in DAYS:
            raise ValueError(f"{where}.{day}: not a day (valid: {', '.join(DAYS)})")
        if not isinstance(ranges, list | tuple):
            raise ValueError(f"{where}.{day}: expected a list of [start, end] pairs")  # noqa: TRY004 (a config value)
        parsed: list[tuple[str, str]] = []
        for i, pair in enumerate(ranges):
            at = f"{where}.{day}[{i}]"
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f'{at}: expected ["HH:MM", "HH:MM"], got {pair!r}')
            start, end = pair
            if _seconds(start, at, allow_24=False) == _seconds(end, at):
                raise ValueError(f"{at}: start and end are equal ({start}); use 00:00-24:00")
            parsed.append((start, end))
        hours[day] = tuple(parsed)
    return hours


def check_timezone(name: Any, where: str = "timezone") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: expected an IANA time zone name, got {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{where}: unknown time zone {name!r}") from None
    return name


def open_now(opening_hours: OpeningHours, timezone: str, now: datetime) -> bool:
    """Whether the station is open at ``now`` (an aware datetime) by its local clock."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not opening_hours:
        return True
    local = now.astimezone(ZoneInfo(timezone))
    t = local.hour * 3600 + local.minute * 60 + local.second
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    for start_s, end_s in _ranges(opening_hours, today):
        if start_s < end_s and start_s <= t < end_s:
            return True
        if start_s >= end_s and t >= start_s:  # overnight, first part
            return True
    for start_s, end_s in _ranges(opening_hours, yesterday):
        if start_s >= end_s and t < end_s:  # overnight from yesterday, second part
            return True
    return False


def _ranges(hours: OpeningHours, day: str) -> list[tuple[int, int]]:
    return [(_seconds(s, day, allow_24=False), _seconds(e, day)) for s, e in hours.get(day, ())]


def _seconds(text: Any, where: str, *, allow_24: bool = True) -> int:
    """Seconds after midnight of "HH:MM"."""
    if isinstance(text, str) and len(text) == 5 and text[2] == ":":
        hh, mm = text[:2], text[3:]
        if hh.isdigit() and mm.isdigit() and hh.isascii() and mm.isascii():
            h, m = int(hh), int(mm)
            if (h < 24 and m < 60) or (allow_24 and h == 24 and m == 0):
                return h * 3600 + m * 60
    valid = "00:00-24:00" if allow_24 else "00:00-23:59"
    raise ValueError(f'{where}: {text!r} is not a time "HH:MM" ({valid})')
