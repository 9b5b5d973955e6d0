"""Finding an order's actor, starting it when it is not running.

Live orders are children of one dynamic supervisor (``orders``). An order that reached a
terminal state stops and is forgotten; an idle one is passivated. Either way, the next message
for it goes through here, which starts it again under the same address; its ``init`` recovers
it from the journal, so a sender never needs to know whether the order was running.

The directory also answers the drain's question, "what are the live orders doing?", from the
supervisor's children in memory (no database scan): :func:`activity` sorts each order into
moving (a step under way or due), fuelling, waiting for a person (or asleep), or done. The
switch stops taking orders, waits for the moving and fuelling ones, and leaves the waiting ones
parked: their journal says where they are, and recovery resumes them on the next start.
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import Any, Final

import trio

from actors import (
    ActorNotFound,
    ActorStopped,
    ActorSystem,
    AlreadyRegistered,
    Backoff,
    ChildSpec,
    DynamicSupervisor,
    Restart,
    Status,
    Supervisor,
)

from .actor import OrderActor
from .deps import OrderDeps
from .model import TERMINAL, Order, OrderState

__all__ = ["Activity", "OrderDirectory", "activity", "orders_supervisor_spec"]

_ATTEMPTS = 10


class Activity(enum.StrEnum):
    """What a live order is doing, as a drain sees it."""

    MOVING = "moving"  # a step is under way or due soon: worth waiting for
    FUELLING = "fuelling"  # the pump is dispensing its sale: waited for within the grace
    WAITING = "waiting"  # on a person (to pay, to lift the nozzle), or passivated: parked
    DONE = "done"  # terminal with nothing left to send


# Orders in these states wait for the customer, not for the switch.
_WAITING_STATES: Final = frozenset({OrderState.HOLDING, OrderState.AUTHORIZED})


def activity(order: Order | None) -> Activity:
    """Pure: ``None`` is an actor still recovering its order (moving)."""
    if order is None:
        return Activity.MOVING
    if order.state in TERMINAL:
        return Activity.MOVING if any(not r.done for r in order.refunds) else Activity.DONE
    if order.state is OrderState.FUELLING:
        return Activity.FUELLING
    if order.state not in _WAITING_STATES or order.cancel_requested or order.failure:
        return Activity.MOVING  # a cancel or a failure has steps of its own to take
    if order.state is OrderState.AUTHORIZED:
        return Activity.WAITING
    open_hold = next((h for h in order.holds if h.open), None)
    # pending: the provider has the hold and the customer has not paid yet
    return Activity.WAITING if open_hold and open_hold.outcome == "pending" else Activity.MOVING


def orders_supervisor_spec(name: str = "orders", *, passivate_after: float = 30.0) -> ChildSpec:
    return ChildSpec(
        name,
        lambda: DynamicSupervisor(intensity=1000, period=60.0, passivate_after=passivate_after),
        shutdown=float("inf"),
    )


class OrderDirectory:
    def __init__(
        self, system: ActorSystem, deps: OrderDeps, *, stop_grace_s: float | None = None
    ) -> None:
        self.system = system
        self.deps = deps
        self.supervisor = deps.orders_supervisor
        # How long a stopping order may take to finish the message it is handling before it
        # is cancelled (a cut that recovery handles, like a crash at that point).
        self.stop_grace_s = (
            OrderActor.terminate_timeout
            if stop_grace_s is None
            else min(stop_grace_s, OrderActor.terminate_timeout)
        )
        self.started = 0

    def address(self, order_id: str) -> str:
        return f"{self.supervisor}/{order_id}"

    def spec(self, order_id: str) -> ChildSpec:
        deps = self.deps
        return ChildSpec(
            order_id,
            lambda: OrderActor(order_id, deps),
            restart=Restart.TRANSIENT,
            backoff=Backoff(min_delay=0.5, max_delay=30.0),
            shutdown=self.stop_grace_s,
        )

    async def ensure(self, order_id: str) -> None:
        try:
            await self.system.start_child(self.spec(order_id), supervisor=self.supervisor)
            self.started += 1
        except AlreadyRegistered:
            pass

    async def cast(self, order_id: str, msg: Any) -> None:
        try:
            self.system.cast(self.address(order_id), msg)
        except ActorNotFound:
            await self.ensure(order_id)
            self.system.cast(self.address(order_id), msg)

    async def call(self, order_id: str, msg: Any, *, timeout: float = 30.0) -> Any:
        """A terminal order stops after its current message, discarding what waits in its
        mailbox: a call that meets that (or no actor at all) starts the order again and asks
        once more. Calls to orders are idempotent, so asking twice is harmless."""
        for attempt in range(_ATTEMPTS - 1):
            try:
                return await self.system.call(self.address(order_id), msg, timeout=timeout)
            except ActorStopped:
                # Still exiting: its supervisor forgets it in a moment, then it can restart.
                await trio.sleep(0.02 * (attempt + 1))
                await self.ensure(order_id)
            except ActorNotFound:
                await self.ensure(order_id)
        return await self.system.call(self.address(order_id), msg, timeout=timeout)

    def activities(self) -> dict[str, Activity]:
        """order id -> :class:`Activity` of every order the supervisor holds, read from the
        actors in memory: cheap and synchronous (one pass over the live orders)."""
        cell = self.system.registry.lookup(self.supervisor)
        supervisor = None if cell is None else cell.actor
        if not isinstance(supervisor, Supervisor):
            return {}
        out: dict[str, Activity] = {}
        for name, child in supervisor.children.items():
            if child.status is Status.PASSIVATED:
                out[name] = Activity.WAITING  # idle long enough to be put to sleep
                continue
            actor = child.actor
            out[name] = activity(getattr(actor, "order", None)) if actor else Activity.MOVING
        return out

    def open_orders(self) -> int:
        """Live order actors (running or passivated), in O(1): the admission bound's count.
        A terminal order stops right after its last step, so it drops out at once."""
        cell = self.system.registry.lookup(self.supervisor)
        supervisor = None if cell is None else cell.actor
        return supervisor.child_count() if isinstance(supervisor, Supervisor) else 0

    def in_flight(self) -> int:
        """Live orders that are not finished (moving, fuelling or waiting)."""
        return sum(1 for a in self.activities().values() if a is not Activity.DONE)

    def census(self) -> dict[str, int]:
        """How many live orders do what: ``{"moving": n, "fuelling": n, ...}``."""
        counts = Counter(self.activities().values())
        return {a.value: counts.get(a, 0) for a in Activity}

    def statistics(self) -> dict[str, int]:
        return {"started": self.started}
