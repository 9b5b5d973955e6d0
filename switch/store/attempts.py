"""The forward-only state machine of ``payment_attempts`` and what a callback does to an order's
money: pure data and pure functions, no I/O (the SQL that applies them is ``payments``).

Why a table and not a chain of ``if``\\s: providers deliver callbacks late, twice, out of order
and replayed (callback-cases 5, 14, 17, 23), so every (state, event) pair needs a deliberate
answer, and a table shows at a glance that none was forgotten. Three rules shape it:

* **Forward only.** An attempt that reached a final state never goes back: REFUND.ABNORMAL
  after the refund succeeded, WAIT_BUYER_PAY after TRADE_SUCCESS change nothing (and are
  acknowledged, or the provider would retry them for a day).
* **The provider's own "closed" is final.** A provider never goes from closed back to paid,
  so a success event for an attempt the provider itself reported closed (``reversed``) is an
  old event replayed: nothing moved, nothing to refund (case 23).
* **Late success is money.** A success for a collecting attempt that *we* gave up on
  (``declined``/``failed``), or whose order is finished or already paid through another
  attempt, means the customer paid for nothing: the attempt records the truth (``approved``)
  and a refund attempt is journaled for whoever drives refunds (case 16, invariant 4).

Four provider habits get tables of their own: refund figures that are the payment's running
total (Alipay's ``refund_fee``, ``check_cumulative``), the rest of a pre-authorization that the
provider unfreezes by itself after a completing capture (``IMPLIED_RELEASE``), the trade a
capture makes under the hold's own key (``IMPLIED_CAPTURE``), and events whose provider
reference is the hold's own identity (``REF_BOUND_KINDS``, case 24). The SQL that applies the
Alipay-specific ones is ``implied``.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from channels.model import CallbackEvent, CallbackKind, Provider

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "CUMULATIVE_REFUND_OPERATIONS",
    "FINAL_STATES",
    "IMPLIED_BY",
    "IMPLIED_CAPTURE",
    "IMPLIED_RELEASE",
    "KIND_OPERATIONS",
    "REF_BOUND_KINDS",
    "RESULT_TRANSITIONS",
    "AmountCheck",
    "Effect",
    "EventOutcome",
    "Family",
    "Implied",
    "MoneyConflict",
    "OrderMoney",
    "Step",
    "apply_money",
    "check_cumulative",
    "classify",
    "decide",
    "family_of",
    "implied_capture",
    "implied_step",
    "late_refund_key",
    "ref_conflicts",
    "result_allowed",
    "stated_amount",
]


class EventOutcome(enum.Enum):
    """What a callback says happened, on one scale for every provider."""

    SUCCEEDED = "succeeded"  # money moved as the event's kind describes
    PENDING = "pending"  # created, waiting for the customer or the provider
    CLOSED = "closed"  # the provider closed it (cancelled, timed out, fully reversed)
    FAILED = "failed"  # the provider refused it (payment error, refund abnormal)


# The providers' status words that mean "not yet" or "closed"; any other word on an event that
# does not say it succeeded is a failure. WeChat trade_state / refund status, Alipay trade_status
# and fund-auth status, UnionPay respCode (03/04/05: state not yet known).
PENDING_STATUSES = frozenset(
    {"NOTPAY", "USERPAYING", "WAIT_BUYER_PAY", "INIT", "PROCESSING", "03", "04", "05"}
)
CLOSED_STATUSES = frozenset({"CLOSED", "REVOKED", "TRADE_CLOSED"})


def classify(event: CallbackEvent) -> EventOutcome:
    if event.succeeded:
        return EventOutcome.SUCCEEDED
    status = event.status.strip().upper()
    if status in PENDING_STATUSES:
        return EventOutcome.PENDING
    if status in CLOSED_STATUSES:
        return EventOutcome.CLOSED
    return EventOutcome.FAILED


class Family(enum.Enum):
    """Collecting attempts take the customer's money; settling attempts move money we hold."""

    COLLECT = "collect"
    SETTLE = "settle"


_FAMILIES: Mapping[str, Family] = {
    "hold": Family.COLLECT,
    "capture": Family.SETTLE,
    "release": Family.SETTLE,
    "refund": Family.SETTLE,
}


def family_of(operation: str) -> Family | None:
    return _FAMILIES.get(operation)


class Effect(enum.Enum):
    APPLY = "apply"  # move the attempt (and, on success, the order's money)
    IGNORE = "ignore"  # an old or repeated event: acknowledge, change nothing
    LATE_SUCCESS = "late_success"  # approve, then refund it automatically and alert
    CORRECTION = "correction"  # a success after we recorded a failure: apply and alert


