"""The actor system: the registry, the timer task, the root supervisor, and messaging by address.

``open_system()`` is the only entry point. Everything started under it lives in its
nursery; leaving the block stops the tree gracefully (children in reverse order,
each within its grace). If the root supervisor gives up, the ``SupervisorGaveUp``
leaves the block (inside an ``ExceptionGroup``: catch it with ``except*``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio
from trio.lowlevel import checkpoint, current_task

from .address import ROOT, Address, AddressLike
from .cell import ActorCell
from .errors import CallingSelf, CallTimeout, StartFailed
from .policy import SHUTDOWN, Exit, Restart, Strategy
from .registry import Registry
from .reply import Reply
from .snapshot import ActorSnapshot, TreePage
from .spec import ChildSpec
from .supervisor import RestartChild, StartChild, Supervisor, TerminateChild
from .timers import TimerService


class ActorSystem:
    def __init__(self) -> None:
        self.registry = Registry()
        self.timers = TimerService()
        self.root: ActorCell | None = None
        self._root_exit: Exit | None = None

    # -- messaging -------------------------------------------------------------------

    def cast(self, target: AddressLike, msg: Any) -> None:
        """Queue ``msg`` for ``target`` without waiting; ``MailboxFull`` if it has no room."""
        self.registry.resolve(target).cast(msg)

    async def send(self, target: AddressLike, msg: Any) -> None:
        """Queue ``msg``, waiting for room in the mailbox (backpressure)."""
        await self.registry.resolve(target).send(msg)

    async def call(self, target: AddressLike, msg: Any, *, timeout: float = 5.0) -> Any:
        """Send ``msg`` and wait for the reply.

        Raises ``CallTimeout``, ``ActorCrashed`` (the message crashed the target),
        ``ActorStopped``, ``CallingSelf``, ``MailboxFull`` or ``ActorNotFound``. After a
        timeout the target may still handle the message; its reply is then dropped.
        """
        cell = self.registry.resolve(target)
        if cell.task is current_task():
            raise CallingSelf(cell.address)
        reply = Reply(cell.address)
        try:
            if not cell.offer_call(msg, reply):
                # A BLOCK mailbox is full: waiting for room counts against the timeout.
                with trio.move_on_after(timeout) as scope:
                    await cell.put_call(msg, reply)
                if scope.cancelled_caught:
                    raise CallTimeout(cell.address, timeout)
            # The timeout is a timer that fails the reply, not a cancel scope: with
            # thousands of calls in flight, trio's deadline bookkeeping cost more than
            # the rest of the call.
            timer = self.timers.call_at(trio.current_time() + timeout, reply.expire, timeout)
            try:
                return await reply.wait()
            finally:
                timer.cancel()
        finally:
            reply.abandon()

    def request(self, target: AddressLike, msg: Any) -> Reply:
        """Queue a call and return its reply slot without waiting: the fan-out building block.

        Await the slots with :func:`gather` (or ``reply.wait()`` under your own deadline).
        """
        cell = self.registry.resolve(target)
        if cell.task is current_task():
            raise CallingSelf(cell.address)
        reply = Reply(cell.address)
        cell.post_call(msg, reply)
        return reply

    async def multi_call(
        self, calls: Iterable[tuple[AddressLike, Any]], *, timeout: float = 5.0
    ) -> list[outcome.Outcome[Any]]:
        """Call several actors at once; one outcome per call, in order, within one deadline."""
        replies: list[Reply | outcome.Error] = []
        for target, msg in calls:
            try:
                replies.append(self.request(target, msg))
            except Exception as exc:
                replies.append(outcome.Error(exc))
        return await gather(replies, timeout=timeout)

    # -- supervision -----------------------------------------------------------------

    async def start_child(
        self, spec: ChildSpec, *, supervisor: AddressLike = ROOT, timeout: float = 30.0
    ) -> Address:
        address: Address = await self.call(supervisor, StartChild(spec), timeout=timeout)
        return address

    async def terminate_child(
        self, supervisor: AddressLike, name: str, *, timeout: float = 60.0
    ) -> None:
        await self.call(supervisor, TerminateChild(name), timeout=timeout)

    async def restart_child(
        self, supervisor: AddressLike, name: str, *, timeout: float = 60.0
    ) -> Address:
        address: Address = await self.call(supervisor, RestartChild(name), timeout=timeout)
        return address

    # -- ops -------------------------------------------------------------------------

    def snapshot(self, target: AddressLike) -> ActorSnapshot:
        return self.registry.resolve(target).snapshot()

    def tree_page(
        self, supervisor: AddressLike = ROOT, *, offset: int = 0, limit: int = 200
    ) -> TreePage:
        """One supervisor and up to ``limit`` of its children: cheap enough to call from ops."""
        cell = self.registry.resolve(supervisor)
        actor = cell.actor
        children = actor.page(offset, limit) if isinstance(actor, Supervisor) else []
        total = actor.child_count() if isinstance(actor, Supervisor) else 0
        end = offset + len(children)
        return TreePage(
            supervisor=cell.snapshot(),
            children=[c.snapshot() for c in children],
            offset=offset,
            total=total,
            next_offset=end if end < total else None,
        )

    async def walk_tree(
        self, root: AddressLike = ROOT, *, page_size: int = 200
    ) -> AsyncIterator[TreePage]:
        """Every supervisor's pages, breadth first, yielding to the scheduler between pages
        so that reading a 10,000-actor tree never holds the event loop for long."""
        pending: list[AddressLike] = [root]
        while pending:
            supervisor = pending.pop(0)
            offset: int | None = 0
            while offset is not None:
                if supervisor not in self.registry:
                    break
                page = self.tree_page(supervisor, offset=offset, limit=page_size)
                pending.extend(c.address for c in page.children if c.supervisor)
                yield page
                offset = page.next_offset
                await checkpoint()

    # -- the root --------------------------------------------------------------------

    async def _run_root(
        self, root: Supervisor, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        spec = ChildSpec("root", lambda: root, Restart.TEMPORARY, shutdown=math.inf)
        cell = ActorCell(self, spec, ROOT, None)
        self.registry.register(cell)
        self.root = cell
        try:
            async with trio.open_nursery() as nursery:
                error = await nursery.start(cell.run)
                if error is None:
                    task_status.started()
        finally:
            self.registry.unregister(cell)
            cell.close("the actor system stopped")
        if error is not None:
            raise StartFailed(ROOT, error)
        exit = self._root_exit
        if exit is not None and exit.error is not None:
            raise exit.error

    def _root_exited(self, exit: Exit) -> None:
        self._root_exit = exit

    async def _shutdown(self) -> None:
        if self.root is not None:
            await self.root.shutdown(SHUTDOWN, math.inf)


async def gather(
    replies: Sequence[Reply | outcome.Error], *, timeout: float = 5.0
) -> list[outcome.Outcome[Any]]:
    """Await several reply slots under one deadline; a slot still empty then is a CallTimeout."""
    results: list[outcome.Outcome[Any]] = []
    try:
        with trio.move_on_after(timeout):
            for reply in replies:
                if isinstance(reply, outcome.Error):
                    results.append(reply)
                    continue
                # Not outcome.acapture: it would capture trio.Cancelled too.
                try:
                    value = await reply.wait()
                except Exception as exc:
                    results.append(outcome.Error(exc))
                else:
                    results.append(outcome.Value(value))
    finally:
        for reply in replies[len(results) :]:
            if isinstance(reply, Reply):
                reply.abandon()
    for reply in replies[len(results) :]:
        if isinstance(reply, outcome.Error):
            results.append(reply)
        elif (arrived := reply.peek()) is not None:  # arrived behind a slower one: keep it
            results.append(arrived)
        else:
            results.append(outcome.Error(CallTimeout(reply.target, timeout)))
    return results


@asynccontextmanager
async def open_system(
    children: Iterable[ChildSpec] = (),
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: int = 1,
    period: float = 5.0,
    shutdown_timeout: float = 60.0,
) -> AsyncIterator[ActorSystem]:
    """Start an actor system whose root supervisor has these children and policy.

    Leaving the block stops the tree in reverse start order, bounded by
    ``shutdown_timeout`` even when the block is left by cancellation.
    """
    system = ActorSystem()
    root = Supervisor(children, strategy=strategy, intensity=intensity, period=period)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(system.timers.run)
        await nursery.start(system._run_root, root)
        try:
            yield system
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.relative_deadline = shutdown_timeout
                await system._shutdown()
            nursery.cancel_scope.cancel()
