"""Alipay's habits against the books: what its notifies say without saying it.

Three things an Alipay notify means that its fields do not state plainly, each read against
the order's attempts (the pure rules are in ``attempts``; applying the result is ``payments``):

* **Running refund totals.** A refund notify's ``refund_fee`` is the trade's refunded total, so
  it is judged against the payment's other refunds on our books (``other_refunds``, then
  ``attempts.check_cumulative``).
* **The rest unfrozen by itself.** A capture with ``auth_confirm_mode=COMPLETE`` makes Alipay
  unfreeze what is left of the hold, with no request number of ours: the notify confirms what
  the capture implied (``implied_release``, ``attempts.IMPLIED_RELEASE``).
* **The capture's trade under the hold's key.** ``alipay.trade.pay`` with the auth_no reuses
  the hold key as out_trade_no, so the trade_status_sync of a partial capture names the hold
  and states the captured amount: it is about the order's capture of that amount
  (``trade_capture``, ``attempts.IMPLIED_CAPTURE``).

Every function here runs inside the callback's transaction, after the order row is locked:
the order lock serializes every writer of the order's attempts and money, so the attempts
locked here (always after the order and the attempt the event named) cannot deadlock.
"""

from __future__ import annotations

from channels.model import CallbackEvent, CallbackRejected

from .attempts import (
    CUMULATIVE_REFUND_OPERATIONS,
    Implied,
    OrderMoney,
    classify,
    implied_step,
    ref_conflicts,
)
from .bridge import Row, Transaction

__all__ = ["implied_release", "other_refunds", "trade_capture"]

_IN_FLIGHT = "('requested', 'pending', 'unknown')"


async def other_refunds(tx: Transaction, event: CallbackEvent, attempt: Row) -> tuple[int, int]:
    """The payment's other refunds, approved and in flight, in fen: the order's refunds through
    the same channel, of the same provider trade where the attempt knows it (the order is
    locked, so none of them moves while we count)."""
    row = await tx.fetchrow(
        "SELECT coalesce(sum(amount_fen) FILTER (WHERE state = 'approved'), 0)::bigint AS done,"
        f" coalesce(sum(amount_fen) FILTER (WHERE state IN {_IN_FLIGHT}),"
        " 0)::bigint AS open FROM payment_attempts WHERE order_id = $1 AND channel = $2"
        " AND operation = ANY($3::text[]) AND id <> $4"
        " AND (provider_ref IS NULL OR $5::text IS NULL OR provider_ref = $5)",
        attempt["order_id"],
        attempt["channel"],
        sorted(CUMULATIVE_REFUND_OPERATIONS),
        attempt["id"],
        event.provider_ref,
    )
    if row is None:  # an aggregate always answers one row
        return 0, 0
    return int(row["done"]), int(row["open"])


async def trade_capture(
    tx: Transaction, event: CallbackEvent, hold: Row, operation: str
) -> str | None:
    """The id of the order's attempt of ``operation`` (a capture) that the trade the event is
    about made, locked; None when the order has none for the event's amount, and the event
    stays the hold's (and its amount a mismatch).

    Only a hold of the event's own provider and channel has such a trade (any other is
    rejected as the hold's, as before); a candidate goes through the same channel and is for
    exactly the stated amount. The one that already knows the event's trade reference comes
    first, then one still in flight, then the latest. One that knows another trade reference
    is another trade: a person must look (the hold is captured once, so a second trade of that
    amount is wrong).
    """
    if (hold["provider"], hold["channel"]) != (event.provider.value, event.channel):
        return None
    row = await tx.fetchrow(
        "SELECT id, provider_ref FROM payment_attempts WHERE order_id = $1 AND operation = $2"
        " AND provider = $3 AND channel = $4 AND amount_fen = $5"
        " ORDER BY coalesce(provider_ref = $6::text, false) DESC,"
        f" (state IN {_IN_FLIGHT}) DESC, attempt_no DESC LIMIT 1 FOR UPDATE",
        hold["order_id"],
        operation,
        hold["provider"],
        hold["channel"],
        event.amount_fen,
        event.provider_ref,
    )
    if row is None:
        return None
    if ref_conflicts(row["provider_ref"], event.provider_ref):
        raise CallbackRejected(
            "provider_ref_mismatch",
            f"a {event.kind.value} event for trade {event.provider_ref!r} of "
            f"{event.amount_fen} fen naming hold {hold['id']}; {operation} {row['id']} is "
            f"trade {row['provider_ref']!r}",
            alert=True,
        )
    identifier: str = row["id"]
    return identifier


def implied_release(event: CallbackEvent, capture: Row, money: OrderMoney) -> bool:
    """Judge the rest of the hold, unfrozen by Alipay after ``capture`` completed it, when the
    order journaled no release: whether it moves the order's released money now (it is exactly
    what the books still hold, held - captured) or is old news (the books show it released).
    Raises for what must not be acknowledged: a capture still in flight or the capture's money
    not on the order yet (the retry finds them), an unfreeze nothing of ours implies, another
    amount."""
    state = capture["state"]
    outcome = classify(event)
    verdict = implied_step(state, outcome)
    if verdict is Implied.WAIT:
        raise CallbackRejected(
            "out_of_order", f"capture {capture['id']} is {state}: the rest waits for it"
        )
    if verdict is Implied.UNKNOWN:
        raise CallbackRejected(
            "unknown_attempt",
            f"a {event.kind.value} ({outcome.value}) event for order {capture['order_id']}, "
            f"which has no release attempt and a {state} capture",
            alert=True,
        )
    if money.captured_fen == 0:
        raise CallbackRejected(
            "out_of_order", f"capture {capture['id']}'s money is not on order yet"
        )
    rest = money.held_fen - money.captured_fen
    if event.amount_fen != rest:
        raise CallbackRejected(
            "amount_mismatch",
            f"event releases {event.amount_fen} fen, order {capture['order_id']} holds "
            f"{money.held_fen} fen and captured {money.captured_fen} fen",
            alert=True,
        )
    return money.released_fen < rest
