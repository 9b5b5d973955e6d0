"""The order layer's rows: the order's projection, its payment attempts, and their results.

Every writer of ``orders`` locks the order row first and its attempts after, as the callback
path does (``payments``), so the two never deadlock. An attempt's result and the money it moves
are written in one transaction, forward only (``attempts.RESULT_TRANSITIONS``): whichever of
the provider's response and its callback arrives first moves the attempt and the order's money,
and the other finds nothing left to do. That is what makes money move exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .attempts import MoneyConflict, OrderMoney, apply_money, result_allowed
from .bridge import Database, Row, Transaction
from .errors import QueryError

__all__ = [
    "AttemptRow",
    "SettleResult",
    "attempt_state",
    "insert_attempt",
    "insert_order",
    "open_refund_attempts_of",
    "order_row",
    "settle_attempt",
    "stuck_attempts",
    "update_order",
    "update_order_row",
]

_MONEY_OPERATIONS = frozenset({"hold", "capture", "release", "refund"})


@dataclass(frozen=True, slots=True)
class AttemptRow:
    id: str
    order_id: str
    attempt_no: int
    channel: str
    provider: str
    operation: str
    key: str
    amount_fen: int
    state: str
    provider_ref: str | None
    reason: str | None
    requested_at: datetime


def _attempt(row: Row) -> AttemptRow:
    return AttemptRow(
        row["id"],
        row["order_id"],
        row["attempt_no"],
        row["channel"],
        row["provider"],
        row["operation"],
        row["idempotency_key"],
        row["amount_fen"],
        row["state"],
        row["provider_ref"],
        row["reason"],
        row["requested_at"],
    )


async def insert_order(db: Database, row: Mapping[str, Any]) -> bool:
    """Insert the order's projection; False when it exists already (recovery re-inserts).
    Raises UniqueViolation when another live post-pay order holds the same pump sale."""
    status = await db.execute(
        "INSERT INTO orders (id, customer_id, station_id, pump_no, flow, preset_kind,"
        " preset_value, state, method, payer_id, nozzle_no, coupon, pump_sale_seq, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $9, $10, $11, $12, $13,"
        " $13) ON CONFLICT (id) DO NOTHING",
        row["id"],
        row["customer_id"],
        row["station_id"],
        row["pump_no"],
        row["flow"],
        row.get("preset_kind"),
        row.get("preset_value"),
        row["method"],
        row["payer_id"],
        row.get("nozzle_no"),
        row.get("coupon"),
        row.get("pump_sale_seq"),
        row["created_at"],
    )
    return status.endswith(" 1")


_PROJECTED = frozenset(
    {
        "state",
        "terminal",
        "channel",
        "price_set_id",
        "sale_id",
        "gross_fen",
        "discount_fen",
        "routing",
        "grade",
        "unit_price_mfen_per_l",
        "volume_ml",
        "hold_attempts",
        "payment_key",
        "client_data",
        "failure",
        "nozzle_no",
    }
)
_JSON_COLUMNS = frozenset({"routing", "client_data"})


def _update_sql(changes: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The UPDATE of the projection's ``changes`` (``$1`` is the order id) and its values."""
    unknown = set(changes) - _PROJECTED
    if unknown:
        raise ValueError(f"not projected columns: {sorted(unknown)}")
    names = sorted(changes)
    sets = ", ".join(
        f"{name} = ${i}::jsonb" if name in _JSON_COLUMNS else f"{name} = ${i}"
        for i, name in enumerate(names, start=2)
    )
    values = [
        orjson.dumps(changes[n]).decode() if n in _JSON_COLUMNS else changes[n] for n in names
    ]
    return f"UPDATE orders SET {sets}, updated_at = now() WHERE id = $1", values


async def update_order(db: Database, order_id: str, changes: Mapping[str, Any]) -> None:
    """Write the projection's columns (never the money: only attempt results move money)."""
    sql, values = _update_sql(changes)
    await db.execute(sql, order_id, *values)


_ROW_SELECT = (
    "o.*, a.state AS payment_state, a.provider AS payment_provider FROM {orders} o"
    " LEFT JOIN payment_attempts a ON a.idempotency_key = o.payment_key"
)


async def order_row(db: Database, order_id: str) -> Row | None:
    """The projection, with the state and provider of the attempt it shows."""
    return await db.fetchrow(
        "SELECT " + _ROW_SELECT.format(orders="orders") + " WHERE o.id = $1", order_id
    )


async def update_order_row(db: Database, order_id: str, changes: Mapping[str, Any]) -> Row | None:
    """:func:`update_order`, answering :func:`order_row` after it: one round trip instead of
    two for a step whose change is published (the order actor's every state change)."""
    sql, values = _update_sql(changes)
    return await db.fetchrow(
        f"WITH u AS ({sql} RETURNING *) SELECT " + _ROW_SELECT.format(orders="u"),
        order_id,
        *values,
    )


