"""An order as its journal tells it: states, the facts each step records, and the fold.

The order's journal stream (``order:<id>``) is the truth about what the switch *did*: every
step that reaches outside the process (a provider call, a pump command) is journaled before
it is sent (``*_requested``) and its answer after (``*_result`` and friends). The fold below
turns the events back into an :class:`Order`; the actor then asks "what is the next step?"
of that value, so a restarted actor and a running one take the same decisions. Everything
here is pure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

__all__ = [
    "TERMINAL",
    "HoldAttempt",
    "Order",
    "OrderData",
    "OrderState",
    "Priced",
    "Sale",
    "SettleStep",
    "fold",
]


class OrderState(enum.StrEnum):
    CREATED = "created"
    LOCKED = "locked"  # post-pay: the pump's sale is locked for this order
    PRICED = "priced"
    HOLDING = "holding"  # a hold is out: waiting for the provider or the customer
    HELD = "held"
    AUTHORIZING = "authorizing"
    AUTHORIZED = "authorized"
    FUELLING = "fuelling"
    SALE_COMPLETED = "sale_completed"
    CAPTURING = "capturing"
    RELEASING = "releasing"
    COLLECTING = "collecting"  # post-pay: clearing the paid sale in the pump
    COMPLETED = "completed"
    VOIDED = "voided"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL: Final = frozenset(
    {OrderState.COMPLETED, OrderState.VOIDED, OrderState.CANCELLED, OrderState.FAILED}
)


@dataclass(frozen=True, slots=True)
class OrderData:
    """What the customer asked for; journaled once, in ``created``."""

    id: str
    customer_id: str
    station_id: str
    pump_no: int
    flow: str  # "prepay" | "postpay"
    method: str
    payer_id: str
    preset_kind: str | None = None
    preset_value: int | None = None
    nozzle_no: int | None = None
    coupon: str | None = None
    pump_sale_seq: int | None = None  # post-pay: the buffered sale to pay for

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrderData:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Priced:
    price_set_id: int | None
    unit_price: int  # milli-fen per litre (the highest of the allowed nozzles for a preset)
    grade: str | None
    hold_fen: int  # what to hold: the preset's amount, or the post-pay sale's net amount
    gross_fen: int = 0  # post-pay: known at pricing time
    discount_fen: int = 0


@dataclass(frozen=True, slots=True)
class HoldAttempt:
    attempt_no: int
    key: str
    channel: str
    provider: str
    amount_fen: int
    sent_at: datetime
    outcome: str | None = None  # approved | pending | unknown | declined | failed | closed
    provider_ref: str | None = None
    reason: str | None = None
    client_data: Mapping[str, Any] = field(default_factory=dict)
    close_requested: bool = False

    @property
    def open(self) -> bool:
        """Not confirmed either way: the provider may still take the customer's money."""
        return self.outcome in (None, "pending", "unknown")


@dataclass(frozen=True, slots=True)
class Sale:
    sale_id: str
    volume_ml: int = 0
    gross_fen: int = 0
    nozzle_no: int | None = None
    unit_price: int | None = None
    reconstructed: bool = False
    pump_sale_seq: int | None = None


@dataclass(frozen=True, slots=True)
class SettleStep:
    """A capture, a release or a refund: journaled, then sent, then answered."""

    key: str
    attempt_no: int
    amount_fen: int
    sent_at: datetime
    done: bool = False
    outcome: str | None = None
    reason: str = ""
    provider_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    data: OrderData
    state: OrderState = OrderState.CREATED
    seq: int = 0  # the journal stream's head
    next_attempt_no: int = 1
    priced: Priced | None = None
    holds: tuple[HoldAttempt, ...] = ()
    excluded: frozenset[str] = frozenset()  # channels confirmed failed for this order
    routing: Mapping[str, Any] | None = None
    sale_id: str | None = None
    token: int | None = None
    sale: Sale | None = None
    capture: SettleStep | None = None
    release: SettleStep | None = None
    refunds: tuple[SettleStep, ...] = ()
    collected: bool = False
    cancel_requested: bool = False
    ending: OrderState | None = None  # the terminal state the release leads to
    failure: str | None = None

    @property
    def hold(self) -> HoldAttempt | None:
        return self.holds[-1] if self.holds else None

    @property
    def approved_hold(self) -> HoldAttempt | None:
        for attempt in self.holds:
            if attempt.outcome == "approved":
                return attempt
        return None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def net_fen(self) -> int:
        if self.sale is None or self.priced is None:
            return 0
        return max(0, self.sale.gross_fen - self.priced.discount_fen)

    @property
    def captured_fen(self) -> int:
        return self.capture.amount_fen if self.capture and self.capture.done else 0

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds if r.outcome == "approved")


