"""Reference data from the config file into PostgreSQL, at every start.

The config is the source of truth for what exists (grades, stations, their pumps and
nozzles); PostgreSQL is the source of truth for what staff changed at run time (prices,
pumps opened or closed). So seeding upserts the former and leaves the latter alone:

- grades, stations and nozzles are upserted; a station no longer in the config is disabled
  (rows are never deleted: orders and sales refer to them);
- pumps are upserted (protocol, endpoint, unit id) without touching ``open``; a pump beyond
  the configured count is closed;
- a price set is created from the configured prices only when the station has none applied,
  or when its applied set lacks a grade the station now sells (the new set keeps every
  applied price and adds the configured one for what was missing).

Everything happens in one transaction, and the station upsert locks the station's row first,
so two switches starting together cannot both create a station's first price set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from switch.store import Database, Transaction

from .prices import insert_applied_set

if TYPE_CHECKING:
    from switch.config import StationEntry, SwitchConfig

__all__ = ["SeedResult", "seed_reference"]

PROTOCOL = "gfd1-tcp"
SWITCH_ACTOR = "switch"


@dataclass(frozen=True, slots=True)
class SeedResult:
    grades: int
    stations: int
    pumps: int
    nozzles: int
    price_sets: tuple[tuple[str, int], ...]  # (station, new applied price set id)


async def seed_reference(db: Database, config: SwitchConfig) -> SeedResult:
    """Make the reference tables say what the config says (idempotent; see module doc).

    A statement per table for the whole chain, not a few per station: 500 stations took a
    second of every start (and of every restart after a crash) at a few statements each.
    Rows that already say what the config says are locked but not rewritten."""
    stations = sorted(config.stations, key=lambda s: s.id)  # lock order: no deadlock
    created: list[tuple[str, int]] = []
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO grades (code, name, fuel) VALUES ($1, $2, $3)"
            " ON CONFLICT (code) DO UPDATE SET name = excluded.name, fuel = excluded.fuel"
            " WHERE (grades.name, grades.fuel) IS DISTINCT FROM (excluded.name, excluded.fuel)",
            [(g.code, g.name, g.fuel) for g in config.grades],
        )
        await tx.execute(
            "UPDATE stations SET enabled = false WHERE enabled AND NOT (id = ANY($1::text[]))",
            [s.id for s in stations],
        )
        await _stations(tx, stations)
        await _pumps(tx, stations)
        await _nozzles(tx, stations)
        applied = await _applied_prices(tx, [s.id for s in stations])
        for station in stations:
            price_set_id = await _prices(tx, station, applied.get(station.id, {}))
            if price_set_id is not None:
                created.append((station.id, price_set_id))
    return SeedResult(
        grades=len(config.grades),
        stations=len(config.stations),
        pumps=sum(s.pumps for s in config.stations),
        nozzles=sum(s.pumps * len(s.nozzles) for s in config.stations),
        price_sets=tuple(created),
    )


async def _stations(tx: Transaction, stations: Sequence[StationEntry]) -> None:
    hours = [
        orjson.dumps({day: [list(r) for r in ranges] for day, ranges in s.opening_hours.items()})
        for s in stations
    ]
    await tx.execute(
        "INSERT INTO stations (id, name, address, lat_e6, lon_e6, timezone, opening_hours)"
        " SELECT id, name, address, lat, lon, tz, hours::jsonb FROM unnest("
        "   $1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[],"
        "   $7::text[]) AS c(id, name, address, lat, lon, tz, hours)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address,"
        " lat_e6 = excluded.lat_e6, lon_e6 = excluded.lon_e6, timezone = excluded.timezone,"
        " opening_hours = excluded.opening_hours, enabled = true"
        " WHERE (stations.name, stations.address, stations.lat_e6, stations.lon_e6,"
        "        stations.timezone, stations.opening_hours, stations.enabled)"
        "   IS DISTINCT FROM (excluded.name, excluded.address, excluded.lat_e6,"
        "        excluded.lon_e6, excluded.timezone, excluded.opening_hours, true)",
        [s.id for s in stations],
        [s.name for s in stations],
        [s.address for s in stations],
        [s.lat_e6 for s in stations],
        [s.lon_e6 for s in stations],
        [s.timezone for s in stations],
        [h.decode() for h in hours],
    )


async def _pumps(tx: Transaction, stations: Sequence[StationEntry]) -> None:
    rows = [(s.id, n, s.gateway) for s in stations for n in range(1, s.pumps + 1)]
    await tx.execute(
        "INSERT INTO pumps (station_id, pump_no, protocol, endpoint, unit_id)"
        " SELECT sid, n, $4, endpoint, n FROM unnest($1::text[], $2::int[], $3::text[])"
        "   AS c(sid, n, endpoint)"
        " ON CONFLICT (station_id, pump_no) DO UPDATE SET protocol = excluded.protocol,"
        " endpoint = excluded.endpoint, unit_id = excluded.unit_id"
        " WHERE (pumps.protocol, pumps.endpoint, pumps.unit_id)"
        "   IS DISTINCT FROM (excluded.protocol, excluded.endpoint, excluded.unit_id)",
        *_columns(rows, 3),
        PROTOCOL,
    )
    await tx.execute(
        "UPDATE pumps p SET open = false FROM unnest($1::text[], $2::int[]) AS c(sid, pumps)"
        " WHERE p.station_id = c.sid AND p.pump_no > c.pumps AND p.open",
        [s.id for s in stations],
        [s.pumps for s in stations],
    )


async def _nozzles(tx: Transaction, stations: Sequence[StationEntry]) -> None:
    await tx.execute(
        "DELETE FROM nozzles z USING unnest($1::text[], $2::int[], $3::int[])"
        "   AS c(sid, pumps, nozzles)"
        " WHERE z.station_id = c.sid AND (z.pump_no > c.pumps OR z.nozzle_no > c.nozzles)",
        [s.id for s in stations],
        [s.pumps for s in stations],
        [len(s.nozzles) for s in stations],
    )
    rows = [
        (s.id, pump_no, nozzle_no, grade)
        for s in stations
        for pump_no in range(1, s.pumps + 1)
        for nozzle_no, grade in enumerate(s.nozzles, start=1)
    ]
    await tx.execute(
        "INSERT INTO nozzles (station_id, pump_no, nozzle_no, grade_code)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[])"
        " ON CONFLICT (station_id, pump_no, nozzle_no) DO UPDATE"
        " SET grade_code = excluded.grade_code"
        " WHERE nozzles.grade_code IS DISTINCT FROM excluded.grade_code",
        *_columns(rows, 4),
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists, the arrays ``unnest`` takes back to rows."""
    return [[row[i] for row in rows] for i in range(width)]


async def _applied_prices(tx: Transaction, station_ids: list[str]) -> dict[str, dict[str, int]]:
    """Every station's applied prices, by grade, in one query."""
    rows = await tx.fetch(
        "SELECT s.station_id, i.grade_code, i.unit_price_mfen_per_l FROM price_sets s"
        " JOIN price_set_items i ON i.price_set_id = s.id"
        " WHERE s.station_id = ANY($1::text[]) AND s.status = 'applied'",
        station_ids,
    )
    applied: dict[str, dict[str, int]] = {}
    for row in rows:
        applied.setdefault(row["station_id"], {})[row["grade_code"]] = int(
            row["unit_price_mfen_per_l"]
        )
    return applied


async def _prices(tx: Transaction, station: StationEntry, current: dict[str, int]) -> int | None:
    """A new applied price set when the station's lacks a grade it sells, else None."""
    missing = {g: p for g, p in station.prices.items() if g not in current}
    if not missing:
        return None
    prices = {**current, **missing}
    return await insert_applied_set(
        tx, station.id, SWITCH_ACTOR, prices, None, action="prices.seed"
    )
