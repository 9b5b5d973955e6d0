"""Supervisors: start children in order, restart them by policy, stop them in reverse.

Theory of operation
-------------------
A supervisor is an actor whose children run in its nursery. Starting is synchronous
(``nursery.start``): each child's ``init`` completes before the next child starts,
and a child that fails to start fails the supervisor's own start after the children
already started are stopped again. A supervisor is therefore only reported started
once its whole subtree is.

Independent children whose ``init`` mostly waits (a database, a device) may start
``start_concurrency`` at a time instead, after the first ``start_alone`` (those the
others need, e.g. a gateway before its pumps) started one after another. They are still
taken in declared order (so ``children`` keeps that order for ``rest_for_one`` groups and
ordered shutdown), every one's ``init`` still completes before the supervisor reports
started, and the first failure stops taking new ones, waits for those already starting,
then fails the start as above. Restarts are not affected: a restart group starts one
child after another, as the strategy's tables say.

A child that exits on its own sends ``ChildExited`` on the supervisor's system lane,
which is taken before ordinary calls. The supervisor then decides, from the pure
tables in :mod:`actors.policy`: remove the child (temporary, or transient that exited
normally), or count a restart against the intensity window and restart the group the
strategy names, stopping the group's other members first in reverse start order. A
restart that would exceed the intensity raises ``SupervisorGaveUp`` inside the
supervisor, which is a crash like any other: its ``terminate`` stops every child in
reverse order and its own supervisor hears of it. A restart that fails to start
counts as another exit of that child, so a child that can never start exhausts the
intensity instead of looping.

Stopping a child asks it to finish its current message and run ``terminate``; after
its ``shutdown`` grace it is cancelled. Backoff, when a child's spec has one, delays
the restart through a timer so the supervisor keeps serving its mailbox meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import structlog
import trio

from .actor import NOREPLY, Actor
from .cell import Activate, ActorCell, ChildExited
from .errors import ActorNotFound, AlreadyRegistered, StartFailed, SupervisorGaveUp
from .policy import (
    PASSIVATED,
    SHUTDOWN,
    Exit,
    ExitKind,
    Restart,
    RestartWindow,
    Strategy,
    restart_group,
    should_restart,
)
from .reply import Reply
from .spec import ChildSpec, Status

log = structlog.get_logger("actors")


@dataclass(frozen=True, slots=True)
class StartChild:
    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class TerminateChild:
    name: str


@dataclass(frozen=True, slots=True)
class RestartChild:
    name: str


@dataclass(frozen=True, slots=True)
class RestartDue:
    """Timer signal: the backoff of these (cell, incarnation) pairs is over."""

    entries: tuple[tuple[ActorCell, int], ...]


# Errors a management call answers with instead of crashing the supervisor.
_CALLER_ERRORS = (AlreadyRegistered, ActorNotFound, StartFailed)


class Supervisor(Actor):
    linked_tasks = True
    terminate_timeout = math.inf
    ordered_shutdown = True

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: int = 1,
        period: float = 5.0,
        start_concurrency: int = 1,
        start_alone: int = 0,
    ) -> None:
        if start_concurrency < 1:
            raise ValueError("start_concurrency must be at least 1")
        if start_alone < 0:
            raise ValueError("start_alone must not be negative")
        self.strategy = strategy
        self.window = RestartWindow(intensity, period)
        self.start_concurrency = start_concurrency
        self.start_alone = start_alone
        self.specs = tuple(children)
        names = [spec.name for spec in self.specs]
        if len(set(names)) != len(names):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate child names: {', '.join(duplicates)}")
        self.children: dict[str, ActorCell] = {}

    # -- start ---------------------------------------------------------------------

    async def init(self) -> None:
        alone = self.start_alone if self.start_concurrency > 1 else len(self.specs)
        try:
            for spec in self.specs[:alone]:
                await self._start_new(spec)
            if self.specs[alone:]:
                await self._start_concurrently(self.specs[alone:])
        except Exception:
            await self._stop_all()
            raise

    async def _start_concurrently(self, specs: Sequence[ChildSpec]) -> None:
        """Start ``specs`` with up to ``start_concurrency`` inits in flight.

        Each starter takes the next spec from one shared iterator, and ``_add`` runs before
        the first await: children are registered, and kept in ``children``, in declared
        order whatever order their inits finish in.
        """
        queue = iter(specs)
        failures: list[Exception] = []

        async def starter() -> None:
            for spec in queue:
                if failures:
                    return
                try:
                    await self._start_new(spec)
                except Exception as exc:  # the first failure is raised once the others settle
                    failures.append(exc)
                    return

        async with trio.open_nursery() as nursery:
            for _ in range(min(self.start_concurrency, len(specs))):
                nursery.start_soon(starter)
        if failures:
            raise failures[0]

    async def _start_new(self, spec: ChildSpec) -> ActorCell:
        cell = self._add(spec)
        error = await self._start(cell)
        if error is not None:
            self._remove(cell, "failed to start")
            raise StartFailed(cell.address, error)
        return cell

    def _add(self, spec: ChildSpec) -> ActorCell:
        address = self.address / spec.name
        if spec.name in self.children:
            raise AlreadyRegistered(address)
        cell = ActorCell(self.system, spec, address, self._cell)
        self.system.registry.register(cell)
        self.children[spec.name] = cell
        return cell

    async def _start(self, cell: ActorCell) -> BaseException | None:
        error: BaseException | None = await self._cell.nursery.start(cell.run)
        if error is not None:
            log.error(
                "actor.start_failed", address=str(cell.address), error=repr(error), exc_info=error
            )
        return error

    def _remove(self, cell: ActorCell, reason: str) -> None:
        if self.children.get(cell.name) is cell:
            del self.children[cell.name]
        self.system.registry.unregister(cell)
        cell.close(reason)

    # -- management calls ----------------------------------------------------------

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        try:
            if isinstance(msg, StartChild):
                return await self.start_child(msg.spec, reply)
            if isinstance(msg, TerminateChild):
                await self.terminate_child(msg.name)
                return None
            if isinstance(msg, RestartChild):
                return await self.restart_child(msg.name)
        except _CALLER_ERRORS as exc:
            reply.fail(exc)
            return NOREPLY
        return await super().handle_call(msg, reply)

    async def start_child(self, spec: ChildSpec, reply: Reply) -> Any:
        cell = await self._start_new(spec)
        return cell.address

    def _child(self, name: str) -> ActorCell:
        cell = self.children.get(name)
        if cell is None:
            raise ActorNotFound(self.address / name)
        return cell

    async def terminate_child(self, name: str) -> None:
        cell = self._child(name)
        await cell.shutdown(SHUTDOWN, cell.spec.shutdown)
        self._remove(cell, "terminated by its supervisor")

    async def restart_child(self, name: str) -> Any:
        """Operator restart: stop (if running) and start again; not counted as a failure."""
        cell = self._child(name)
        await cell.shutdown(SHUTDOWN, cell.spec.shutdown)
        cell.restarts += 1
        error = await self._start(cell)
        if error is not None:
            await self._on_exit(cell, cell.incarnation, Exit(ExitKind.CRASHED, error))
            raise StartFailed(cell.address, error)
        return cell.address

    # -- exits and restarts ----------------------------------------------------------

    async def handle_system(self, msg: Any) -> None:
        if isinstance(msg, ChildExited):
            await self._on_exit(msg.cell, msg.incarnation, msg.exit)
        elif isinstance(msg, RestartDue):
            await self._start_group(
                [
                    cell
                    for cell, incarnation in msg.entries
                    if self.children.get(cell.name) is cell
                    and cell.status is Status.BACKOFF
                    and cell.incarnation == incarnation
                ]
            )
        elif isinstance(msg, Activate):
            await self._activate(msg.cell)
        else:
            await super().handle_system(msg)

    async def _on_exit(self, cell: ActorCell, incarnation: int, exit: Exit) -> None:
        if (
            self.children.get(cell.name) is not cell
            or cell.incarnation != incarnation
            or cell.task is not None
        ):
            return  # stale: already restarted, stopped or removed
        if exit.kind is ExitKind.PASSIVATED:
            await self._passivated(cell)
            return
        if not should_restart(cell.spec.restart, exit):
            self._remove(cell, f"exited ({exit.describe()})")
            return
        if not self.window.record(trio.current_time()):
            raise SupervisorGaveUp(
                self.address, self.window.intensity, self.window.period, exit.error
            )
        if self.strategy is Strategy.ONE_FOR_ONE:
            await self._restart([cell])
            return
        names = restart_group(self.strategy, list(self.children), cell.name)
        group = [self.children[n] for n in names]
        for other in reversed(group):
            if other is not cell:
                await other.shutdown(SHUTDOWN, other.spec.shutdown)
        keep: list[ActorCell] = []
        for other in group:
            if other is not cell and other.spec.restart is Restart.TEMPORARY:
                self._remove(other, "stopped with its group; temporary children are not restarted")
            else:
                keep.append(other)
        await self._restart(keep)

    async def _restart(self, group: Sequence[ActorCell]) -> None:
        delay = 0.0
        for cell in group:
            backoff = cell.spec.backoff
            if backoff is None:
                continue
            if cell.last_uptime >= backoff.reset_after:
                cell.backoff_attempt = 0
            delay = max(delay, backoff.delay(cell.backoff_attempt))
            cell.backoff_attempt += 1
        if delay > 0:
            for cell in group:
                cell.status = Status.BACKOFF
            entries = tuple((cell, cell.incarnation) for cell in group)
            self._cell.send_after(delay, RestartDue(entries), system=True)
            return
        await self._start_group(group)

    async def _start_group(self, group: Sequence[ActorCell]) -> None:
        for cell in group:
            if self.children.get(cell.name) is not cell:
                continue
            cell.restarts += 1
            error = await self._start(cell)
            if error is not None:
                # A failed restart is another exit of that child: counted, and its group
                # (which may include children restarted just now) is restarted again.
                await self._on_exit(cell, cell.incarnation, Exit(ExitKind.CRASHED, error))
                return

    # -- passivation (used by dynamic supervisors) -----------------------------------

    async def _passivated(self, cell: ActorCell) -> None:
        cell.status = Status.PASSIVATED
        cell.activation_pending = False
        if cell.mailbox.queued:
            await self._activate(cell)

    async def _activate(self, cell: ActorCell) -> None:
        cell.activation_pending = False
        if self.children.get(cell.name) is not cell or cell.status is not Status.PASSIVATED:
            return
        error = await self._start(cell)
        if error is not None:
            await self._on_exit(cell, cell.incarnation, Exit(ExitKind.CRASHED, error))

    async def _passivate(self, cell: ActorCell) -> None:
        await cell.shutdown(PASSIVATED, cell.spec.shutdown)
        if self.children.get(cell.name) is cell:
            await self._passivated(cell)

    # -- stop ------------------------------------------------------------------------

    async def terminate(self, reason: Exit) -> None:
        await self._stop_all()

    async def _stop_all(self) -> None:
        cells = list(self.children.values())
        if self.ordered_shutdown:
            for cell in reversed(cells):
                await cell.shutdown(SHUTDOWN, cell.spec.shutdown)
        else:
            async with trio.open_nursery() as nursery:
                for cell in cells:
                    nursery.start_soon(cell.shutdown, SHUTDOWN, cell.spec.shutdown)
        for cell in cells:
            self._remove(cell, "its supervisor stopped")

    def _after_exit(self) -> None:
        # Killed supervisors never ran terminate: their children's addresses must still go.
        for cell in list(self.children.values()):
            self._remove(cell, "its supervisor exited")

    # -- ops -------------------------------------------------------------------------

    def child_count(self) -> int:
        return len(self.children)

    def page(self, offset: int, limit: int) -> list[ActorCell]:
        return list(islice(self.children.values(), offset, offset + limit))

    def snapshot(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "intensity": self.window.intensity,
            "period_s": self.window.period,
            "recent_restarts": self.window.recent(trio.current_time()),
            "children": len(self.children),
        }
