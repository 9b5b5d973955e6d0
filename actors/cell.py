"""The runtime side of one address: its mailbox, its current incarnation, its loop.

A cell outlives the incarnations of its actor. Its supervisor owns it: it starts an
incarnation with ``nursery.start(cell.run)``, stops it with :meth:`ActorCell.shutdown`,
and hears of unexpected exits through a ``ChildExited`` signal on its own system lane.

An incarnation is: build the actor, ``init`` (a failure is handed back to the starter,
never reported as an exit), loop over the mailbox one message at a time, then a bounded
``terminate``. A hook that raises ends the incarnation: the message being handled is
dropped and its caller gets ``ActorCrashed``; queued messages stay for the next one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import trio
from trio.lowlevel import Task, current_task

from .actor import NOREPLY, Actor
from .address import Address
from .errors import ActorCrashed, ActorStopped
from .mailbox import Delivery, Envelope, Kind, Mailbox, Overflow
from .policy import KILLED, PASSIVATED, Exit, ExitKind
from .reply import Reply
from .snapshot import ActorSnapshot, describe
from .spec import ChildSpec, Status
from .timers import Timer

if TYPE_CHECKING:
    from .system import ActorSystem

log = structlog.get_logger("actors")

RECEIVE_BUDGET = 32
"""How many queued messages an actor may take between two checkpoints."""


@dataclass(frozen=True, slots=True)
class Stop:
    """System signal: end this incarnation after the current message."""

    incarnation: int
    reason: Exit


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A ``send_after`` message, tagged with the incarnation that set the timer."""

    incarnation: int
    msg: Any


@dataclass(frozen=True, slots=True)
class ChildExited:
    """System signal to a supervisor: a child's incarnation ended on its own."""

    cell: ActorCell
    incarnation: int
    exit: Exit


@dataclass(frozen=True, slots=True)
class Activate:
    """System signal to a supervisor: a passivated child has mail."""

    cell: ActorCell


