"""What one UnionPay channel instance remembers about the orders it has seen.

ACP identifies a transaction by orderId *and* txnTime, so a queryTrans needs both: the memory
keeps each orderId's txnTime (what we sent, or what UnionPay's notify said). A hold's
follow-ups (completion, pre-auth cancel, refund) are transactions of their own, so the memory
also links each hold key to the follow-ups it knows of — a query of the hold composes them —
and keeps the completion's queryId, which a refund names as its ``origQryId``.

It is bounded: past :data:`MEMORY` orderIds the oldest are forgotten, together with their
links. A forgotten (or never seen, after a restart) order is found again through the
``sent_at`` / queryId the order layer passes. Pure state, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from .messages import TxnType

__all__ = ["MEMORY", "OrderMemory"]

MEMORY = 100_000  # remembered txnTimes: a day of a busy merchant's transactions


class OrderMemory:
    def __init__(self, limit: int = MEMORY) -> None:
        self.limit = limit
        self._txn_times: OrderedDict[str, str] = OrderedDict()  # orderId → its txnTime
        self._follow_ups: dict[str, list[tuple[TxnType, str]]] = {}  # hold key → follow-ups
        self._captured_ref: dict[str, str] = {}  # hold key → the completion's queryId

    def txn_time(self, order_id: str) -> str | None:
        return self._txn_times.get(order_id)

    def remember(self, order_id: str, txn_time: str, *, authoritative: bool = False) -> None:
        """Note an orderId's txnTime, forgetting the oldest orders to stay bounded.

        A resent request keeps the first txnTime: that is the one UnionPay has on file (a
        notify's txnTime is UnionPay's own record, ``authoritative``, and replaces it)."""
        if authoritative or order_id not in self._txn_times:
            self._txn_times[order_id] = txn_time
        self._txn_times.move_to_end(order_id)
        while len(self._txn_times) > self.limit:
            forgotten = self._txn_times.popitem(last=False)[0]
            self._follow_ups.pop(forgotten, None)
            self._captured_ref.pop(forgotten, None)

    def link(self, hold_key: str, txn_type: TxnType, order_id: str) -> None:
        """Note a follow-up of the hold, so that a query of the hold composes it."""
        known = self._follow_ups.setdefault(hold_key, [])
        if (txn_type, order_id) not in known:
            known.append((txn_type, order_id))
        while len(self._follow_ups) > self.limit:  # holds linked from queries and notifies alone
            self._follow_ups.pop(next(iter(self._follow_ups)))

    def follow_ups(self, hold_key: str) -> Iterator[str]:
        """The orderIds of the hold's known follow-ups, oldest first (one linked while the
        caller iterates is included)."""
        return (order_id for _, order_id in self._follow_ups.get(hold_key, []))

    def captured(self, hold_key: str, query_id: str) -> None:
        """The hold's completion succeeded as ``query_id``: what its refunds name."""
        self._captured_ref[hold_key] = query_id

    def captured_ref(self, hold_key: str) -> str | None:
        return self._captured_ref.get(hold_key)
