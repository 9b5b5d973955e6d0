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

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    """Make the reference tables say what the config says (idempotent; see module doc)."""
    created: list[tuple[str, int]] = []
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO grades (code, name, fuel) VALUES ($1, $2, $3)"
            " ON CONFLICT (code) DO UPDATE SET name = excluded.name, fuel = excluded.fuel",
            [(g.code, g.name, g.fuel) for g in config.grades],
        )
        await tx.execute(
            "UPDATE stations SET enabled = false WHERE enabled AND NOT (id = ANY($1::text[]))",
            [s.id for s in config.stations],
        )
        for station in config.stations:
            await _station(tx, station)
            price_set_id = await _prices(tx, station)
            if price_set_id is not None:
                created.append((station.id, price_set_id))
    return SeedResult(
        grades=len(config.grades),
        stations=len(config.stations),
        pumps=sum(s.pumps for s in config.stations),
        nozzles=sum(s.pumps * len(s.nozzles) for s in config.stations),
        price_sets=tuple(created),
    )


async def _station(tx: Transaction, station: StationEntry) -> None:
    hours = {day: [list(r) for r in ranges] for day, ranges in station.opening_hours.items()}
    await tx.execute(
        "INSERT INTO stations (id, name, address, lat_e6, lon_e6, timezone, opening_hours)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address,"
        " lat_e6 = excluded.lat_e6, lon_e6 = excluded.lon_e6, timezone = excluded.timezone,"
        " opening_hours = excluded.opening_hours, enabled = true",
        station.id,
        station.name,
        station.address,
        station.lat_e6,
        station.lon_e6,
        station.timezone,
        orjson.dumps(hours).decode(),
    )
    await tx.executemany(
        "INSERT INTO pumps (station_id, pump_no, protocol, endpoint, unit_id)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (station_id, pump_no) DO UPDATE SET protocol = excluded.protocol,"
        " endpoint = excluded.endpoint, unit_id = excluded.unit_id",
        [
            (station.id, pump_no, PROTOCOL, station.gateway, pump_no)
            for pump_no in range(1, station.pumps + 1)
        ],
    )
    await tx.execute(
        "UPDATE pumps SET open = false WHERE station_id = $1 AND pump_no > $2 AND open",
        station.id,
        station.pumps,
    )
    await tx.execute(
        "DELETE FROM nozzles WHERE station_id = $1 AND (pump_no > $2 OR nozzle_no > $3)",
        station.id,
        station.pumps,
        len(station.nozzles),
    )
    await tx.executemany(
        "INSERT INTO nozzles (station_id, pump_no, nozzle_no, grade_code) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (station_id, pump_no, nozzle_no) DO UPDATE"
        " SET grade_code = excluded.grade_code",
        [
            (station.id, pump_no, nozzle_no, grade)
            for pump_no in range(1, station.pumps + 1)
            for nozzle_no, grade in enumerate(station.nozzles, start=1)
        ],
    )


async def _prices(tx: Transaction, station: StationEntry) -> int | None:
    """A new applied price set when the station's lacks a grade it sells, else None."""
    rows = await tx.fetch(
        "SELECT i.grade_code, i.unit_price_mfen_per_l FROM price_sets s"
        " JOIN price_set_items i ON i.price_set_id = s.id"
        " WHERE s.station_id = $1 AND s.status = 'applied'",
        station.id,
    )
    current = {row["grade_code"]: int(row["unit_price_mfen_per_l"]) for row in rows}
    missing = {g: p for g, p in station.prices.items() if g not in current}
    if not missing:
        return None
    prices = {**current, **missing}
    return await insert_applied_set(
        tx, station.id, SWITCH_ACTOR, prices, None, action="prices.seed"
    )
