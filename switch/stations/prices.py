"""Price sets: staff apply them now or stage them for later; pumps get them per nozzle.

Every applied set is complete: it has a price for each grade the station sells, so the set
in force alone answers "what does this grade cost here" and a pump's ``SetPrices`` can be
built from it. A staff change may name only the grades it changes; the others are carried
over from the set in force when the new one is applied (for a staged set: when it comes due,
so a change applied meanwhile is not undone). The old applied set is superseded in the same
transaction that applies the new one, with the station's row locked, so a station never has
two sets in force, nor a moment with none (the schema's unique index backs this up).

After a set is applied, the caller invalidates the station's ``PriceBookCache`` entry and
sends each pump :func:`prices_for_pump`'s ``SetPrices``; the pump applies it once no sale is
open (a sale is always priced by the set it started with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from devices.pump_messages import SetPrices
from switch.service import BadRequest, NotFound, PriceItem, PriceSetView
from switch.store import Database, Transaction

from .audit import audit, staff_actor
from .queries import Db, current_prices, pump_nozzles

__all__ = [
    "apply_due_price_sets",
    "apply_price_set",
    "insert_applied_set",
    "prices_for_pump",
    "pump_set_prices",
]

SWITCH_ACTOR = "switch"


async def apply_price_set(
    db: Database,
    staff_id: str,
    station_id: str,
    items: Sequence[PriceItem],
    effective_at: datetime | None,
    *,
    now: datetime | None = None,
    actor: str | None = None,
) -> PriceSetView:
    """Apply ``items`` now (``effective_at`` None or not in the future) or stage them.

    BadRequest names the offending grade or price; NotFound for an unknown station.
    ``actor`` is the audit log's who when it is not a staff member (an operator: ``uid:0``).
    """
    prices = _checked(items)
    now = now or datetime.now(UTC)
    if effective_at is not None and effective_at.tzinfo is None:
        raise BadRequest("effective_at must carry a time zone offset")
    actor = actor or staff_actor(staff_id)
    async with db.transaction() as tx:
        sold = await _lock_station(tx, station_id)
        known = {r["code"] for r in await tx.fetch("SELECT code FROM grades")}
        for grade in prices:
            if grade not in known:
                raise BadRequest(f"unknown grade {grade!r}", code="unknown-grade")
            if grade not in sold:
                raise BadRequest(f"grade {grade!r} is not sold at station {station_id!r}")
        current = {g: p for g, (_, p) in (await current_prices(tx, station_id)).items()}
        unpriced = sorted(sold - current.keys() - prices.keys())
        if unpriced:
            raise BadRequest(f"no price for grade {unpriced[0]!r}, sold at station {station_id!r}")
        if effective_at is None or effective_at <= now:
            merged = {**current, **prices}
            set_id = await insert_applied_set(
                tx, station_id, actor, merged, effective_at, action="prices.apply"
            )
            status, shown = "applied", merged
        else:
            set_id = await tx.fetchval(
                "INSERT INTO price_sets (station_id, status, effective_at, created_by)"
                " VALUES ($1, 'staged', $2, $3) RETURNING id",
                station_id,
                effective_at,
                actor,
            )
            await _insert_items(tx, set_id, prices)
            await audit(
                tx, actor, "prices.stage", station_id, _details(set_id, prices, effective_at)
            )
            status, shown = "staged", prices
        stored_at = await tx.fetchval("SELECT effective_at FROM price_sets WHERE id = $1", set_id)
    return _view(set_id, station_id, status, shown, stored_at)


async def apply_due_price_sets(db: Database, *, now: datetime | None = None) -> list[PriceSetView]:
    """Apply every staged set whose time has come, oldest first (a periodic task calls this).

    Grades a staged set does not name are carried over from the set in force at this moment.
    """
    now = now or datetime.now(UTC)
    due = await db.fetch(
        "SELECT id, station_id FROM price_sets WHERE status = 'staged' AND effective_at <= $1"
        " ORDER BY effective_at, id",
        now,
    )
    applied: list[PriceSetView] = []
    for row in due:
        set_id, station_id = int(row["id"]), str(row["station_id"])
        async with db.transaction() as tx:
            await _lock_station(tx, station_id)
            status = await tx.fetchval(
                "SELECT status FROM price_sets WHERE id = $1 FOR UPDATE", set_id
            )
            if status != "staged":  # cancelled, or applied by another switch meanwhile
                continue
            current = {g: p for g, (_, p) in (await current_prices(tx, station_id)).items()}
            staged = await _items(tx, set_id)
            await _insert_items(tx, set_id, {g: p for g, p in current.items() if g not in staged})
            await _supersede(tx, station_id)
            effective_at = await tx.fetchval(
                "UPDATE price_sets SET status = 'applied', applied_at = now() WHERE id = $1"
                " RETURNING effective_at",
                set_id,
            )
            merged = {**current, **staged}
            await audit(
                tx,
                SWITCH_ACTOR,
                "prices.apply_staged",
                station_id,
                _details(set_id, merged, effective_at),
            )
        applied.append(_view(set_id, station_id, "applied", merged, effective_at))
    return applied


async def insert_applied_set(
    tx: Transaction,
    station_id: str,
    actor: str,
    prices: Mapping[str, int],
    effective_at: datetime | None,
    *,
    action: str,
) -> int:
    """Supersede the station's set in force and apply a new one with ``prices`` (the caller
    holds the station's row lock). Audited as ``action``."""
    await _supersede(tx, station_id)
    set_id: int = await tx.fetchval(
        "INSERT INTO price_sets (station_id, status, effective_at, created_by, applied_at)"
        " VALUES ($1, 'applied', coalesce($2, now()), $3, now()) RETURNING id",
        station_id,
        effective_at,
        actor,
    )
    await _insert_items(tx, set_id, prices)
    await audit(tx, actor, action, station_id, _details(set_id, prices, effective_at))
    return set_id