class ActorCell:
    __slots__ = (
        "_by_parent",
        "_call_waits",
        "_nursery",
        "_started",
        "_stop_reason",
        "activation_pending",
        "actor",
        "address",
        "backoff_attempt",
        "current",
        "current_since",
        "exited",
        "incarnation",
        "kind",
        "last_activity",
        "last_exit",
        "last_exit_at",
        "last_uptime",
        "late_replies",
        "mailbox",
        "parent",
        "restarts",
        "scope",
        "spec",
        "started_at",
        "status",
        "system",
        "task",
    )

    def __init__(
        self, system: ActorSystem, spec: ChildSpec, address: Address, parent: ActorCell | None
    ) -> None:
        self.system = system
        self.spec = spec
        self.address = address
        self.parent = parent
        self.mailbox = Mailbox(spec.mailbox, label=address)
        self._call_waits = spec.mailbox.overflow is Overflow.BLOCK
        self.kind = spec.kind
        self.actor: Actor | None = None
        self.status = Status.EXITED
        self.incarnation = 0
        self.restarts = 0
        self.backoff_attempt = 0
        self.last_exit: Exit | None = None
        self.last_exit_at: float | None = None
        self.started_at: float | None = None
        self.last_uptime = 0.0
        self.last_activity = 0.0
        self.task: Task | None = None
        self.scope: trio.CancelScope | None = None
        self.exited = trio.Event()
        self.exited.set()
        self.current: Envelope | None = None
        self.current_since = 0.0
        self.late_replies = 0
        self.activation_pending = False
        self._stop_reason: Exit | None = None
        self._by_parent = False
        self._started = False  # this incarnation answered its starter
        self._nursery: trio.Nursery | None = None

    @property
    def name(self) -> str:
        return self.address.name

    # -- delivery (the hot path) ---------------------------------------------------

    def cast(self, msg: Any) -> None:
        if self.status is Status.PASSIVATED:
            self._request_activation()
        self.mailbox.put_nowait(Envelope(Kind.CAST, msg, None, trio.current_time()), Delivery.CAST)

    async def send(self, msg: Any) -> None:
        if self.status is Status.PASSIVATED:
            self._request_activation()
        await self.mailbox.put(Envelope(Kind.CAST, msg, None, trio.current_time()), Delivery.SEND)

    def post_call(self, msg: Any, reply: Reply) -> None:
        """Queue a call without waiting (a full BLOCK mailbox raises ``MailboxFull`` here)."""
        if self.status is Status.PASSIVATED:
            self._request_activation()
        self.mailbox.put_nowait(Envelope(Kind.CALL, msg, reply, trio.current_time()), Delivery.CALL)

    def offer_call(self, msg: Any, reply: Reply) -> bool:
        """Queue a call unless a BLOCK mailbox would have to wait (``False``); other
        policies raise ``MailboxFull`` or evict as their table says."""
        if self.status is Status.PASSIVATED:
            self._request_activation()
        env = Envelope(Kind.CALL, msg, reply, trio.current_time())
        return self.mailbox.offer(env, Delivery.CALL)

    async def put_call(self, msg: Any, reply: Reply) -> None:
        if not self._call_waits:
            self.post_call(msg, reply)
            return
        if self.status is Status.PASSIVATED:
            self._request_activation()
        env = Envelope(Kind.CALL, msg, reply, trio.current_time())
        # The caller parks for its reply next: only a full mailbox needs to wait here.
        if not self.mailbox.offer(env, Delivery.CALL):
            await self.mailbox.put(env, Delivery.CALL)

    def post_info(self, msg: Any) -> None:
        self.mailbox.put_unbounded(Envelope(Kind.INFO, msg, None, trio.current_time()))

    def post_system(self, msg: Any) -> None:
        self.mailbox.put_system(Envelope(Kind.SYSTEM, msg, None, trio.current_time()))

    def _request_activation(self) -> None:
        if not self.activation_pending and self.parent is not None:
            self.activation_pending = True
            self.parent.post_system(Activate(self))

    # -- one incarnation -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[BaseException | None]) -> None:
        """Run one incarnation. Reports ``started(None)``, or ``started(error)`` if it never got
        going (init raised, or it was killed first)."""
        self.incarnation += 1
        incarnation = self.incarnation
        self.status = Status.STARTING
        self._stop_reason = None
        self._by_parent = False
        self.exited = trio.Event()
        self.task = current_task()
        self.started_at = self.last_activity = trio.current_time()
        self._started = False
        exit: Exit | None = None
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                exit = await self._live(task_status)
            if scope.cancelled_caught:
                exit = KILLED
            if not self._started:
                task_status.started(ActorStopped(self.address, "stopped before it started"))
                exit = None
        finally:
            self._finish(incarnation, exit)

    def _answer_starter(
        self, task_status: trio.TaskStatus[Any], error: BaseException | None
    ) -> None:
        self._started = True
        task_status.started(error)

    async def _live(self, task_status: trio.TaskStatus[Any]) -> Exit | None:
        try:
            actor = self.spec.factory()
            actor._cell = self
        except Exception as exc:
            self._answer_starter(task_status, exc)
            return None
        self.actor = actor
        self.kind = type(actor).__qualname__
        if not actor.linked_tasks:
            return await self._init_and_loop(actor, task_status)
        exit: Exit | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                exit = await self._init_and_loop(actor, task_status)
                nursery.cancel_scope.cancel()
        except* Exception as group:
            error = group.exceptions[0] if len(group.exceptions) == 1 else group
            if not self._started:
                self._answer_starter(task_status, error)
                exit = None
            else:
                exit = Exit(ExitKind.CRASHED, error)
                self._log_crash(error)
                await self._terminate(actor, exit)
        finally:
            self._nursery = None
        return exit

    async def _init_and_loop(self, actor: Actor, task_status: trio.TaskStatus[Any]) -> Exit | None:
        try:
            await actor.init()
        except Exception as exc:
            self._answer_starter(task_status, exc)
            return None
        self.status = Status.STOPPING if self._by_parent else Status.RUNNING
        self._answer_starter(task_status, None)
        exit = await self._loop(actor)
        await self._terminate(actor, exit)
        return exit

    async def _loop(self, actor: Actor) -> Exit:
        mailbox = self.mailbox
        incarnation = self.incarnation
        budget = 0
        while True:
            # Messages already queued are taken without a trip through the scheduler, up to
            # RECEIVE_BUDGET in a row; then (or when the mailbox is empty) a real checkpoint.
            env = mailbox.get_nowait() if budget else None
            if env is None:
                env = await mailbox.get()
                budget = RECEIVE_BUDGET
            else:
                budget -= 1
            kind = env.kind
            msg = env.msg
            if kind >= Kind.INFO:
                signal = type(msg)
                if signal is Stop:
                    if msg.incarnation == incarnation:
                        reason: Exit = msg.reason
                        return reason
                    continue
                if signal is TimerFired:
                    if msg.incarnation != incarnation:
                        continue  # timers die with the incarnation that set them
                    msg = msg.msg
            now = trio.current_time()
            self.current = env
            self.current_since = now
            reply = env.reply
            settled = reply is None
            try:
                if kind is Kind.CALL:
                    assert reply is not None
                    result = await actor.handle_call(msg, reply)
                    settled = True
                    if result is not NOREPLY and not reply.send(result) and reply.abandoned:
                        self.late_replies += 1
                elif kind is Kind.CAST:
                    await actor.handle_cast(msg)
                elif kind is Kind.INFO:
                    await actor.handle_info(msg)
                else:
                    await actor.handle_system(msg)
            except Exception as exc:
                if reply is not None:
                    settled = True
                    if not reply.fail(ActorCrashed(self.address, exc)) and reply.abandoned:
                        self.late_replies += 1
                self._log_crash(exc)
                return Exit(ExitKind.CRASHED, exc)
            finally:
                self.current = None
                if not settled:
                    assert reply is not None
                    reply.fail(ActorStopped(self.address, "killed while handling this call"))
            self.last_activity = now
            if self._stop_reason is not None:
                # The Stop signal that asked for this may still be queued: it is spent.
                mailbox.discard_system(lambda m: type(m) is Stop)
                return self._stop_reason

    async def _terminate(self, actor: Actor, exit: Exit) -> None:
        with trio.move_on_after(actor.terminate_timeout) as scope:
            try:
                await actor.terminate(exit)
            except Exception as exc:
                log.warning("actor.terminate_failed", address=str(self.address), error=repr(exc))
        if scope.cancelled_caught:
            log.warning(
                "actor.terminate_timeout",
                address=str(self.address),
                timeout=actor.terminate_timeout,
            )

    def _log_crash(self, exc: BaseException) -> None:
        log.error(
            "actor.crashed",
            address=str(self.address),
            kind=self.kind,
            incarnation=self.incarnation,
            error=repr(exc),
            exc_info=exc,
        )

    def _finish(self, incarnation: int, exit: Exit | None) -> None:
        actor = self.actor
        self.task = None
        self.scope = None
        self.actor = None
        self.current = None
        if actor is not None:
            actor._after_exit()
        if exit is not None:
            self.last_exit = exit
            self.last_exit_at = time.time()
            if self.started_at is not None:
                self.last_uptime = trio.current_time() - self.started_at
        self.status = Status.EXITED
        self.exited.set()
        if exit is None or self._by_parent:
            return
        if self.parent is not None:
            self.parent.post_system(ChildExited(self, incarnation, exit))
        else:
            self.system._root_exited(exit)

    # -- control from the supervisor or the actor itself ---------------------------

    async def shutdown(self, reason: Exit, grace: float) -> None:
        """Stop the running incarnation: finish the current message, ``terminate``, exit;

        cancel it if that takes longer than ``grace`` seconds. Returns once it is gone.
        """
        if self.task is None:
            return
        self._by_parent = True
        self.status = Status.STOPPING
        self._stop_reason = reason
        exited = self.exited
        if grace > 0:
            self.post_system(Stop(self.incarnation, reason))
            with trio.move_on_after(grace):
                await exited.wait()
        if not exited.is_set():
            if self.scope is not None:
                self.scope.cancel()
            await exited.wait()

    def stop_self(self, reason: Exit | None) -> None:
        reason = reason if reason is not None else Exit(ExitKind.NORMAL)
        self._stop_reason = reason
        self.post_system(Stop(self.incarnation, reason))

    def passivate_self(self) -> None:
        self.stop_self(PASSIVATED)

    def close(self, reason: str) -> None:
        """Gone for good: refuse new mail and fail queued calls."""
        self.status = Status.STOPPED
        discarded = self.mailbox.close(reason)
        if discarded:
            log.warning(
                "actor.mail_discarded", address=str(self.address), count=discarded, reason=reason
            )

    def send_after(self, delay: float, msg: Any, *, system: bool = False) -> Timer:
        incarnation = self.incarnation

        def deliver(m: Any) -> None:
            if self.incarnation != incarnation or self.task is None or self.mailbox.closed:
                return
            if system:
                self.post_system(TimerFired(incarnation, m))
            else:
                self.post_info(TimerFired(incarnation, m))

        return self.system.timers.call_at(trio.current_time() + delay, deliver, msg)

    def start_linked(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError(f"{type(self.actor).__name__} needs linked_tasks = True")
        self._nursery.start_soon(fn, *args)

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError(f"{self.address} has no nursery")
        return self._nursery

    # -- ops -----------------------------------------------------------------------

    def snapshot(self) -> ActorSnapshot:
        now = trio.current_time()
        actor = self.actor
        state: dict[str, Any] = {}
        if actor is not None:
            try:
                state = actor.snapshot()
            except Exception as exc:
                state = {"snapshot_error": repr(exc)}
        current = self.current
        children = actor.child_count() if actor is not None else None
        return ActorSnapshot(
            address=str(self.address),
            kind=self.kind,
            status=self.status.value,
            restart=self.spec.restart.value,
            incarnation=self.incarnation,
            restarts=self.restarts,
            last_exit=self.last_exit.describe() if self.last_exit else None,
            last_exit_at=self.last_exit_at,
            uptime_s=now - self.started_at
            if self.started_at is not None and self.task is not None
            else None,
            mailbox=self.mailbox.statistics(),
            handling=describe(current.msg) if current is not None else None,
            handling_for_s=now - self.current_since if current is not None else None,
            late_replies=self.late_replies,
            supervisor=children is not None,
            children=children,
            state=state,
        )

    def __repr__(self) -> str:
        return f"<ActorCell {self.address} {self.status.value} #{self.incarnation}>"
