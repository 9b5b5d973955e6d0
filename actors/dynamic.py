"""Dynamic supervisors: many independent children added at run time.

One per station's pumps, one for live orders. Children are independent, so the
strategy is always one_for_one, shutdown runs concurrently (as OTP's
simple_one_for_one does), and starts run concurrently too: one slow ``init``
(an order recovering from its journal) does not hold up the next ``start_child``.

Idle passivation: with ``passivate_after`` set, a periodic sweep stops children that
have handled nothing for that long and have an empty mailbox. They keep their
address and mailbox; the next message addressed to them starts a new incarnation
(whose ``init`` recovers its state), so passivation is invisible to senders.
An actor can also passivate itself (``self.passivate()``), e.g. an order that
reached a terminal state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from .actor import NOREPLY
from .cell import ActorCell
from .errors import StartFailed
from .reply import Reply
from .spec import ChildSpec, Status
from .supervisor import Supervisor


@dataclass(frozen=True, slots=True)
class Sweep:
    """Timer signal: look for idle children to passivate."""


class DynamicSupervisor(Supervisor):
    ordered_shutdown = False

    def __init__(
        self,
        *,
        intensity: int = 3,
        period: float = 5.0,
        passivate_after: float | None = None,
    ) -> None:
        super().__init__((), intensity=intensity, period=period)
        if passivate_after is not None and passivate_after <= 0:
            raise ValueError("passivate_after must be positive")
        self.passivate_after = passivate_after
        self.passivations = 0

    async def init(self) -> None:
        if self.passivate_after is not None:
            self._cell.send_after(self.passivate_after / 2, Sweep(), system=True)

    async def start_child(self, spec: ChildSpec, reply: Reply) -> Any:
        cell = self._add(spec)
        self._cell.nursery.start_soon(self._start_and_reply, cell, reply)
        return NOREPLY

    async def _start_and_reply(self, cell: ActorCell, reply: Reply) -> None:
        error = await self._start(cell)
        if error is None:
            reply.send(cell.address)
        else:
            self._remove(cell, "failed to start")
            reply.fail(StartFailed(cell.address, error))

    async def handle_system(self, msg: Any) -> None:
        if isinstance(msg, Sweep):
            await self._sweep()
        else:
            await super().handle_system(msg)

    async def _sweep(self) -> None:
        limit = self.passivate_after
        assert limit is not None
        now = trio.current_time()
        idle = [
            cell
            for cell in self.children.values()
            if cell.status is Status.RUNNING
            and cell.current is None
            and not cell.mailbox.queued
            and now - cell.last_activity >= limit
        ]
        for cell in idle:
            await self._passivate(cell)
        self.passivations += len(idle)
        self._cell.send_after(limit / 2, Sweep(), system=True)

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["passivate_after_s"] = self.passivate_after
        state["passivations"] = self.passivations
        state["passivated"] = sum(
            1 for c in self.children.values() if c.status is Status.PASSIVATED
        )
        return state