async def prices_for_pump(db: Db, station_id: str, pump_no: int) -> SetPrices | None:
    """The ``SetPrices`` a pump needs for the set in force; None when the station has none."""
    nozzles = await pump_nozzles(db, station_id, pump_no)
    prices = await current_prices(db, station_id)
    return pump_set_prices(nozzles, prices) if prices else None


def pump_set_prices(nozzles: Mapping[int, str], prices: Mapping[str, tuple[int, int]]) -> SetPrices:
    """Per-nozzle unit prices, nozzle 1 first, from grade -> (price_set_id, price).

    ValueError when a nozzle's grade has no price or the nozzles are not 1..N: a pump must
    never be sent a tuple whose positions do not match its nozzles.
    """
    numbers = sorted(nozzles)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"nozzles must be numbered 1..N, not {numbers}")
    missing = [f"{n} ({nozzles[n]})" for n in numbers if nozzles[n] not in prices]
    if missing:
        raise ValueError(f"no price for nozzle {', '.join(missing)}")
    set_ids = {prices[nozzles[n]][0] for n in numbers}
    if len(set_ids) != 1:
        raise ValueError(f"prices come from several price sets: {sorted(set_ids)}")
    return SetPrices(set_ids.pop(), tuple(prices[nozzles[n]][1] for n in numbers))


def _checked(items: Sequence[PriceItem]) -> dict[str, int]:
    if not items:
        raise BadRequest("a price set needs at least one item")
    prices: dict[str, int] = {}
    for item in items:
        if item.grade in prices:
            raise BadRequest(f"grade {item.grade!r} is priced twice")
        price = item.unit_price_mfen_per_l
        if type(price) is not int or price <= 0:
            raise BadRequest(
                f"price of grade {item.grade!r} must be a positive integer"
                f" (milli-fen per litre), not {price!r}"
            )
        prices[item.grade] = price
    return prices


async def _lock_station(tx: Transaction, station_id: str) -> set[str]:
    """Lock the station's row (serialising its price changes); the grades it sells."""
    enabled = await tx.fetchval("SELECT enabled FROM stations WHERE id = $1 FOR UPDATE", station_id)
    if not enabled:
        raise NotFound(f"no station {station_id!r}", code="station-not-found")
    rows = await tx.fetch(
        "SELECT DISTINCT grade_code FROM nozzles WHERE station_id = $1", station_id
    )
    return {str(r["grade_code"]) for r in rows}


async def _supersede(tx: Transaction, station_id: str) -> None:
    await tx.execute(
        "UPDATE price_sets SET status = 'superseded' WHERE station_id = $1 AND status = 'applied'",
        station_id,
    )


async def _insert_items(tx: Transaction, set_id: int, prices: Mapping[str, int]) -> None:
    await tx.executemany(
        "INSERT INTO price_set_items (price_set_id, grade_code, unit_price_mfen_per_l)"
        " VALUES ($1, $2, $3)",
        [(set_id, grade, price) for grade, price in sorted(prices.items())],
    )


async def _items(tx: Transaction, set_id: int) -> dict[str, int]:
    rows = await tx.fetch(
        "SELECT grade_code, unit_price_mfen_per_l FROM price_set_items WHERE price_set_id = $1",
        set_id,
    )
    return {str(r["grade_code"]): int(r["unit_price_mfen_per_l"]) for r in rows}


def _details(
    set_id: int, prices: Mapping[str, int], effective_at: datetime | None
) -> dict[str, object]:
    at = None if effective_at is None else effective_at.isoformat()
    return {"price_set_id": set_id, "prices": dict(prices), "effective_at": at}


def _view(
    set_id: int, station_id: str, status: str, prices: Mapping[str, int], at: datetime | None
) -> PriceSetView:
    items = tuple(PriceItem(g, p) for g, p in sorted(prices.items()))
    return PriceSetView(
        id=set_id, station_id=station_id, status=status, items=items, effective_at=at
    )