@dataclass(frozen=True, slots=True)
class Step:
    state: str | None  # the attempt's new state; None: unchanged
    effect: Effect


_IGNORE = Step(None, Effect.IGNORE)
_S, _P, _C, _F = (
    EventOutcome.SUCCEEDED,
    EventOutcome.PENDING,
    EventOutcome.CLOSED,
    EventOutcome.FAILED,
)

FINAL_STATES = frozenset({"approved", "declined", "failed", "reversed"})


_Cell = TypeVar("_Cell")


def _rows(
    table: Mapping[str, tuple[_Cell, _Cell, _Cell, _Cell]],
) -> dict[tuple[str, EventOutcome], _Cell]:
    return {
        (state, outcome): step
        for state, steps in table.items()
        for outcome, step in zip((_S, _P, _C, _F), steps, strict=True)
    }


def _apply(state: str) -> Step:
    return Step(state, Effect.APPLY)


_LATE = Step("approved", Effect.LATE_SUCCESS)
_FIX = Step("approved", Effect.CORRECTION)

# fmt: off
_COLLECT_OPEN = _rows({
    #  state        SUCCEEDED            PENDING            CLOSED               FAILED
    "requested": (_apply("approved"), _apply("pending"), _apply("reversed"), _apply("declined")),
    "pending":   (_apply("approved"), _IGNORE,           _apply("reversed"), _apply("declined")),
    "unknown":   (_apply("approved"), _apply("pending"), _apply("reversed"), _apply("declined")),
    "approved":  (_IGNORE,            _IGNORE,           _IGNORE,            _IGNORE),
    "declined":  (_LATE,              _IGNORE,           _IGNORE,            _IGNORE),
    "failed":    (_LATE,              _IGNORE,           _IGNORE,            _IGNORE),
    "reversed":  (_IGNORE,            _IGNORE,           _IGNORE,            _IGNORE),
})
# The same attempt when its order no longer wants the money (finished, or paid through another
# attempt): whatever succeeds now is a late success.
_COLLECT_DONE = {
    **_COLLECT_OPEN,
    ("requested", _S): _LATE,
    ("pending", _S): _LATE,
    ("unknown", _S): _LATE,
}
_SETTLE = _rows({
    "requested": (_apply("approved"), _apply("pending"), _apply("failed"),   _apply("failed")),
    "pending":   (_apply("approved"), _IGNORE,           _apply("failed"),   _apply("failed")),
    "unknown":   (_apply("approved"), _apply("pending"), _apply("failed"),   _apply("failed")),
    "approved":  (_IGNORE,            _IGNORE,           _IGNORE,            _IGNORE),
    "declined":  (_FIX,               _IGNORE,           _IGNORE,            _IGNORE),
    "failed":    (_FIX,               _IGNORE,           _IGNORE,            _IGNORE),
    "reversed":  (_IGNORE,            _IGNORE,           _IGNORE,            _IGNORE),
})
# fmt: on

ATTEMPT_TRANSITIONS: Mapping[tuple[Family, bool], Mapping[tuple[str, EventOutcome], Step]] = {
    (Family.COLLECT, True): _COLLECT_OPEN,
    (Family.COLLECT, False): _COLLECT_DONE,
    (Family.SETTLE, True): _SETTLE,
    (Family.SETTLE, False): _SETTLE,
}


def decide(family: Family, state: str, outcome: EventOutcome, *, order_wants_money: bool) -> Step:
    """The step for an attempt in ``state`` receiving an event with ``outcome``. An unknown
    state (a newer schema) is left alone."""
    return ATTEMPT_TRANSITIONS[family, order_wants_money].get((state, outcome), _IGNORE)


# What the order layer may write when a provider's response (not a callback) resolves an attempt:
# the same forward-only order, so a response persisted after the callback already moved the
# attempt (case 15) cannot move it back.
RESULT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "requested": frozenset({"pending", "unknown", "approved", "declined", "failed", "reversed"}),
    "pending": frozenset({"unknown", "approved", "declined", "failed", "reversed"}),
    "unknown": frozenset({"pending", "approved", "declined", "failed", "reversed"}),
    "approved": frozenset({"reversed"}),
    "declined": frozenset(),
    "failed": frozenset(),
    "reversed": frozenset(),
}


def result_allowed(current: str, new: str) -> bool:
    return new in RESULT_TRANSITIONS.get(current, frozenset())


