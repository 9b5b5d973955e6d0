"""Reads of stations, pumps and prices for the customer API and the order actors.

Free pumps are live state that only the pump actors know, so the views take it from the
caller: pass ``free_pumps(station_id) -> (free, total)`` (cheap and synchronous, e.g. from
the pump actors' snapshots). Without it, a view counts the pumps the database has open,
which is what is free as far as the database can tell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from switch.service import BadRequest, NotFound, PriceItem, StationView
from switch.store import Database, Row, Transaction

from .audit import audit, staff_actor
from .geo import distance_m, latitude_span_e6
from .hours import open_now

__all__ = [
    "FreePumps",
    "current_prices",
    "current_prices_by_station",
    "pump_nozzles",
    "set_pump_open",
    "station",
    "stations_near",
]

FreePumps = Callable[[str], tuple[int, int]]
Db = Database | Transaction

# Pumps count when they have nozzles: a pump dropped from the config keeps its row (sales
# refer to it) but loses its nozzles.
_STATIONS = """
SELECT s.id, s.name, s.address, s.lat_e6, s.lon_e6, s.timezone, s.opening_hours::text AS hours,
       count(p.pump_no) AS pumps_total, count(p.pump_no) FILTER (WHERE p.open) AS pumps_open
FROM stations s
LEFT JOIN pumps p ON p.station_id = s.id AND EXISTS (
    SELECT 1 FROM nozzles n WHERE n.station_id = p.station_id AND n.pump_no = p.pump_no)
WHERE s.enabled AND {where}
GROUP BY s.id
"""

_PRICES = """
SELECT s.station_id, s.id AS price_set_id, i.grade_code, i.unit_price_mfen_per_l
FROM price_sets s JOIN price_set_items i ON i.price_set_id = s.id
WHERE s.status = 'applied' AND s.station_id = ANY($1::text[])
  AND i.grade_code IN (SELECT n.grade_code FROM nozzles n WHERE n.station_id = s.station_id)
