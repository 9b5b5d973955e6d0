"""Provider callbacks into the books: one transaction per verified event.

Theory of operation
-------------------
A verified ``CallbackEvent`` is recorded in one transaction that

1. inserts the inbox row (provider, event_id, status) with ``ON CONFLICT DO NOTHING``. The
   unique index is the de-duplication: a second delivery of the same event (a replay, or an
   identical one racing this one on another connection, case 14) waits on the index until the
   first commits, finds the row and is acknowledged without touching anything. If the first
   rolls back, the second proceeds as if it were first;
2. finds the attempt by its idempotency key (``out_trade_no``, or ``out_refund_no`` for
   refunds). Attempts are journaled before the provider is called, so a callback that beats
   the provider's response still finds its attempt (case 15);
3. locks the order, then the attempt the event names, then the one it is about when that is
   another (always in that order, as every writer of orders must: whoever holds the order lock
   first takes all the attempt locks, so two writers never deadlock on them), and checks the
   business: unknown key, another provider or channel, a kind that does not fit the attempt's
   operation, a hold or trade reference that is not ours (case 24), an amount that differs (a
   running refund total is checked against all the payment's refunds). Any of these rolls
   everything back and raises ``CallbackRejected``: the provider keeps retrying, and the event
   is never acknowledged and dropped (case 11). Alerts for them are written after the
   rollback, on their own;
4. applies the forward-only step of ``attempts.decide`` to the attempt and the order's money,
   and for a late success journals a refund attempt (key ``<attempt id>-LR``) and an alert. A
   release we never asked for but a completed capture implied (``attempts.IMPLIED_BY``) moves
   only the order's money, recorded against the capture. A payment event naming the hold with
   the amount of one of its captures is that capture's trade (``attempts.IMPLIED_CAPTURE``) and
   moves the capture. The Alipay-specific readings of the books are in ``implied``.

Only when this returns has the transaction committed, and only then may the caller acknowledge.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from channels.model import CallbackEvent, CallbackKind, CallbackRejected

from .alerts import record_alert, to_json
from .attempts import (
    IMPLIED_BY,
    KIND_OPERATIONS,
    REDIRECTED_KINDS,
    REF_BOUND_KINDS,
    AmountCheck,
    Effect,
    EventOutcome,
    Family,
    MoneyConflict,
    OrderMoney,
    Step,
    apply_money,
    check_cumulative,
    classify,
    decide,
    family_of,
    implied_capture,
    late_refund_key,
    ref_conflicts,
    result_allowed,
    stated_amount,
)
from .bridge import Database, Row, Transaction
from .errors import QueryError, StoreError
from .implied import implied_release, other_refunds, trade_capture

__all__ = [
    "AttemptResult",
    "CallbackOutcome",
    "Disposition",
    "advance_attempt",
    "record_callback",
]

log = structlog.get_logger("store")

LATE_REFUND_SUFFIX = "-LR"
_SKIPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class Disposition(enum.Enum):
    APPLIED = "applied"  # the attempt moved
    IGNORED = "ignored"  # an old or repeated event: nothing moved, acknowledged
    DUPLICATE = "duplicate"  # the inbox already holds this event
    LATE_SUCCESS = "late_success"  # approved, a refund attempt journaled, an alert written


_DISPOSITIONS: Mapping[Effect, Disposition] = {
    Effect.APPLY: Disposition.APPLIED,
    Effect.CORRECTION: Disposition.APPLIED,
    Effect.IGNORE: Disposition.IGNORED,
    Effect.LATE_SUCCESS: Disposition.LATE_SUCCESS,
}


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    disposition: Disposition
    inbox_id: int | None
    order_id: str | None
    attempt_id: str | None
    previous_state: str | None = None
    state: str | None = None
    refund_attempt_id: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    attempt_id: str
    state: str  # the state after the call: the requested one, or the one kept
    changed: bool


def _event_details(event: CallbackEvent) -> dict[str, Any]:
    return {
        "provider": event.provider.value,
        "channel": event.channel,
        "kind": event.kind.value,
        "event_id": event.event_id,
        "status": event.status,
        "out_trade_no": event.out_trade_no,
        "out_refund_no": event.out_refund_no,
        "provider_ref": event.provider_ref,
        "amount_fen": event.amount_fen,
        "refund_fen": event.refund_fen,
        "refund_cumulative": event.refund_cumulative,
    }


async def record_callback(
    db: Database,
    event: CallbackEvent,
    *,
    body: bytes,
    headers: Mapping[str, str],
    remote: str | None = None,
) -> CallbackOutcome:
    """Record and apply one verified event (see the module's theory of operation).

    Raises ``CallbackRejected`` for a business rejection (nothing is written but its alert)
    and ``StoreError`` when the transaction could not commit: in both cases the caller must
    not acknowledge.
    """
    stored_headers = {k: v for k, v in headers.items() if k.lower() not in _SKIPPED_HEADERS}
    if remote is not None:
        stored_headers = {**stored_headers, ":remote": remote}
    try:
        return await db.atomic(_record, event, body, stored_headers)
    except CallbackRejected as rejected:
        if rejected.alert:
            try:
                await record_alert(
                    db,
                    "callback_rejected",
                    severity="critical",
                    subject=event.out_trade_no,
                    details={**_event_details(event), "reason": rejected.reason},
                )
            except StoreError as exc:  # the rejection is what the caller must hear
                log.warning("callback.alert_not_written", reason=rejected.reason, error=str(exc))
        raise


async def _record(
    tx: Transaction, event: CallbackEvent, body: bytes, headers: Mapping[str, str]
) -> CallbackOutcome:
    inbox_id: int | None = await tx.fetchval(
        "INSERT INTO callback_inbox (provider, event_id, status, order_id, body, headers)"
        " VALUES ($1, $2, $3, NULL, $4, $5::jsonb)"
        " ON CONFLICT (provider, event_id, status) DO NOTHING RETURNING id",
        event.provider.value,
        event.event_id,
        event.status,
        body,
        to_json(headers),
    )
    if inbox_id is None:
        first = await tx.fetchrow(
            "SELECT id, order_id, attempt_id FROM callback_inbox"
            " WHERE provider = $1 AND event_id = $2 AND status = $3",
            event.provider.value,
            event.event_id,
            event.status,
        )
        return CallbackOutcome(
            Disposition.DUPLICATE,
            None if first is None else first["id"],
            None if first is None else first["order_id"],
            None if first is None else first["attempt_id"],
        )

    attempt, implied = await _locked_attempt(tx, event)
    previous = attempt["state"]
    operation = attempt["operation"]
    family = family_of(operation)
    if family is None:
        raise CallbackRejected("kind_mismatch", f"a {operation} attempt takes no callbacks")
    order = await tx.fetchrow(
        "SELECT terminal, held_fen, captured_fen, released_fen, refunded_fen FROM orders"
        " WHERE id = $1",
        attempt["order_id"],
    )
    if order is None:  # the foreign key makes this impossible; refuse rather than guess
        raise CallbackRejected("unknown_order", f"attempt {attempt['id']} has no order", alert=True)
    if implied:
        return await _record_implied_release(tx, inbox_id, event, attempt, order)
    outcome = classify(event)
    if await _check_amount(tx, event, attempt) is AmountCheck.OLD:
        step = Step(None, Effect.IGNORE)
    else:
        wants_money = True
        if family is Family.COLLECT:
            wants_money = not order["terminal"] and not await _paid_elsewhere(tx, attempt)
        step = decide(family, previous, outcome, order_wants_money=wants_money)

    refund_id = None
    if step.effect is not Effect.IGNORE:
        if outcome is EventOutcome.SUCCEEDED:
            await _apply_money(tx, attempt["order_id"], order, operation, attempt["amount_fen"])
        await tx.execute(
            "UPDATE payment_attempts SET state = $2, provider_ref = coalesce(provider_ref, $3),"
            " reason = $4, resolved_at = CASE WHEN $2 IN ('approved', 'declined', 'failed',"
            " 'reversed') THEN now() ELSE resolved_at END WHERE id = $1",
            attempt["id"],
            step.state,
            event.provider_ref,
            f"callback:{event.status}" if step.effect is Effect.APPLY else step.effect.value,
        )
    if step.effect is Effect.LATE_SUCCESS:
        refund_id = await _late_refund(tx, attempt, event)
    elif step.effect is Effect.CORRECTION:
        await record_alert(
            tx,
            "callback_contradicts_result",
            subject=attempt["order_id"],
            details={**_event_details(event), "attempt": attempt["id"], "was": previous},
        )

    await _close_inbox(
        tx,
        inbox_id,
        attempt,
        applied=step.effect is not Effect.IGNORE,
        result=f"{previous}->{step.state or previous} ({step.effect.value}, {outcome.value})",
    )
    return CallbackOutcome(
        _DISPOSITIONS[step.effect],
        inbox_id,
        attempt["order_id"],
        attempt["id"],
        previous,
        step.state or previous,
        refund_id,
    )


# Events about an operation of their own carry its key (out_refund_no / out_request_no); a
# release or capture event may name only the hold (see REDIRECTED_KINDS).
_OWN_KEY_KINDS = frozenset({CallbackKind.REFUND, CallbackKind.RELEASE, CallbackKind.CAPTURE})
_ATTEMPT_COLUMNS = (
    "id, order_id, attempt_no, channel, provider, operation, idempotency_key, amount_fen, state,"
    " provider_ref"
)


async def _close_inbox(
    tx: Transaction, inbox_id: int, attempt: Row, *, applied: bool, result: str
) -> None:
    await tx.execute(
        "UPDATE callback_inbox SET state = $2, result = $3, order_id = $4, attempt_id = $5,"
        " processed_at = now() WHERE id = $1",
        inbox_id,
        "applied" if applied else "ignored",
        result,
        attempt["order_id"],
        attempt["id"],
    )


async def _locked_attempt(tx: Transaction, event: CallbackEvent) -> tuple[Row, bool]:
    """The attempt the event is about, locked after its order and the attempt the event names
    (the lock order every writer of orders and attempts follows), with the provider, channel,
    kind and reference checks done; and whether the event is about an operation that attempt
    only implied (``IMPLIED_BY``)."""
    if event.kind in _OWN_KEY_KINDS and event.out_refund_no:
        key = event.out_refund_no
    elif event.kind is CallbackKind.REFUND:
        raise CallbackRejected("missing_refund_key", "a refund event without out_refund_no")
    else:
        key = event.out_trade_no
    found = await tx.fetchrow(
        "SELECT order_id FROM payment_attempts WHERE idempotency_key = $1", key
    )
    if found is None:
        raise CallbackRejected("unknown_order", f"no attempt with key {key!r}", alert=True)
    await tx.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", found["order_id"])
    attempt = await tx.fetchrow(
        f"SELECT {_ATTEMPT_COLUMNS} FROM payment_attempts WHERE idempotency_key = $1 FOR UPDATE",
        key,
    )
    if attempt is None:  # deleted between the two reads: attempts are never deleted
        raise CallbackRejected("unknown_order", f"attempt {key!r} vanished", alert=True)
    named, implied = attempt, False
    redirect = REDIRECTED_KINDS.get(event.kind)
    if redirect is not None and attempt["operation"] == "hold":
        target = await _order_attempt(tx, attempt["order_id"], redirect)
        implier = IMPLIED_BY.get(event.kind)
        if target is None and implier is not None:
            target = await _order_attempt(tx, attempt["order_id"], implier)
            implied = target is not None
        if target is None:
            raise CallbackRejected(
                "unknown_attempt",
                f"a {event.kind.value} event for order {attempt['order_id']}, which has no "
                f"{redirect} attempt",
                alert=True,
            )
        attempt = target
    else:
        traded = implied_capture(event, attempt["operation"], attempt["amount_fen"])
        capture = None if traded is None else await trade_capture(tx, event, attempt, traded)
        if capture is not None:
            attempt = await _attempt_by_id(tx, capture)
    if attempt["provider"] != event.provider.value:
        raise CallbackRejected(
            "unknown_order", f"key {key!r} belongs to {attempt['provider']}", alert=True
        )
    if attempt["channel"] != event.channel:
        raise CallbackRejected(
            "channel_mismatch",
            f"attempt {attempt['id']} went through {attempt['channel']}, not {event.channel}",
            alert=True,
        )
    if not implied and attempt["operation"] not in KIND_OPERATIONS[event.kind]:
        raise CallbackRejected(
            "kind_mismatch", f"a {event.kind.value} event for a {attempt['operation']} attempt"
        )
    bound = event.kind in REF_BOUND_KINDS and named["operation"] == "hold"
    if bound and ref_conflicts(named["provider_ref"], event.provider_ref):
        raise CallbackRejected(
            "provider_ref_mismatch",
            f"a {event.kind.value} event for {event.provider_ref!r}, hold {named['id']} is "
            f"{named['provider_ref']!r}",
            alert=True,
        )
    return attempt, implied


async def _attempt_by_id(tx: Transaction, attempt_id: str) -> Row:
    """An attempt this transaction has locked already."""
    row = await tx.fetchrow(
        f"SELECT {_ATTEMPT_COLUMNS} FROM payment_attempts WHERE id = $1", attempt_id
    )
    if row is None:  # locked by us a statement ago, and attempts are never deleted
        raise CallbackRejected("unknown_attempt", f"attempt {attempt_id} vanished", alert=True)
    return row


async def _order_attempt(tx: Transaction, order_id: str, operation: str) -> Row | None:
    """The order's attempt of ``operation`` an event naming only the hold is about: the one
    still in flight, else the latest."""
    return await tx.fetchrow(
        f"SELECT {_ATTEMPT_COLUMNS} FROM payment_attempts WHERE order_id = $1"
        " AND operation = $2 ORDER BY (state IN ('requested', 'pending', 'unknown')) DESC,"
        " attempt_no DESC LIMIT 1 FOR UPDATE",
        order_id,
        operation,
    )


async def _check_amount(tx: Transaction, event: CallbackEvent, attempt: Row) -> AmountCheck:
    """The event's amount against the attempt's; a running refund total (Alipay's refund_fee)
    against the payment's refunds on our books. Raises for what must not be acknowledged."""
    amount = attempt["amount_fen"]
    if event.refund_cumulative and event.refund_fen is not None:
        approved, in_flight = await other_refunds(tx, event, attempt)
        check = check_cumulative(
            event.refund_fen, amount, approved_others=approved, in_flight_others=in_flight
        )
        detail = (
            f"event states {event.refund_fen} fen refunded in all; attempt {attempt['id']} is "
            f"for {amount} fen after {approved} fen approved and {in_flight} fen in flight"
        )
    else:
        check = AmountCheck.MATCH if stated_amount(event) == amount else AmountCheck.MISMATCH
        detail = (
            f"event states {stated_amount(event)} fen, attempt {attempt['id']} is for {amount} fen"
        )
    if check is AmountCheck.MISMATCH:
        raise CallbackRejected("amount_mismatch", detail, alert=True)
    if check is AmountCheck.AHEAD:  # the provider retries; by then the books have caught up
        raise CallbackRejected("out_of_order", detail)
    return check


async def _record_implied_release(
    tx: Transaction, inbox_id: int, event: CallbackEvent, capture: Row, order: Row
) -> CallbackOutcome:
    """The rest of the hold, unfrozen by the provider after a capture that completed it (Alipay
    auth_confirm_mode COMPLETE) when the order journaled no release: the provider confirms what
    the capture implied. ``implied.implied_release`` judges it against the order's money; it is
    recorded against the capture, which it leaves as it is."""
    state = capture["state"]
    money = OrderMoney(
        order["held_fen"], order["captured_fen"], order["released_fen"], order["refunded_fen"]
    )
    applied = implied_release(event, capture, money)
    if applied:
        await _apply_money(tx, capture["order_id"], order, "release", event.amount_fen)
    effect = Effect.APPLY if applied else Effect.IGNORE
    await _close_inbox(
        tx,
        inbox_id,
        capture,
        applied=applied,
        result=f"{state}->{state} (implied_release:{effect.value}, {classify(event).value})",
    )
    return CallbackOutcome(
        _DISPOSITIONS[effect], inbox_id, capture["order_id"], capture["id"], state, state
    )


async def _paid_elsewhere(tx: Transaction, attempt: Row) -> bool:
    other = await tx.fetchval(
        "SELECT count(*) FROM payment_attempts WHERE order_id = $1 AND operation = 'hold'"
        " AND state = 'approved' AND id <> $2",
        attempt["order_id"],
        attempt["id"],
    )
    return bool(other)


async def _apply_money(
    tx: Transaction, order_id: str, order: Row, operation: str, amount_fen: int
) -> None:
    money = OrderMoney(
        order["held_fen"], order["captured_fen"], order["released_fen"], order["refunded_fen"]
    )
    try:
        new = apply_money(money, operation, amount_fen)
    except MoneyConflict as exc:
        raise CallbackRejected("out_of_order", str(exc)) from exc
    await tx.execute(
        "UPDATE orders SET held_fen = $2, captured_fen = $3, released_fen = $4,"
        " refunded_fen = $5, updated_at = now() WHERE id = $1",
        order_id,
        new.held_fen,
        new.captured_fen,
        new.released_fen,
        new.refunded_fen,
    )


async def _late_refund(tx: Transaction, attempt: Row, event: CallbackEvent) -> str:
    """Journal the refund of a late success; whoever drives refunds sends it. The key is
    derived from the attempt, so a second late success for it can never refund twice."""
    refund_id = f"{attempt['id']}{LATE_REFUND_SUFFIX}"
    await tx.execute(
        "INSERT INTO payment_attempts (id, order_id, attempt_no, channel, provider, operation,"
        " idempotency_key, amount_fen, state, reason)"
        " SELECT $1, $2, coalesce(max(attempt_no), 0) + 1, $3, $4, 'refund', $5, $6,"
        " 'requested', 'late_success' FROM payment_attempts WHERE order_id = $2"
        " ON CONFLICT DO NOTHING",
        refund_id,
        attempt["order_id"],
        attempt["channel"],
        attempt["provider"],
        late_refund_key(attempt["idempotency_key"]),
        attempt["amount_fen"],
    )
    await record_alert(
        tx,
        "late_success",
        severity="critical",
        subject=attempt["order_id"],
        details={**_event_details(event), "attempt": attempt["id"], "refund_attempt": refund_id},
    )
    return refund_id


async def advance_attempt(
    db: Database,
    idempotency_key: str,
    state: str,
    *,
    provider_ref: str | None = None,
    reason: str | None = None,
) -> AttemptResult:
    """Record a provider's *response* for an attempt, forward only (``RESULT_TRANSITIONS``):
    when a callback already moved the attempt on (it beat the response, case 15), the older
    news is dropped and the attempt keeps its state."""
    return await db.atomic(_advance, idempotency_key, state, provider_ref, reason)


async def _advance(
    tx: Transaction,
    idempotency_key: str,
    state: str,
    provider_ref: str | None,
    reason: str | None,
) -> AttemptResult:
    found = await tx.fetchrow(
        "SELECT order_id FROM payment_attempts WHERE idempotency_key = $1", idempotency_key
    )
    if found is None:
        raise QueryError(f"no payment attempt with key {idempotency_key!r}")
    await tx.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", found["order_id"])
    row = await tx.fetchrow(
        "SELECT id, state FROM payment_attempts WHERE idempotency_key = $1 FOR UPDATE",
        idempotency_key,
    )
    if row is None:
        raise QueryError(f"payment attempt {idempotency_key!r} vanished")
    if not result_allowed(row["state"], state):
        return AttemptResult(row["id"], row["state"], changed=False)
    await tx.execute(
        "UPDATE payment_attempts SET state = $2, provider_ref = coalesce($3, provider_ref),"
        " reason = coalesce($4, reason), resolved_at = CASE WHEN $2 IN ('approved',"
        " 'declined', 'failed', 'reversed') THEN now() ELSE resolved_at END WHERE id = $1",
        row["id"],
        state,
        provider_ref,
        reason,
    )
    return AttemptResult(row["id"], state, changed=True)