# Which attempts an event of each kind may move. A release or capture event that names only the
# hold (its out_trade_no) is applied to the order's attempt of that operation instead.
KIND_OPERATIONS: Mapping[CallbackKind, frozenset[str]] = {
    CallbackKind.PAYMENT: frozenset({"hold", "capture"}),
    CallbackKind.HOLD: frozenset({"hold"}),
    CallbackKind.CAPTURE: frozenset({"capture"}),
    CallbackKind.RELEASE: frozenset({"release"}),
    CallbackKind.REFUND: frozenset({"refund", "release"}),
}
REDIRECTED_KINDS: Mapping[CallbackKind, str] = {
    CallbackKind.CAPTURE: "capture",
    CallbackKind.RELEASE: "release",
}


def stated_amount(event: CallbackEvent) -> int:
    """The amount to compare with the attempt's: a refund event states the payment's total
    and the refund; the refund attempt is for the latter. A cumulative refund figure is not
    the attempt's alone: see ``check_cumulative``."""
    if event.kind is CallbackKind.REFUND and event.refund_fen is not None:
        return event.refund_fen
    return event.amount_fen


class AmountCheck(enum.Enum):
    MATCH = "match"  # the event's amount is the attempt's (or the books' with it)
    OLD = "old"  # a running total our books have passed already: acknowledge, change nothing
    AHEAD = "ahead"  # a running total counting refunds still in flight: refuse until they land
    MISMATCH = "mismatch"  # no reading of our books explains it: reject and alert


# The operations a provider's running refund total counts: Alipay's refund_fee sums the
# trade.refund refunds of the trade; a release there is an unfreeze, never in it.
CUMULATIVE_REFUND_OPERATIONS = frozenset({"refund"})


def check_cumulative(
    cumulative_fen: int, amount_fen: int, *, approved_others: int, in_flight_others: int
) -> AmountCheck:
    """Judge a refund event whose figure is the payment's refunded total *after* the refund
    it names (of ``amount_fen``), against our books: the payment's other refunds that are
    approved and that are still in flight.

    Our books with this refund in them must show the same total. A lower total (but one that
    at least holds this refund) was sent before refunds we have recorded since: an old notify,
    and forward only means it changes nothing; the refund it names, if still in flight, is
    left to its own response or query. A higher total that the in-flight refunds can explain
    was sent after refunds whose results we have not recorded yet: refused, so that the
    provider's retry finds the books caught up. Anything else is not ours to explain.
    """
    expected = approved_others + amount_fen
    if cumulative_fen == expected:
        return AmountCheck.MATCH
    if amount_fen <= cumulative_fen < expected:
        return AmountCheck.OLD
    if expected < cumulative_fen <= expected + in_flight_others:
        return AmountCheck.AHEAD
    return AmountCheck.MISMATCH


# Kinds whose provider reference is the hold's own identity (Alipay's auth_no on freeze and
# unfreeze notifies), so an event naming our hold with another one is about a hold that is not
# ours (case 24). Payment events carry the trade's own reference (WeChat transaction_id vs the
# prepay_id, Alipay trade_no vs auth_no) and are not bound.
REF_BOUND_KINDS = frozenset({CallbackKind.HOLD, CallbackKind.RELEASE})


def ref_conflicts(recorded: str | None, stated: str | None) -> bool:
    """An attempt whose provider reference is not known yet (its response not persisted,
    case 15) takes the event's; one that has it only takes events that state the same."""
    return bool(recorded) and bool(stated) and recorded != stated


class Implied(enum.Enum):
    """What to do with an event for an operation we never journaled, but that an attempt of
    ours implied (``IMPLIED_BY``)."""

    RECORD = "record"  # the provider confirms what the attempt implied: money on the order
    WAIT = "wait"  # the implying attempt is in flight: refuse for now, the provider retries
    UNKNOWN = "unknown"  # nothing of ours implies it: reject and alert


# A release event naming only the hold, for an order without a release attempt: Alipay
# unfreezes the rest of a pre-authorization by itself when a capture completes it
# (auth_confirm_mode COMPLETE), with no request number of ours.
IMPLIED_BY: Mapping[CallbackKind, str] = {CallbackKind.RELEASE: "capture"}

