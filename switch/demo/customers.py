"""The demo's customers: who comes when, to which pump, paying how, and what each one does.

:func:`plan_customers` is pure and seeded, so ``--seed`` replays the same forecourt. A customer
is played through the public API and the pump simulator's control API only: a prepay driver
creates an order, waits until the pump is authorized, lifts the nozzle and hangs up after some
litres (or lets the preset stop the pump); a post-pay driver fuels at a stand-alone pump first
and then pays the sale from the pump's payable list. A few lift and hang up without fuel (a
zero sale) or cancel before fuelling. One customer at a time per pump, as on a forecourt.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from .client import SwitchClient
from .procs import DemoError
from .sims import PumpControl
from .world import PROMOTION

__all__ = ["CustomerPlan", "Kind", "Outcome", "Progress", "plan_customers", "play"]

METHODS: Final = ("wechatpay", "wechatpay", "alipay", "unionpay")  # WeChat is half the market
TO_AUTHORIZED_S: Final = 90.0  # pay (failover included) and authorize
TO_TERMINAL_S: Final = 150.0  # fuel, capture, release


class Kind(enum.StrEnum):
    PREPAY_LITRES = "prepay"  # hangs up after some litres
    PREPAY_PRESET = "prepay-preset"  # the preset amount stops the pump
    ZERO_SALE = "zero-sale"  # lifts, hangs up without fuel
    CANCEL = "cancel"  # cancels before lifting
    POSTPAY = "postpay"  # fuels at a stand-alone pump, then pays


@dataclass(frozen=True, slots=True)
class CustomerPlan:
    index: int
    kind: Kind
    station_id: str
    pump_no: int
    nozzle_no: int
    method: str
    arrive_s: float
    preset_fen: int
    litres_ml: int
    coupon: str | None

    @property
    def payer_id(self) -> str:
        if self.method == "wechatpay":
            return f"oDemo{self.index:023d}"
        if self.method == "alipay":
            return f"2088{self.index:012d}"
        return ""


def plan_customers(
    count: int, stations: Sequence[str], pumps: int, seed: int, spread_s: float
) -> list[CustomerPlan]:
    """``count`` customers over ``spread_s`` seconds; the last pump of each station is the
    stand-alone (post-pay) one, the others take prepay orders."""
    rng = random.Random(seed)
    plans = []
    for i in range(count):
        roll = rng.random()
        kind = (
            Kind.POSTPAY
            if roll < 0.25
            else Kind.ZERO_SALE
            if roll < 0.32
            else Kind.CANCEL
            if roll < 0.39
            else Kind.PREPAY_PRESET
            if roll < 0.55
            else Kind.PREPAY_LITRES
        )
        pump = pumps if kind is Kind.POSTPAY else rng.randint(1, max(1, pumps - 1))
        # A preset that stops the pump is small (4-6 L), so the demo does not wait a minute
        # for a full tank; the others hang up first, well below their preset.
        presets = (3000, 4000, 5000) if kind is Kind.PREPAY_PRESET else (10000, 20000, 30000)
        preset = rng.choice(presets)
        plans.append(
            CustomerPlan(
                index=i,
                kind=kind,
                station_id=rng.choice(list(stations)),
                pump_no=pump,
                nozzle_no=rng.randint(1, 2),
                method=rng.choice(METHODS),
                arrive_s=round(rng.uniform(0.0, spread_s), 2),
                preset_fen=preset,
                litres_ml=rng.randint(2_000, 8_000),
                coupon=PROMOTION if rng.random() < 0.2 else None,
            )
        )
    return sorted(plans, key=lambda p: p.arrive_s)


@dataclass(slots=True)
class Outcome:
    plan: CustomerPlan
    order_id: str | None = None
    view: dict[str, Any] | None = None
    create_s: float | None = None  # the create (or pay) request, answered
    end_to_end_s: float | None = None  # create to terminal
    error: str | None = None
    started_at: float = 0.0  # trio clock: when the customer's turn at the pump came
    finished_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        view = self.view or {}
        return {
            "customer": self.plan.index,
            "kind": self.plan.kind.value,
            "pump": f"{self.plan.station_id}/p{self.plan.pump_no:02d}",
            "method": self.plan.method,
            "arrive_s": self.plan.arrive_s,
            "order": self.order_id,
            "state": view.get("state"),
            "attempts": view.get("attempts"),
            "channel": (view.get("payment") or {}).get("channel"),
            "create_s": self.create_s,
            "end_to_end_s": self.end_to_end_s,
            "turn_s": self.started_at,
            "done_s": self.finished_at,
            "error": self.error,
        }


@dataclass(slots=True)
class Progress:
    """What the live display shows; updated by the customers as they go."""

    total: int
    arrived: int = 0
    done: int = 0
    sales: int = 0
    litres_ml: int = 0
    failovers: set[str] = field(default_factory=set)
    errors: int = 0
    fault: str = ""
    events: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.events = [*self.events[-5:], text]

    def seen(self, view: dict[str, Any]) -> None:
        if view.get("attempts", 0) > 1:
            self.failovers.add(view["id"])

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "arrived": self.arrived,
            "done": self.done,
            "sales": self.sales,
            "failovers": len(self.failovers),
            "errors": self.errors,
        }


async def play(
    plan: CustomerPlan,
    api: SwitchClient,
    pumps: PumpControl,
    lock: trio.Lock,
    paid_seqs: set[int],
    progress: Progress,
) -> Outcome:
    """One customer, start to end; never raises (a failure is the outcome's ``error``)."""
    outcome = Outcome(plan)
    progress.arrived += 1
    try:
        async with lock:
            outcome.started_at = trio.current_time()
            if plan.kind is Kind.POSTPAY:
                await _postpay(plan, api, pumps, paid_seqs, outcome, progress.seen)
            else:
                await _prepay(plan, api, pumps, outcome, progress.seen)
    except DemoError as exc:
        outcome.error = str(exc)
        progress.errors += 1
    outcome.finished_at = trio.current_time()
    progress.done += 1
    view = outcome.view or {}
    if view.get("state") == "completed":
        progress.sales += 1
        progress.litres_ml += int(view.get("volume_ml") or 0)
    where = f"{plan.station_id}/p{plan.pump_no:02d}"
    state = outcome.error or view.get("state", "?")
    progress.note(f"#{plan.index:02d} {plan.kind.value:<13} {where} {plan.method:<9} {state}")
    return outcome


def _order_body(plan: CustomerPlan) -> dict[str, Any]:
    body: dict[str, Any] = {
        "station_id": plan.station_id,
        "pump_no": plan.pump_no,
        "preset_kind": "amount",
        "preset_value": plan.preset_fen,
        "method": plan.method,
        "payer_id": plan.payer_id,
        "nozzle_no": plan.nozzle_no,
    }
    if plan.coupon:
        body["coupon"] = plan.coupon
    return body


async def _prepay(
    plan: CustomerPlan,
    api: SwitchClient,
    pumps: PumpControl,
    outcome: Outcome,
    seen: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    view = await api.create_order(_order_body(plan))
    outcome.create_s = time.monotonic() - started
    outcome.order_id = order_id = view["id"]
    ready = {"authorized", "fuelling"}
    if plan.kind is Kind.CANCEL:
        ready |= {"held", "authorizing"}
    view = await api.wait_order(order_id, lambda v: v["state"] in ready, TO_AUTHORIZED_S, seen)
    if not view["terminal"]:
        where = {"station": plan.station_id, "pump": plan.pump_no, "nozzle": plan.nozzle_no}
        if plan.kind is Kind.CANCEL:
            view = await api.cancel(order_id)
        elif plan.kind is Kind.ZERO_SALE:
            await pumps.call("customer", **where, hang_up_after_s=0.2)
        elif plan.kind is Kind.PREPAY_PRESET:
            await pumps.call("customer", **where)
        else:
            await pumps.call("customer", **where, hang_up_after_ml=plan.litres_ml)
        view = await api.wait_order(order_id, lambda v: False, TO_TERMINAL_S, seen)
    outcome.view = view
    outcome.end_to_end_s = time.monotonic() - started


async def _postpay(
    plan: CustomerPlan,
    api: SwitchClient,
    pumps: PumpControl,
    paid_seqs: set[int],
    outcome: Outcome,
    seen: Callable[[dict[str, Any]], None],
) -> None:
    where = {"station": plan.station_id, "pump": plan.pump_no, "nozzle": plan.nozzle_no}
    await pumps.call("customer", **where, hang_up_after_ml=plan.litres_ml)
    sale = await api.wait_payable(plan.station_id, plan.pump_no, paid_seqs, TO_AUTHORIZED_S)
    paid_seqs.add(sale["pump_sale_seq"])
    body: dict[str, Any] = {
        "method": plan.method,
        "payer_id": plan.payer_id,
        "pump_sale_seq": sale["pump_sale_seq"],
    }
    if plan.coupon:
        body["coupon"] = plan.coupon
    started = time.monotonic()
    view = await api.pay_pump(plan.station_id, plan.pump_no, body)
    outcome.create_s = time.monotonic() - started
    outcome.order_id = view["id"]
    outcome.view = await api.wait_order(view["id"], lambda v: False, TO_TERMINAL_S, seen)
    outcome.end_to_end_s = time.monotonic() - started
