"""WeChat Pay's time formats: RFC 3339 with the +08:00 offset in the API, naive Beijing time
in bill files. Kept in one place so that a bill row booked at 23:59:59 in Beijing is never
mistaken for a UTC time on the previous day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from channels.wechatpay.errors import ProtocolError

__all__ = ["CST", "from_rfc3339", "to_rfc3339"]

CST = timezone(timedelta(hours=8), "CST")


def to_rfc3339(moment: datetime | float) -> str:
    """``2026-11-20T07:41:09+08:00``; naive datetimes are refused (their zone is a guess)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("naive datetime: the zone of an API time must be explicit")
        local = moment.astimezone(CST)
    else:
        local = datetime.fromtimestamp(moment, CST)
    return local.replace(microsecond=0).isoformat()


def from_rfc3339(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProtocolError("bad_time", f"not an RFC 3339 time: {text[:40]!r}") from exc
    if moment.tzinfo is None:
        raise ProtocolError("bad_time", f"time without offset: {text[:40]!r}")
    return moment
