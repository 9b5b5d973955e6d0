"""OrderActor: one live order, from the customer's request to the receipt.

Theory of operation
-------------------
The order's journal stream is its memory, and every step that reaches outside the process is
journaled before it is sent (ARCHITECTURE.md invariant 1): ``hold_requested`` before the
provider sees the hold, ``auth_requested`` before the pump is told, ``capture_requested``
before the capture, and so on; the answer is journaled after. The payment attempt row is
written with its key before the request too, so a callback that beats the response finds it.

The actor is a reconciliation loop: after every message it folds what it knows into an
:class:`~switch.orders.model.Order` and runs the step for the order's state (``_STEPS``) until
a step has to wait (for the customer, a callback, the pump, or a timer). A restarted actor
does exactly the same from its journal, and a step whose request may have gone out without
an answer never sends a new one blindly: it looks at the attempt row (a callback may have
answered), then queries the provider by the journaled key, and only a confirmed failure frees
the order to try another channel (routing.md, invariant 3). Unknown is never guessed.

The actor stops when the order is terminal (its supervisor forgets it); a later refund request
or a late success found by the sweeper starts it again, and ``init`` recovers it as always.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from actors import NOREPLY, Reply
from devices.pump_messages import PumpEvent
from switch.service import Conflict, RefundView, ServiceError
from switch.store.orders import insert_order, update_order, update_order_row

from .deps import pump_address
from .messages import Cancel, PaymentUpdate, RequestRefund, Tick, Wake
from .model import TERMINAL, OrderState, fold
from .pump_steps import PumpSteps

__all__ = ["OrderActor"]

log = structlog.get_logger("orders")

Step = Callable[["OrderActor"], Awaitable[bool]]


STOP_GRACE_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class _StopIfDone:
    generation: int


class OrderActor(PumpSteps):
    _stop_generation = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        structlog.contextvars.bind_contextvars(order_id=self.order_id)  # this task's logs
        events = await self.deps.journal.load(self.stream_id)
        order = fold([(e.seq, e.type, e.payload) for e in events])
        if order is None:
            raise LookupError(f"order {self.order_id} has no journal")
        self.order = order
        self._created_at = events[0].recorded_at
        self._row_checked = False
        self._schedule(0.0)

    async def _check_row(self) -> None:
        """The projection row follows the journal; a crash between them is repaired before
        the order does anything else. The row is nearly always there already: one round
        trip then. Done by the first message, not in ``init``: a supervisor starts its
        children one at a time, so a round trip in every ``init`` queued each new order
        behind the others, and a recovery's orders behind each other (40 of them took
        0.8 s to start under load)."""
        if self._row_checked:
            return
        projection = self._projection()
        if await update_order_row(self.deps.db, self.order_id, projection) is None:
            row = {**self.order.data.to_json(), "created_at": self._created_at}
            await insert_order(self.deps.db, row)
            await update_order(self.deps.db, self.order_id, projection)
        self._projected = projection
        self._row_checked = True

    async def handle_info(self, msg: Any) -> None:
        await self._check_row()
        if isinstance(msg, _StopIfDone):
            current = msg.generation == self._stop_generation
            if current and self.order.terminal and not self._refunds_pending():
                self.stop()
            return
        if isinstance(msg, Tick):
            if msg.generation == self._timer_generation:
                self._timer = None
                await self._drive()
            return
        await super().handle_info(msg)

    async def handle_cast(self, msg: Any) -> None:
        await self._check_row()
        self._stop_generation += 1  # new business: the pending stop waits for the next finish
        if isinstance(msg, PumpEvent):
            await self._on_pump_event(msg)
        elif not isinstance(msg, PaymentUpdate | Wake):  # those only mean "look again"
            await super().handle_cast(msg)
        await self._drive()

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        """A refused request (``ServiceError``: a cancel too late, a refund too large) fails
        the caller's await with the error, as the API shows it; the order carries on."""
        await self._check_row()
        self._stop_generation += 1
        try:
            if isinstance(msg, Wake):  # the creator waits for the first steps
                await self._drive()
                return self.order.state.value
            if isinstance(msg, Cancel):
                await self._cancel(msg)
                await self._drive()
                return self.order.state.value
            if isinstance(msg, RequestRefund):
                view = await self._request_refund(msg)
                await self._drive()
                return view
        except ServiceError as refused:
            reply.fail(refused)
            return NOREPLY
        return await super().handle_call(msg, reply)

    def snapshot(self) -> dict[str, Any]:
        o = self.order
        hold = o.hold
        return {
            "order": self.order_id,
            "state": o.state.value,
            "flow": o.data.flow,
            "station": o.data.station_id,
            "pump": o.data.pump_no,
            "seq": o.seq,
            "hold": None
            if hold is None
            else {"key": hold.key, "channel": hold.channel, "outcome": hold.outcome},
            "attempts": len(o.holds),
            "sale": o.sale_id,
            "cancel_requested": o.cancel_requested,
            "failure": o.failure,
            "wake_at": self._wake_at,
            "steps": self.steps_run,
        }

    # -- the loop ----------------------------------------------------------------------------

    async def _drive(self) -> None:
        while True:
            order = self.order
            if order.state in TERMINAL:
                if await self._send_open_refunds():
                    continue
                await self._finish()
                return
            step = _STEPS.get(order.state)
            if step is None:
                raise RuntimeError(f"order {self.order_id}: no step for state {order.state}")
            self.steps_run += 1
            progressed = await step(self)
            if not progressed:
                return

    async def _finish(self) -> None:
        """Terminal, nothing pending: let go of the pump, and stop after a short grace, so
        that what was sent to the order meanwhile (a refund request, a late callback's wake)
        is handled instead of discarded with the mailbox."""
        await self._unsubscribe()
        if self._refunds_pending():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_generation += 1
        self.send_after(STOP_GRACE_S, _StopIfDone(self._stop_generation))

    # -- customer requests -----------------------------------------------------------------

    async def _cancel(self, msg: Cancel) -> None:
        o = self.order
        if o.state in TERMINAL:
            if o.state is OrderState.CANCELLED:
                return
            raise Conflict(f"order {self.order_id} is already {o.state.value}")
        if o.state in _TOO_LATE_TO_CANCEL:
            raise Conflict(
                f"order {self.order_id} is {o.state.value}: fuel was dispensed, it can no longer"
                " be cancelled"
            )
        if o.data.flow == "postpay" and o.state in (OrderState.CAPTURING, OrderState.COLLECTING):
            raise Conflict(f"order {self.order_id} is already being paid")
        if not o.cancel_requested:
            await self.record("cancel_requested", {"by": msg.by})
        if o.state in (OrderState.AUTHORIZED, OrderState.AUTHORIZING):
            await self.stop_pump()

    async def _request_refund(self, msg: RequestRefund) -> RefundView:
        o = self.order
        for step in o.refunds:
            if step.reason == f"request:{msg.request_key}":
                return self.refund_view(step)
        if o.state is not OrderState.COMPLETED or o.capture is None or not o.capture.done:
            raise Conflict(f"order {self.order_id} has no captured payment to refund")
        if msg.amount_fen <= 0:
            raise Conflict("a refund must be at least 1 fen")
        outstanding = sum(r.amount_fen for r in o.refunds if r.outcome != "failed")
        left = o.capture.amount_fen - outstanding
        if msg.amount_fen > left:
            raise Conflict(
                f"refund of {msg.amount_fen} fen exceeds what is left to refund ({left} fen of"
                f" {o.capture.amount_fen} captured)"
            )
        step = await self.start_refund(msg.amount_fen, f"request:{msg.request_key}")
        return self.refund_view(step)

    def refund_view(self, step: Any) -> RefundView:
        state = step.outcome or "requested"
        return RefundView(self.order_id, step.key, step.amount_fen, state, step.reason)

    # -- pump events -------------------------------------------------------------------------

    async def _on_pump_event(self, event: PumpEvent) -> None:
        if event.pump != pump_address(self.order.data.station_id, self.order.data.pump_no):
            return
        if event.data.get("sale_id") != self.order.sale_id or self.order.sale_id is None:
            return
        await self.pump_event(event.kind, event.data)


_TOO_LATE_TO_CANCEL: Final = frozenset(
    {OrderState.FUELLING, OrderState.SALE_COMPLETED, OrderState.CAPTURING}
)

_STEPS: Final[Mapping[OrderState, Step]] = {
    OrderState.CREATED: lambda a: a.step_created(),
    OrderState.LOCKED: lambda a: a.step_price_sale(),
    OrderState.PRICED: lambda a: a.step_route(),
    OrderState.HOLDING: lambda a: a.step_holding(),
    OrderState.HELD: lambda a: a.step_held(),
    OrderState.AUTHORIZING: lambda a: a.step_authorize(),
    OrderState.AUTHORIZED: lambda a: a.step_watch_sale(),
    OrderState.FUELLING: lambda a: a.step_watch_sale(),
    OrderState.SALE_COMPLETED: lambda a: a.step_sale_completed(),
    OrderState.CAPTURING: lambda a: a.step_capturing(),
    OrderState.RELEASING: lambda a: a.step_releasing(),
    OrderState.COLLECTING: lambda a: a.step_collecting(),
}