ORDER BY s.station_id, i.grade_code
"""


async def stations_near(
    db: Db,
    lat_e6: int,
    lon_e6: int,
    radius_m: int,
    limit: int,
    now: datetime,
    free_pumps: FreePumps | None = None,
) -> list[StationView]:
    """Enabled stations within ``radius_m`` of the point, nearest first (ties by id)."""
    if not -90_000_000 <= lat_e6 <= 90_000_000 or not -180_000_000 <= lon_e6 <= 180_000_000:
        raise BadRequest(f"no such point: lat_e6={lat_e6}, lon_e6={lon_e6}")
    if radius_m <= 0 or limit <= 0:
        raise BadRequest(f"radius_m and limit must be positive, not {radius_m} and {limit}")
    span = latitude_span_e6(radius_m)
    rows = await db.fetch(
        _STATIONS.format(where="s.lat_e6 BETWEEN $1 AND $2"), lat_e6 - span, lat_e6 + span
    )
    found = [(distance_m(lat_e6, lon_e6, row["lat_e6"], row["lon_e6"]), row) for row in rows]
    near = sorted(
        ((d, row["id"], row) for d, row in found if d <= radius_m), key=lambda t: (t[0], t[1])
    )[:limit]
    prices = await _prices(db, [row["id"] for _, _, row in near])
    return [_view(row, prices, d, now, free_pumps) for d, _, row in near]


async def station(
    db: Db,
    station_id: str,
    *,
    now: datetime | None = None,
    free_pumps: FreePumps | None = None,
) -> StationView:
    """One enabled station (NotFound otherwise); ``distance_m`` is None."""
    row = await db.fetchrow(_STATIONS.format(where="s.id = $1"), station_id)
    if row is None:
        raise NotFound(f"no station {station_id!r}", code="station-not-found")
    prices = await _prices(db, [station_id])
    return _view(row, prices, None, now or datetime.now(UTC), free_pumps)


async def current_prices(db: Db, station_id: str) -> Mapping[str, tuple[int, int]]:
    """grade -> (price_set_id, milli-fen per litre) of the set in force; {} when none is."""
    rows = await _prices(db, [station_id])
    return {
        item.grade: (set_id, item.unit_price_mfen_per_l)
        for set_id, item in rows.get(station_id, ())
    }


async def current_prices_by_station(
    db: Db, station_ids: Sequence[str]
) -> dict[str, Mapping[str, tuple[int, int]]]:
    """:func:`current_prices` of many stations in one query (a station with none is absent)."""
    rows = await _prices(db, list(station_ids))
    return {
        sid: {item.grade: (set_id, item.unit_price_mfen_per_l) for set_id, item in items}
        for sid, items in rows.items()
    }


async def pump_nozzles(db: Db, station_id: str, pump_no: int) -> Mapping[int, str]:
    """nozzle number -> grade code (nozzle 1 first); NotFound for a pump without nozzles."""
    rows = await db.fetch(
        "SELECT nozzle_no, grade_code FROM nozzles WHERE station_id = $1 AND pump_no = $2"
        " ORDER BY nozzle_no",
        station_id,
        pump_no,
    )
    if not rows:
        raise NotFound(f"no pump {pump_no} at station {station_id!r}", code="pump-not-found")
    return {int(row["nozzle_no"]): str(row["grade_code"]) for row in rows}


async def set_pump_open(
    db: Database,
    staff_id: str,
    station_id: str,
    pump_no: int,
    open: bool,
    *,
    actor: str | None = None,
) -> bool:
    """Open or close a pump for new orders (the row and an audit entry, in one transaction).

    Returns whether it was open before. Telling the pump actor is the caller's part: the
    row is what survives a restart.
    """
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT open FROM pumps WHERE station_id = $1 AND pump_no = $2 FOR UPDATE",
            station_id,
            pump_no,
        )
        if row is None:
            raise NotFound(f"no pump {pump_no} at station {station_id!r}", code="pump-not-found")
        was_open = bool(row["open"])
        await tx.execute(
            "UPDATE pumps SET open = $3 WHERE station_id = $1 AND pump_no = $2",
            station_id,
            pump_no,
            open,
        )
        action = "pump.open" if open else "pump.close"
        target = f"{station_id}.p{pump_no:02d}"
        who = actor or staff_actor(staff_id)
        await audit(tx, who, action, target, {"open": open, "was_open": was_open})
    return was_open


async def _prices(db: Db, station_ids: Sequence[str]) -> dict[str, list[tuple[int, PriceItem]]]:
    found: dict[str, list[tuple[int, PriceItem]]] = {}
    if not station_ids:
        return found
    for row in await db.fetch(_PRICES, list(station_ids)):
        item = PriceItem(str(row["grade_code"]), int(row["unit_price_mfen_per_l"]))
        found.setdefault(row["station_id"], []).append((int(row["price_set_id"]), item))
    return found


def _view(
    row: Row,
    prices: Mapping[str, Sequence[tuple[int, PriceItem]]],
    distance: int | None,
    now: datetime,
    free_pumps: FreePumps | None,
) -> StationView:
    hours: dict[str, Any] = orjson.loads(row["hours"])
    opening = {day: tuple((s, e) for s, e in ranges) for day, ranges in hours.items()}
    if free_pumps is None:
        free, total = int(row["pumps_open"]), int(row["pumps_total"])
    else:
        free, total = free_pumps(row["id"])
    return StationView(
        id=row["id"],
        name=row["name"],
        address=row["address"],
        lat_e6=row["lat_e6"],
        lon_e6=row["lon_e6"],
        distance_m=distance,
        open_now=open_now(opening, row["timezone"], now),
        prices=tuple(item for _, item in prices.get(row["id"], ())),
        pumps_total=total,
        pumps_free=free,
    )
