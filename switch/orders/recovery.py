"""Recovery on start: every order that was not finished is re-driven.

Theory of operation
-------------------
The journal knows which orders are not terminal (``journal_streams``). Each is started again;
its actor's ``init`` folds the journal and its first step asks the attempt rows, the providers
and the pumps what happened while the switch was down (ARCHITECTURE.md invariant 7). Nothing
is re-sent before it was looked up. Orders are started up to ``concurrency`` at a time: an
order's start is its journal (preloaded) and one write of its row, so they mostly wait on the
database pool, which bounds them anyway; started few at a time behind a busy pool (the switch
takes traffic while it recovers), a few hundred took close to a minute. The caller may pass
the open streams it already listed: the switch does, having given the orders a
:class:`~switch.store.journal.PreloadingJournal` over them, so that their actors' first loads
are one query in all.

An order row with no journal at all is one whose creation died between the row and its first
event: nothing was sent for it, so it is closed as failed. An order row still open whose
stream is terminal is one whose last step died between the journal and the row: its actor is
started too, and its ``init`` writes the row from the journal (then it finishes what a
terminal order still owes, such as a refund requested and not yet sent, and stops).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
import trio

from switch.store.bridge import Database
from switch.store.journal import Journal, StreamHead

from .directory import OrderDirectory

__all__ = ["recover_orders"]

log = structlog.get_logger("orders")


async def recover_orders(
    db: Database,
    journal: Journal,
    directory: OrderDirectory,
    *,
    concurrency: int = 128,
    heads: Sequence[StreamHead] | None = None,
) -> int:
    await db.execute(
        "UPDATE orders SET state = 'failed', terminal = true, failure = 'the switch stopped"
        " before the order started', updated_at = now() WHERE NOT terminal AND NOT EXISTS"
        " (SELECT 1 FROM journal_streams s WHERE s.stream_id = 'order:' || orders.id)"
    )
    if heads is None:
        heads = await journal.open_streams("order")
    order_ids = [head.stream_id.split(":", 1)[1] for head in heads]
    stale = await db.fetch(
        "SELECT o.id FROM orders AS o JOIN journal_streams AS s ON s.stream_id = 'order:' || o.id"
        " WHERE NOT o.terminal AND s.terminal ORDER BY o.id"
    )
    order_ids += [row["id"] for row in stale]
    limiter = trio.CapacityLimiter(concurrency)

    async def start(order_id: str) -> None:
        async with limiter:
            try:
                await directory.ensure(order_id)
            except Exception as exc:  # one broken order must not keep the others down
                log.exception("order.recovery_failed", order=order_id, error=str(exc))

    async with trio.open_nursery() as nursery:
        for order_id in order_ids:
            nursery.start_soon(start, order_id)
    if order_ids:
        log.info("orders.recovered", count=len(order_ids), stale_rows=len(stale))
    return len(order_ids)