async def insert_attempt(
    db: Database,
    *,
    order_id: str,
    attempt_no: int,
    channel: str,
    provider: str,
    operation: str,
    key: str,
    amount_fen: int,
    requested_at: datetime,
    reason: str | None = None,
) -> None:
    """Record an attempt before its request is sent (routing.md: every attempt keeps its own
    key, recorded first). Idempotent: recovery re-inserts what a crash may have lost."""
    await db.execute(
        "INSERT INTO payment_attempts (id, order_id, attempt_no, channel, provider, operation,"
        " idempotency_key, amount_fen, requested_at, reason) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " $8, $9, $10) ON CONFLICT (idempotency_key) DO NOTHING",
        f"{order_id}-{attempt_no}",
        order_id,
        attempt_no,
        channel,
        provider,
        operation,
        key,
        amount_fen,
        requested_at,
        reason,
    )


async def attempt_state(db: Database, key: str) -> AttemptRow | None:
    row = await db.fetchrow("SELECT * FROM payment_attempts WHERE idempotency_key = $1", key)
    return None if row is None else _attempt(row)


@dataclass(frozen=True, slots=True)
class SettleResult:
    attempt: AttemptRow
    changed: bool  # this call moved the attempt (and, on success, the order's money)


async def settle_attempt(
    db: Database,
    key: str,
    state: str,
    *,
    amount_fen: int | None = None,
    provider_ref: str | None = None,
    reason: str | None = None,
) -> SettleResult:
    """Record a provider's answer for the attempt ``key``, forward only; an attempt reaching
    ``approved`` moves the order's money by its amount (or ``amount_fen`` when the provider
    confirmed another, e.g. a capture of less than asked) in the same transaction."""
    return await db.atomic(_settle, key, state, amount_fen, provider_ref, reason)


async def _settle(
    tx: Transaction,
    key: str,
    state: str,
    amount_fen: int | None,
    provider_ref: str | None,
    reason: str | None,
) -> SettleResult:
    found = await tx.fetchrow(
        "SELECT order_id FROM payment_attempts WHERE idempotency_key = $1", key
    )
    if found is None:
        raise QueryError(f"no payment attempt with key {key!r}")
    order = await tx.fetchrow(
        "SELECT held_fen, captured_fen, released_fen, refunded_fen FROM orders"
        " WHERE id = $1 FOR UPDATE",
        found["order_id"],
    )
    row = await tx.fetchrow(
        "SELECT * FROM payment_attempts WHERE idempotency_key = $1 FOR UPDATE", key
    )
    assert order is not None and row is not None
    current = _attempt(row)
    if not result_allowed(current.state, state):
        return SettleResult(current, changed=False)
    amount = current.amount_fen if amount_fen is None else amount_fen
    if state == "approved" and current.operation in _MONEY_OPERATIONS:
        money = OrderMoney(
            order["held_fen"],
            order["captured_fen"],
            order["released_fen"],
            order["refunded_fen"],
        )
        moved = amount
        if current.operation == "release":
            # An implied release (Alipay's unfreeze after a completing capture) may have
            # been recorded from its callback first: only what is still held goes back.
            left = money.held_fen - money.captured_fen - money.released_fen
            moved = min(amount, max(0, left))
        try:
            new = apply_money(money, current.operation, moved)
        except MoneyConflict as exc:
            raise QueryError(str(exc)) from exc
        await tx.execute(
            "UPDATE orders SET held_fen = $2, captured_fen = $3, released_fen = $4,"
            " refunded_fen = $5, updated_at = now() WHERE id = $1",
            current.order_id,
            new.held_fen,
            new.captured_fen,
            new.released_fen,
            new.refunded_fen,
        )
    await tx.execute(
        "UPDATE payment_attempts SET state = $2, provider_ref = coalesce($3, provider_ref),"
        " reason = coalesce($4, reason), amount_fen = $5, resolved_at = CASE WHEN $2 IN"
        " ('approved', 'declined', 'failed', 'reversed') THEN now() ELSE resolved_at END"
        " WHERE id = $1",
        current.id,
        state,
        provider_ref,
        reason,
        amount,
    )
    updated = AttemptRow(
        current.id,
        current.order_id,
        current.attempt_no,
        current.channel,
        current.provider,
        current.operation,
        current.key,
        amount,
        state,
        provider_ref or current.provider_ref,
        reason or current.reason,
        current.requested_at,
    )
    return SettleResult(updated, changed=True)


async def stuck_attempts(db: Database, older_than: datetime, limit: int = 100) -> list[AttemptRow]:
    """Attempts with no final answer since before ``older_than`` (the sweeper's list)."""
    rows = await db.fetch(
        "SELECT * FROM payment_attempts WHERE state IN ('requested', 'pending', 'unknown')"
        " AND requested_at < $1 ORDER BY requested_at LIMIT $2",
        older_than,
        limit,
    )
    return [_attempt(r) for r in rows]


async def open_refund_attempts_of(db: Database, order_id: str) -> list[AttemptRow]:
    rows = await db.fetch(
        "SELECT * FROM payment_attempts WHERE order_id = $1 AND operation = 'refund'"
        " AND state IN ('requested', 'pending', 'unknown') ORDER BY attempt_no",
        order_id,
    )
    return [_attempt(r) for r in rows]
