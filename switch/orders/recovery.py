"""Recovery on start: every order that was not finished is re-driven.

Theory of operation
-------------------
The journal knows which orders are not terminal (``journal_streams``). Each is started again;
its actor's ``init`` folds the journal and its first step asks the attempt rows, the providers
and the pumps what happened while the switch was down (ARCHITECTURE.md invariant 7). Nothing
is re-sent before it was looked up. Orders are started a few at a time, so a switch that died
with thousands in flight comes back without a stampede on the providers.

An order row with no journal at all is one whose creation died between the row and its first
event: nothing was sent for it, so it is closed as failed.
"""

from __future__ import annotations

import structlog
import trio

from switch.store.bridge import Database
from switch.store.journal import Journal

from .directory import OrderDirectory

__all__ = ["recover_orders"]

log = structlog.get_logger("orders")


async def recover_orders(
    db: Database, journal: Journal, directory: OrderDirectory, *, concurrency: int = 16
) -> int:
    await db.execute(
        "UPDATE orders SET state = 'failed', terminal = true, failure = 'the switch stopped"
        " before the order started', updated_at = now() WHERE NOT terminal AND NOT EXISTS"
        " (SELECT 1 FROM journal_streams s WHERE s.stream_id = 'order:' || orders.id)"
    )
    heads = await journal.open_streams("order")
    limiter = trio.CapacityLimiter(concurrency)

    async def start(order_id: str) -> None:
        async with limiter:
            try:
                await directory.ensure(order_id)
            except Exception as exc:  # one broken order must not keep the others down
                log.exception("order.recovery_failed", order=order_id, error=str(exc))

    async with trio.open_nursery() as nursery:
        for head in heads:
            nursery.start_soon(start, head.stream_id.split(":", 1)[1])
    if heads:
        log.info("orders.recovered", count=len(heads))
    return len(heads)