# -- the fold ----------------------------------------------------------------------------

Apply = Callable[[Order, Mapping[str, Any]], Order]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _locked(o: Order, p: Mapping[str, Any]) -> Order:
    sale = Sale(
        p["sale_id"],
        p["volume_ml"],
        p["amount_fen"],
        p.get("nozzle_no"),
        p.get("unit_price"),
        pump_sale_seq=p["pump_sale_seq"],
    )
    return replace(o, state=OrderState.LOCKED, sale=sale, sale_id=p["sale_id"])


def _priced(o: Order, p: Mapping[str, Any]) -> Order:
    priced = Priced(
        p.get("price_set_id"),
        p["unit_price"],
        p.get("grade"),
        p["hold_fen"],
        p.get("gross_fen", 0),
        p.get("discount_fen", 0),
    )
    return replace(o, state=OrderState.PRICED, priced=priced)


def _hold_requested(o: Order, p: Mapping[str, Any]) -> Order:
    attempt = HoldAttempt(
        p["attempt_no"], p["key"], p["channel"], p["provider"], p["amount_fen"], _ts(p["sent_at"])
    )
    return replace(
        o,
        state=OrderState.HOLDING,
        holds=(*o.holds, attempt),
        routing=p.get("routing", o.routing),
        next_attempt_no=p["attempt_no"] + 1,
    )


def _hold_result(o: Order, p: Mapping[str, Any]) -> Order:
    holds = list(o.holds)
    for i, attempt in enumerate(holds):
        if attempt.key == p["key"]:
            holds[i] = replace(
                attempt,
                outcome=p["outcome"],
                provider_ref=p.get("provider_ref") or attempt.provider_ref,
                reason=p.get("reason"),
                client_data=p.get("client_data") or attempt.client_data,
            )
            break
    new = replace(o, holds=tuple(holds))
    outcome = p["outcome"]
    if outcome == "approved":
        return replace(new, state=OrderState.HELD)
    if outcome in ("declined", "failed", "closed"):
        excluded = o.excluded | {p["channel"]} if p.get("channel") else o.excluded
        # A hold that failed sends the order back to routing (failover), unless it ends.
        return replace(new, state=OrderState.PRICED, excluded=excluded)
    return new


def _close_requested(o: Order, p: Mapping[str, Any]) -> Order:
    holds = tuple(replace(a, close_requested=True) if a.key == p["key"] else a for a in o.holds)
    return replace(o, holds=holds)


def _settle(kind: str) -> Apply:
    def requested(o: Order, p: Mapping[str, Any]) -> Order:
        step = SettleStep(p["key"], p["attempt_no"], p["amount_fen"], _ts(p["sent_at"]))
        if kind == "capture":
            return replace(
                o, state=OrderState.CAPTURING, capture=step, next_attempt_no=p["attempt_no"] + 1
            )
        ending = OrderState(p["ending"]) if p.get("ending") else o.ending
        return replace(
            o,
            state=OrderState.RELEASING,
            release=step,
            ending=ending,
            next_attempt_no=p["attempt_no"] + 1,
        )

    return requested


def _captured(o: Order, p: Mapping[str, Any]) -> Order:
    assert o.capture is not None
    capture = replace(o.capture, done=True, outcome="approved", provider_ref=p.get("provider_ref"))
    if "amount_fen" in p:
        capture = replace(capture, amount_fen=p["amount_fen"])
    return replace(o, capture=capture)


