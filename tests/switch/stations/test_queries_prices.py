"""Station views, pumps and price sets on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.pump_messages import SetPrices
from switch.service import BadRequest, NotFound, PriceItem, StationView
from switch.stations import (
    apply_due_price_sets,
    apply_price_set,
    current_prices,
    distance_m,
    prices_for_pump,
    pump_nozzles,
    pump_set_prices,
    seed_reference,
    set_pump_open,
    stations_near,
)
from switch.stations import station as station_view
from switch.store import Store
from tests.switch.stations.support import chain, station

SHANGHAI = timezone(timedelta(hours=8))
MONDAY_NOON = datetime(2026, 11, 16, 12, 0, tzinfo=SHANGHAI)
SQUARE = (31_230_416, 121_473_701)

NEAR = station("q001", 31_231_416, 121_473_701)  # ~111 m north
MID = station("q002", 31_230_416, 121_483_701, hours={"mon": (("22:00", "06:00"),)})  # ~950 m east
FAR = station(
    "q003", 31_260_416, 121_473_701, pumps=1, nozzles=("0",), prices={"0": 752_000}
)  # ~3.3 km
BEIJING = station("q004", 39_908_692, 116_397_477)


@pytest.fixture
async def seeded(store: Store) -> Store:
    await seed_reference(store.db, chain(FAR, MID, NEAR, BEIJING))
    return store


async def test_stations_near_orders_by_distance_within_the_radius(seeded: Store) -> None:
    views = await stations_near(seeded.db, *SQUARE, 5_000, 10, MONDAY_NOON)
    assert [v.id for v in views] == ["q001", "q002", "q003"]
    distances = [v.distance_m or 0 for v in views]
    assert distances == sorted(distances)
    assert distances[0] == distance_m(*SQUARE, NEAR.lat_e6, NEAR.lon_e6) == 111
    near = views[0]
    assert near == StationView(
        id="q001",
        name="Station q001",
        address="q001 Road",
        lat_e6=31_231_416,
        lon_e6=121_473_701,
        distance_m=111,
        open_now=True,
        prices=(PriceItem("92", 789_000), PriceItem("95", 841_000)),
        pumps_total=2,
        pumps_free=2,
    )
    assert views[1].open_now is False  # q002 opens only Monday nights
    assert views[2].prices == (PriceItem("0", 752_000),)

    assert [v.id for v in await stations_near(seeded.db, *SQUARE, 1_000, 10, MONDAY_NOON)] == [
        "q001",
        "q002",
    ]
    assert [v.id for v in await stations_near(seeded.db, *SQUARE, 5_000, 1, MONDAY_NOON)] == [
        "q001"
    ]
    assert await stations_near(seeded.db, 0, 0, 5_000, 10, MONDAY_NOON) == []
    with pytest.raises(BadRequest):
        await stations_near(seeded.db, *SQUARE, 0, 10, MONDAY_NOON)


async def test_station_view_with_live_pump_counts(seeded: Store) -> None:
    asked: list[str] = []

    def free_pumps(station_id: str) -> tuple[int, int]:
        asked.append(station_id)
        return 1, 2

    view = await station_view(
        seeded.db, "q002", now=MONDAY_NOON + timedelta(hours=11), free_pumps=free_pumps
    )
    assert (view.distance_m, view.open_now, view.pumps_free, view.pumps_total) == (None, True, 1, 2)
    assert asked == ["q002"]
    with pytest.raises(NotFound, match="no station 'nope'"):
        await station_view(seeded.db, "nope")


async def test_pumps_open_and_close_with_an_audit_entry(seeded: Store) -> None:
    assert await pump_nozzles(seeded.db, "q001", 2) == {1: "92", 2: "95"}
    with pytest.raises(NotFound, match="no pump 3 at station 'q001'"):
        await pump_nozzles(seeded.db, "q001", 3)
    assert await set_pump_open(seeded.db, "7", "q001", 2, False) is True
    assert await set_pump_open(seeded.db, "7", "q001", 2, False) is False
    view = await station_view(seeded.db, "q001")
    assert (view.pumps_free, view.pumps_total) == (1, 2)
    assert await set_pump_open(seeded.db, "7", "q001", 2, True) is False
    entries = await seeded.db.fetch(
        "SELECT actor, action FROM audit_log WHERE target = 'q001.p02' ORDER BY id"
    )
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("staff:7", "pump.close"),
        ("staff:7", "pump.close"),
        ("staff:7", "pump.open"),
    ]
    with pytest.raises(NotFound):
        await set_pump_open(seeded.db, "7", "q001", 9, True)


async def test_price_set_supersedes_the_one_in_force(seeded: Store) -> None:
    before = await current_prices(seeded.db, "q001")
    old_id = before["92"][0]
    view = await apply_price_set(seeded.db, "42", "q001", [PriceItem("95", 851_000)], None)
    assert view.status == "applied" and view.id != old_id
    assert view.items == (PriceItem("92", 789_000), PriceItem("95", 851_000))  # 92 carried over
    assert view.effective_at is not None
    assert await current_prices(seeded.db, "q001") == {
        "92": (view.id, 789_000),
        "95": (view.id, 851_000),
    }
    statuses = await seeded.db.fetch(
        "SELECT id, status FROM price_sets WHERE station_id = 'q001' ORDER BY id"
    )
    assert [(r["id"], r["status"]) for r in statuses][-2:] == [
        (old_id, "superseded"),
        (view.id, "applied"),
    ]
    assert await prices_for_pump(seeded.db, "q001", 1) == SetPrices(view.id, (789_000, 851_000))
    entry = await seeded.db.fetchrow(
        "SELECT actor, action FROM audit_log WHERE action = 'prices.apply' ORDER BY id DESC LIMIT 1"
    )
    assert entry is not None and (entry["actor"], entry["action"]) == ("staff:42", "prices.apply")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([PriceItem("98", 900_000)], "unknown grade '98'"),
        ([PriceItem("0", 752_000)], "grade '0' is not sold at station 'q001'"),
        ([PriceItem("92", 0)], "price of grade '92' must be a positive integer"),
        ([PriceItem("92", 7.89)], "price of grade '92' must be a positive integer"),  # type: ignore[arg-type]
        ([PriceItem("92", 1), PriceItem("92", 2)], "grade '92' is priced twice"),
        ([], "a price set needs at least one item"),
    ],
)
async def test_bad_price_sets_are_refused(
    seeded: Store, items: list[PriceItem], message: str
) -> None:
    before = await current_prices(seeded.db, "q001")
    with pytest.raises(BadRequest, match=message):
        await apply_price_set(seeded.db, "42", "q001", items, None)
    assert await current_prices(seeded.db, "q001") == before


async def test_unknown_station(seeded: Store) -> None:
    with pytest.raises(NotFound):
        await apply_price_set(seeded.db, "42", "nope", [PriceItem("92", 1)], None)


async def test_future_price_set_is_staged_then_applied_when_due(seeded: Store) -> None:
    now = datetime.now(UTC)
    at = now + timedelta(hours=2)
    staged = await apply_price_set(seeded.db, "42", "q002", [PriceItem("92", 699_000)], at, now=now)
    assert (staged.status, staged.effective_at, staged.items) == (
        "staged",
        at,
        (PriceItem("92", 699_000),),
    )
    in_force = await current_prices(seeded.db, "q002")
    assert in_force["92"][1] == 789_000
    # a change applied meanwhile is not undone by the staged set's carried-over grades
    mid = await apply_price_set(seeded.db, "42", "q002", [PriceItem("95", 861_000)], None, now=now)
    assert await apply_due_price_sets(seeded.db, now=now + timedelta(hours=1)) == []
    applied = await apply_due_price_sets(seeded.db, now=at)
    assert [(v.id, v.status) for v in applied] == [(staged.id, "applied")]
    assert applied[0].items == (PriceItem("92", 699_000), PriceItem("95", 861_000))
    assert await current_prices(seeded.db, "q002") == {
        "92": (staged.id, 699_000),
        "95": (staged.id, 861_000),
    }
    status = await seeded.db.fetchval("SELECT status FROM price_sets WHERE id = $1", mid.id)
    assert status == "superseded"
    assert await apply_due_price_sets(seeded.db, now=at) == []


async def test_past_effective_at_applies_now(seeded: Store) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    view = await apply_price_set(seeded.db, "42", "q003", [PriceItem("0", 755_000)], past)
    assert (view.status, view.effective_at) == ("applied", past)
    with pytest.raises(BadRequest, match="time zone"):
        await apply_price_set(seeded.db, "42", "q003", [PriceItem("0", 1)], datetime(2030, 1, 1))


def test_pump_set_prices_is_per_nozzle_in_order() -> None:
    prices = {"92": (5, 789_000), "95": (5, 841_000)}
    assert pump_set_prices({2: "92", 1: "95"}, prices) == SetPrices(5, (841_000, 789_000))
    with pytest.raises(ValueError, match=r"no price for nozzle 2 \(0\)"):
        pump_set_prices({1: "92", 2: "0"}, prices)
    with pytest.raises(ValueError, match=r"numbered 1\.\.N"):
        pump_set_prices({1: "92", 3: "95"}, prices)
