"""After (and around) the run, from the switch's database: the books, the server-side
callback → authorized latency, and how long the switch took to recover from a SIGKILL.

Reading the database is not looking inside the switch: the tables are its public record
(what an auditor reads), and the figures taken here are the switch's own timestamps, so they
are not blurred by how often the load generator looks.

* callback → authorized: per prepay order, the first callback the switch received for it
  (``callback_inbox.received_at``) to the first ``authorized`` event of the order's journal
  stream (``journal.recorded_at``). Orders authorized before any callback arrived (the
  switch learned of the payment by querying) are counted apart, not as negative latencies.
* recovery: the orders not terminal at the kill; the switch has recovered when it is ready
  again and every one of them has moved on (its row was updated after the kill, or it is
  terminal): :func:`unmoved` counts the ones that have not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from switch.config import SwitchConfig
from switch.demo.sims import (
    ProviderControl,
    PumpControl,
    fetch_provider_ledgers,
    fetch_pump_ledger,
)
from switch.invariants import Violation, check_books
from switch.store import Database

__all__ = [
    "CallbackLatencies",
    "audit_books",
    "callback_latencies",
    "in_flight_orders",
    "open_orders",
    "unmoved",
]

_CALLBACK_SQL = """
SELECT o.id,
       (SELECT min(c.received_at) FROM callback_inbox c WHERE c.order_id = o.id) AS callback_at,
       (SELECT min(j.recorded_at) FROM journal j
         WHERE j.stream_id = 'order:' || o.id AND j.type = 'authorized') AS authorized_at
FROM orders o
WHERE o.flow = 'prepay'
"""


@dataclass(frozen=True, slots=True)
class CallbackLatencies:
    seconds: Sequence[float]  # one per order whose callback came before its authorization
    authorized_first: int  # authorized before any callback (learned by a query)
    no_callback: int  # authorized, and no callback received at all


async def callback_latencies(db: Database) -> CallbackLatencies:
    seconds: list[float] = []
    first = missing = 0
    for row in await db.fetch(_CALLBACK_SQL):
        authorized: datetime | None = row["authorized_at"]
        callback: datetime | None = row["callback_at"]
        if authorized is None:
            continue
        if callback is None:
            missing += 1
        elif callback > authorized:
            first += 1
        else:
            seconds.append((authorized - callback).total_seconds())
    return CallbackLatencies(seconds, first, missing)


async def open_orders(db: Database) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM orders WHERE NOT terminal")
    return count


async def in_flight_orders(db: Database) -> list[str]:
    return [r["id"] for r in await db.fetch("SELECT id FROM orders WHERE NOT terminal")]


async def unmoved(db: Database, order_ids: Sequence[str], since: datetime) -> int:
    """Of ``order_ids``, how many are neither terminal nor updated since ``since``."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM orders WHERE id = ANY($1::text[]) AND NOT terminal"
        " AND updated_at < $2",
        list(order_ids),
        since,
    )
    return count


async def audit_books(
    db: Database,
    config: SwitchConfig,
    pumps: PumpControl,
    providers: Sequence[ProviderControl],
    totals_moved: Mapping[tuple[str, int, int], int],
) -> list[Violation]:
    """:func:`switch.invariants.check_books` against the simulators' ledgers and how far
    the totalizers moved during the run; per channel, as the configuration names them."""
    ledgers: dict[str, list[dict[str, Any]]] = await fetch_provider_ledgers(list(providers))
    pump_sales = await fetch_pump_ledger(pumps)
    channels = {
        c.config.name: (c.config.provider.value, c.config.merchant_id) for c in config.channels
    }
    return await check_books(
        db,
        provider_ledgers=ledgers,
        pump_ledger=pump_sales,
        pump_totals=totals_moved,
        channels=channels,
    )
