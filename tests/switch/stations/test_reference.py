"""Seeding reference data from the config, on the real database: idempotent, and staff
changes (prices, pumps closed) survive a restart's re-seed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from switch.service import PriceItem
from switch.stations import apply_price_set, current_prices, seed_reference, set_pump_open
from switch.store import Store
from tests.switch.stations.support import chain, station

S1 = station("r001", 31_230_416, 121_473_701, hours={"mon": (("06:00", "22:00"),)})
S2 = station("r002", 31_240_000, 121_480_000, pumps=3, nozzles=("0",), prices={"0": 752_000})


async def rows(store: Store) -> dict[str, list[Any]]:
    queries = {
        "grades": "SELECT code, name, fuel FROM grades ORDER BY code",
        "stations": "SELECT id, name, address, lat_e6, lon_e6, timezone, opening_hours::text,"
        " enabled FROM stations ORDER BY id",
        "pumps": "SELECT * FROM pumps ORDER BY station_id, pump_no",
        "nozzles": "SELECT * FROM nozzles ORDER BY station_id, pump_no, nozzle_no",
        "price_sets": "SELECT id, station_id, status, created_by FROM price_sets ORDER BY id",
        "items": "SELECT * FROM price_set_items ORDER BY price_set_id, grade_code",
    }
    return {name: [dict(r) for r in await store.db.fetch(sql)] for name, sql in queries.items()}


async def test_seed_twice_gives_the_same_rows(store: Store) -> None:
    config = chain(S1, S2)
    first = await seed_reference(store.db, config)
    assert (first.grades, first.stations, first.pumps, first.nozzles) == (3, 2, 5, 7)
    assert [s for s, _ in first.price_sets] == ["r001", "r002"]
    before = await rows(store)
    second = await seed_reference(store.db, config)
    assert second.price_sets == ()
    assert await rows(store) == before

    assert {r["id"]: r["lat_e6"] for r in before["stations"]} == {
        "r001": 31_230_416,
        "r002": 31_240_000,
    }
    pump = before["pumps"][0]
    assert (pump["protocol"], pump["endpoint"], pump["unit_id"], pump["open"]) == (
        "gfd1-tcp",
        "127.0.0.1:5020",
        1,
        True,
    )
    assert [(n["pump_no"], n["nozzle_no"], n["grade_code"]) for n in before["nozzles"][:4]] == [
        (1, 1, "92"),
        (1, 2, "95"),
        (2, 1, "92"),
        (2, 2, "95"),
    ]
    prices = await current_prices(store.db, "r001")
    set_id = dict(first.price_sets)["r001"]
    assert prices == {"92": (set_id, 789_000), "95": (set_id, 841_000)}
    audit = await store.db.fetch("SELECT actor, action, target FROM audit_log ORDER BY id")
    assert [(a["actor"], a["action"], a["target"]) for a in audit] == [
        ("switch", "prices.seed", "r001"),
        ("switch", "prices.seed", "r002"),
    ]


async def test_staff_changes_survive_a_reseed(store: Store) -> None:
    config = chain(S1, S2)
    await seed_reference(store.db, config)
    view = await apply_price_set(
        store.db, "42", "r001", [PriceItem("92", 799_000)], None, now=datetime.now(UTC)
    )
    await set_pump_open(store.db, "42", "r002", 3, False)
    # a restart with a changed config: new configured prices, a renamed station
    renamed = dataclasses.replace(S1, name="Renamed", prices={"92": 1, "95": 2})
    result = await seed_reference(store.db, chain(renamed, S2))
    assert result.price_sets == ()
    assert await current_prices(store.db, "r001") == {
        "92": (view.id, 799_000),
        "95": (view.id, 841_000),
    }
    assert await store.db.fetchval("SELECT name FROM stations WHERE id = 'r001'") == "Renamed"
    assert (
        await store.db.fetchval("SELECT open FROM pumps WHERE station_id = 'r002' AND pump_no = 3")
        is False
    )


async def test_config_changes_are_applied_without_losing_history(store: Store) -> None:
    await seed_reference(store.db, chain(S1, S2))
    old = await current_prices(store.db, "r001")
    # r002 leaves the config; r001 loses a pump and gains a diesel nozzle
    grown = dataclasses.replace(
        S1, pumps=1, nozzles=("92", "95", "0"), prices={"92": 1, "95": 2, "0": 760_000}
    )
    result = await seed_reference(store.db, chain(grown))
    ((station_id, new_set),) = result.price_sets
    assert station_id == "r001"
    assert await current_prices(store.db, "r001") == {
        "92": (new_set, old["92"][1]),
        "95": (new_set, old["95"][1]),
        "0": (new_set, 760_000),
    }
    enabled = await store.db.fetch(
        "SELECT id, enabled FROM stations WHERE id LIKE 'r%' ORDER BY id"
    )
    assert [(r["id"], r["enabled"]) for r in enabled] == [("r001", True), ("r002", False)]
    pumps = await store.db.fetch(
        "SELECT pump_no, open FROM pumps WHERE station_id = 'r001' ORDER BY 1"
    )
    assert [(p["pump_no"], p["open"]) for p in pumps] == [(1, True), (2, False)]
    nozzles = await store.db.fetch(
        "SELECT pump_no, nozzle_no, grade_code FROM nozzles WHERE station_id = 'r001' ORDER BY 1, 2"
    )
    assert [tuple(n.values()) for n in nozzles] == [(1, 1, "92"), (1, 2, "95"), (1, 3, "0")]
    # and back: r002 returns enabled, its pump 3 still as staff left it
    await seed_reference(store.db, chain(S1, S2))
    assert await store.db.fetchval("SELECT enabled FROM stations WHERE id = 'r002'") is True