_REC, _WAIT, _UNK = Implied.RECORD, Implied.WAIT, Implied.UNKNOWN
# fmt: off
IMPLIED_RELEASE: Mapping[tuple[str, EventOutcome], Implied] = _rows({
    #  capture      SUCCEEDED  PENDING  CLOSED  FAILED
    "requested": (_WAIT,     _UNK,    _UNK,   _UNK),
    "pending":   (_WAIT,     _UNK,    _UNK,   _UNK),
    "unknown":   (_WAIT,     _UNK,    _UNK,   _UNK),
    "approved":  (_REC,      _UNK,    _UNK,   _UNK),
    "declined":  (_UNK,      _UNK,    _UNK,   _UNK),
    "failed":    (_UNK,      _UNK,    _UNK,   _UNK),
    "reversed":  (_UNK,      _UNK,    _UNK,   _UNK),
})
# fmt: on


def implied_step(state: str, outcome: EventOutcome) -> Implied:
    """Only a completed capture implies that the rest was unfrozen, and only a successful
    unfreeze is what it implied; anything else is as unknown as it was."""
    return IMPLIED_RELEASE.get((state, outcome), Implied.UNKNOWN)


# A success event of these providers and kinds that names a hold but states another amount than
# the hold's is about the order's attempt of the given operation for that amount, when there is
# one. Alipay captures a pre-authorization with trade.pay (auth_no, auth_confirm_mode COMPLETE)
# under the hold's own key as out_trade_no, so the trade_status_sync of a partial capture names
# the hold and states what was captured. A full capture states the hold's amount and stays the
# hold's (old news once the hold is approved). WeChat is not here: its payment *is* the prepaid
# ceiling and its capture calls no one, so a payment event with another amount is simply wrong;
# nor is UnionPay, whose completion has an orderId of its own.
IMPLIED_CAPTURE: Mapping[tuple[Provider, CallbackKind], str] = {
    (Provider.ALIPAY, CallbackKind.PAYMENT): "capture",
}


def implied_capture(event: CallbackEvent, operation: str, amount_fen: int) -> str | None:
    """The operation of the attempt an event that landed on an attempt of ``operation`` for
    ``amount_fen`` is about instead (``IMPLIED_CAPTURE``), or None when it is that attempt's.
    Only a success moves a capture: anything else with a foreign amount stays a mismatch."""
    target = IMPLIED_CAPTURE.get((event.provider, event.kind))
    if target is None or operation != "hold" or classify(event) is not EventOutcome.SUCCEEDED:
        return None
    return None if stated_amount(event) == amount_fen else target


class MoneyConflict(ValueError):
    """Applying the event now would break the order's money invariants (a refund before the
    payment it refunds is recorded): refuse, so that the provider delivers it again later."""


@dataclass(frozen=True, slots=True)
class OrderMoney:
    held_fen: int
    captured_fen: int
    released_fen: int
    refunded_fen: int

    def check(self) -> None:
        """The invariants of ``orders`` (its CHECK constraints), before the database sees them."""
        if min(self.held_fen, self.captured_fen, self.released_fen, self.refunded_fen) < 0:
            raise MoneyConflict(f"negative amount in {self}")
        if self.refunded_fen > self.captured_fen:
            raise MoneyConflict(f"refunded more than captured: {self}")
        if self.captured_fen + self.released_fen > max(self.held_fen, self.captured_fen):
            raise MoneyConflict(f"captured and released more than held: {self}")


_MONEY_COLUMN: Mapping[str, str] = {
    "hold": "held_fen",
    "capture": "captured_fen",
    "release": "released_fen",
}


def apply_money(money: OrderMoney, operation: str, amount_fen: int) -> OrderMoney:
    """The order's money after an attempt of ``operation`` for ``amount_fen`` succeeded.

    A refund gives back captured money first; what it returns beyond that was never captured
    (the refund of a late success, of a prepaid ceiling's remainder) and counts as released.
    """
    if operation == "refund":
        refunded = min(amount_fen, max(0, money.captured_fen - money.refunded_fen))
        new = replace(
            money,
            refunded_fen=money.refunded_fen + refunded,
            released_fen=money.released_fen + amount_fen - refunded,
        )
    elif operation in _MONEY_COLUMN:
        column = _MONEY_COLUMN[operation]
        new = replace(money, **{column: getattr(money, column) + amount_fen})
    else:
        raise MoneyConflict(f"operation {operation!r} moves no money")
    new.check()
    return new


_PLAIN_KEY = re.compile(r"[A-Za-z0-9]{6,38}")


def late_refund_key(key: str) -> str:
    """The refund key of a late success, derived from the payment's key so that a second late
    success for the same payment can never make a second refund. Every provider must accept it:
    UnionPay orderIds are 8-40 letters and digits, so no separator, and a key that would not fit
    is replaced by a digest of it."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{key}LR"
    return "LR" + hashlib.sha256(key.encode()).hexdigest()[:30].upper()