def _released(o: Order, p: Mapping[str, Any]) -> Order:
    assert o.release is not None
    return replace(o, release=replace(o.release, done=True, outcome="approved"))


def _refund_requested(o: Order, p: Mapping[str, Any]) -> Order:
    step = SettleStep(
        p["key"], p["attempt_no"], p["amount_fen"], _ts(p["sent_at"]), reason=p.get("reason", "")
    )
    return replace(o, refunds=(*o.refunds, step), next_attempt_no=p["attempt_no"] + 1)


def _refund_result(o: Order, p: Mapping[str, Any]) -> Order:
    refunds = tuple(
        replace(r, outcome=p["outcome"], done=p["outcome"] in ("approved", "failed"))
        if r.key == p["key"]
        else r
        for r in o.refunds
    )
    return replace(o, refunds=refunds)


def _sale_completed(o: Order, p: Mapping[str, Any]) -> Order:
    sale = Sale(
        p["sale_id"],
        p.get("volume_ml", 0),
        p.get("amount_fen", 0),
        p.get("nozzle_no"),
        p.get("unit_price"),
        p.get("reconstructed", False),
        p.get("pump_sale_seq"),
    )
    priced = o.priced
    if priced is not None and "discount_fen" in p:
        priced = replace(priced, discount_fen=p["discount_fen"], gross_fen=sale.gross_fen)
    return replace(o, state=OrderState.SALE_COMPLETED, sale=sale, priced=priced)


def _state(state: OrderState, **changes: Any) -> Apply:
    def apply(o: Order, p: Mapping[str, Any]) -> Order:
        extra: dict[str, Any] = {
            k: (p.get(v) if isinstance(v, str) else v) for k, v in changes.items()
        }
        return replace(o, state=state, **extra)

    return apply


def _ended(o: Order, p: Mapping[str, Any]) -> Order:
    return replace(o, state=OrderState(p["state"]), failure=p.get("failure") or o.failure)


def _cancel_requested(o: Order, p: Mapping[str, Any]) -> Order:
    return replace(o, cancel_requested=True)


def _failure(o: Order, p: Mapping[str, Any]) -> Order:
    return replace(o, failure=p.get("failure"))


def _collected(o: Order, p: Mapping[str, Any]) -> Order:
    return replace(o, collected=True)


_FOLD: Final[Mapping[str, Apply]] = {
    "locked": _locked,
    "priced": _priced,
    "hold_requested": _hold_requested,
    "hold_result": _hold_result,
    "hold_close_requested": _close_requested,
    "auth_requested": _state(OrderState.AUTHORIZING, sale_id="sale_id"),
    "authorized": _state(OrderState.AUTHORIZED, token="token"),
    "fuelling": _state(OrderState.FUELLING),
    "sale_completed": _sale_completed,
    "capture_requested": _settle("capture"),
    "captured": _captured,
    "release_requested": _settle("release"),
    "released": _released,
    "collect_requested": _state(OrderState.COLLECTING),
    "collected": _collected,
    "refund_requested": _refund_requested,
    "refund_result": _refund_result,
    "cancel_requested": _cancel_requested,
    "failure": _failure,
    "ended": _ended,
}


def fold(events: list[tuple[int, str, Mapping[str, Any]]]) -> Order | None:
    """The order after ``(seq, type, payload)`` events, or None before ``created``. Types
    this version does not know are skipped (a newer switch wrote them), never fatal."""
    order: Order | None = None
    for seq, kind, payload in events:
        if kind == "created":
            order = Order(OrderData.from_json(payload["order"]), seq=seq)
            continue
        if order is None:
            continue
        apply = _FOLD.get(kind)
        if apply is not None:
            order = apply(order, payload)
        order = replace(order, seq=seq)
    return order


def apply_event(order: Order, seq: int, kind: str, payload: Mapping[str, Any]) -> Order:
    apply = _FOLD.get(kind)
    new = apply(order, payload) if apply is not None else order
    return replace(new, seq=seq)
