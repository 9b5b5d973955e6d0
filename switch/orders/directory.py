"""Finding an order's actor, starting it when it is not running.

Live orders are children of one dynamic supervisor (``orders``). An order that reached a
terminal state stops and is forgotten; an idle one is passivated. Either way, the next message
for it goes through here, which starts it again under the same address; its ``init`` recovers
it from the journal, so a sender never needs to know whether the order was running.
"""

from __future__ import annotations

from typing import Any

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
)

from .actor import OrderActor
from .deps import OrderDeps

__all__ = ["OrderDirectory", "orders_supervisor_spec"]

_ATTEMPTS = 10


def orders_supervisor_spec(name: str = "orders", *, passivate_after: float = 30.0) -> ChildSpec:
    return ChildSpec(
        name,
        lambda: DynamicSupervisor(intensity=1000, period=60.0, passivate_after=passivate_after),
        shutdown=float("inf"),
    )


class OrderDirectory:
    def __init__(self, system: ActorSystem, deps: OrderDeps) -> None:
        self.system = system
        self.deps = deps
        self.supervisor = deps.orders_supervisor
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
            shutdown=OrderActor.terminate_timeout,
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

    def statistics(self) -> dict[str, int]:
        return {"started": self.started}
