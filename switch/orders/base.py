"""The part of an OrderActor every step uses: journal, projection, updates, timer, alerts.

The steps are layered over it as the pump actor's are: :mod:`switch.orders.payment_steps`
(price, route, hold, capture, release, refund) over this base, :mod:`switch.orders.pump_steps`
(authorize, follow the sale, collect) over those, and the actor's lifecycle and message
table (:mod:`switch.orders.actor`) on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import structlog
import trio

from actors import Actor, ActorError
from actors.timers import Timer
from devices.crashpoints import crash_point
from devices.driver import DriverError
from devices.pump_messages import LockSale, PayableSale, PumpBusy, UnlockSale
from switch.api.views import order_view_to_json
from switch.store.alerts import record_alert
from switch.store.journal import Event
from switch.store.orders import order_row, update_order, update_order_row

from .deps import OrderDeps, pump_address
from .messages import Tick
from .model import TERMINAL, Order, OrderState, apply_event
from .views import view_from_row

__all__ = ["OrderBase"]

log = structlog.get_logger("orders")

_SHOWN: Final = frozenset({"hold_result", "captured", "released", "refund_result"})


class OrderBase(Actor):
    terminate_timeout = 10.0

    def __init__(self, order_id: str, deps: OrderDeps) -> None:
        self.order_id = order_id
        self.deps = deps
        self.stream_id = f"order:{order_id}"
        self.order: Order
        self._timer: Timer | None = None
        self._timer_generation = 0
        self._wake_at: float | None = None
        self.subscribed = False
        self.steps_run = 0
        self.queries: dict[str, int] = {}  # attempt key -> provider queries so far
        self.last_query: dict[str, float] = {}  # attempt key -> trio time of the last one
        self._projected: dict[str, Any] | None = None  # what the order's row holds now

    def _schedule(self, delay: float) -> None:
        """Wake after ``delay`` seconds; an earlier wake already set wins."""
        at = trio.current_time() + delay
        if self._timer is not None and self._wake_at is not None and self._wake_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_generation += 1
        self._wake_at = at
        self._timer = self.send_after(delay, Tick(self._timer_generation))

    # -- journal, projection, updates -------------------------------------------------------

    def now(self) -> datetime:
        return self.deps.clock()

    async def record(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        terminal: bool = False,
    ) -> None:
        """Journal one step (durably, before anything it announces is done), then show it."""
        head = await self.deps.journal.append(
            self.stream_id, [Event(kind, payload)], expected_seq=self.order.seq, terminal=terminal
        )
        crash_point(f"order.after_{kind}")
        before = self.order.state
        self.order = apply_event(self.order, head, kind, payload)
        await self.project(show=self.order.state is not before or kind in _SHOWN)

    async def project(self, *, show: bool = False) -> None:
        """Bring the order's row up to the journal, and publish the view when ``show`` and
        someone watches the order (``OrderUpdates.watched``).

        The row is written only when the projection changed since this actor last wrote it
        (many steps journal an event the row does not show), and a published change is
        written and read back in one round trip. Only the actor writes these columns (the
        money is the attempts' business), so what it wrote last is what the row holds; a
        crash between the journal and the row is repaired by ``init``, which always writes.
        """
        changes = self._projection()
        updates = self.deps.updates
        if show and updates is not None and not await updates.watched(self.order_id):
            updates.skipped()  # nobody follows this order: no view to build, nothing to send
            show = False
        if changes == self._projected:
            if show:
                await self.publish()
            return
        if show and updates is not None:
            row = await update_order_row(self.deps.db, self.order_id, changes)
            self._projected = changes
            if row is not None:
                await updates.publish(self.order_id, order_view_to_json(view_from_row(row)))
            return
        await update_order(self.deps.db, self.order_id, changes)
        self._projected = changes

    async def publish(self) -> None:
        if self.deps.updates is None:
            return
        row = await order_row(self.deps.db, self.order_id)
        if row is not None:
            await self.deps.updates.publish(self.order_id, order_view_to_json(view_from_row(row)))

    def _projection(self) -> dict[str, Any]:
        o = self.order
        hold = o.approved_hold or o.hold
        changes: dict[str, Any] = {
            "state": o.state.value,
            "terminal": o.state in TERMINAL,
            "hold_attempts": len(o.holds),
            "failure": o.failure,
            "sale_id": o.sale_id,
        }
        if hold is not None:
            changes["channel"] = hold.channel
            changes["payment_key"] = hold.key
            changes["client_data"] = dict(hold.client_data)
        if o.routing is not None:
            changes["routing"] = dict(o.routing)
        if o.priced is not None:
            changes["price_set_id"] = o.priced.price_set_id
            changes["unit_price_mfen_per_l"] = o.priced.unit_price
            changes["grade"] = o.priced.grade
            changes["discount_fen"] = o.priced.discount_fen
        if o.sale is not None:
            changes["volume_ml"] = o.sale.volume_ml
            changes["gross_fen"] = o.sale.gross_fen
            if o.sale.nozzle_no is not None:
                changes["nozzle_no"] = o.sale.nozzle_no
            if o.sale.unit_price is not None:
                changes["unit_price_mfen_per_l"] = o.sale.unit_price
        return changes

    async def alert(self, kind: str, severity: str, **details: Any) -> None:
        log.warning("order.alert", order=self.order_id, kind=kind, **details)
        async with self.deps.db.transaction() as tx:
            await record_alert(tx, kind, severity=severity, subject=self.order_id, details=details)

    async def end(self, state: OrderState, failure: str | None = None) -> bool:
        await self.record("ended", {"state": state.value, "failure": failure}, terminal=True)
        log.info("order.ended", order=self.order_id, state=state.value, failure=failure)
        return True

    # -- the pump, for post-pay locks (used by payment and pump steps alike) -----------------

    async def pump_call(self, msg: Any) -> Any:
        o = self.order
        name = type(msg).__name__.lower()
        crash_point(f"order.before_pump_{name}")
        answer = await self.call(
            pump_address(o.data.station_id, o.data.pump_no),
            msg,
            timeout=self.deps.timings.pump_call_timeout_s,
        )
        crash_point(f"order.after_pump_{name}")
        return answer

    async def lock_sale(self) -> bool:
        o = self.order
        seq = o.data.pump_sale_seq
        assert seq is not None
        try:
            sale: PayableSale = await self.pump_call(LockSale(seq, self.order_id))
        except PumpBusy as exc:
            return await self.end(OrderState.FAILED, f"the sale cannot be paid: {exc}")
        except (ActorError, trio.TooSlowError, DriverError) as exc:
            log.info("order.lock_unknown", order=self.order_id, error=str(exc))
            self._schedule(self.deps.timings.pump_check_s)
            return False
        await self.record(
            "locked",
            {
                "sale_id": f"{self.order_id}S",
                "pump_sale_seq": sale.pump_sale_seq,
                "volume_ml": sale.volume_ml,
                "amount_fen": sale.amount_fen,
                "nozzle_no": sale.nozzle,
                "unit_price": sale.unit_price,
            },
        )
        return True

    async def unlock_sale(self) -> None:
        o = self.order
        if o.data.flow != "postpay" or o.sale is None or o.data.pump_sale_seq is None:
            return
        try:
            await self.pump_call(UnlockSale(o.data.pump_sale_seq, self.order_id))
        except (ActorError, trio.TooSlowError, DriverError, PumpBusy) as exc:
            log.info("order.unlock_failed", order=self.order_id, error=str(exc))
