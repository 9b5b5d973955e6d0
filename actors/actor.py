"""The ``Actor`` base class: the hooks a behaviour overrides, and the helpers it may use.

An actor is a plain object whose hooks run one message at a time in its own trio
task, so its state needs no locks. The runtime creates a fresh instance for every
incarnation (the factory in its :class:`~actors.ChildSpec`), which is why recovery
belongs in :meth:`Actor.init`: state is rebuilt from durable storage there, before
the supervisor reports the actor started and before any message is handled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

import structlog

from .address import Address, AddressLike
from .errors import UnhandledMessage
from .policy import Exit
from .reply import Reply
from .timers import Timer

if TYPE_CHECKING:
    from .cell import ActorCell
    from .system import ActorSystem

log = structlog.get_logger("actors")


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


NOREPLY: Final = _NoReply()
"""Return this from ``handle_call`` to reply later through the ``Reply`` it was given."""


class Actor:
    """Subclass and override the hooks you need.

    Class attributes tune the runtime's treatment of the actor:

    * ``terminate_timeout`` bounds :meth:`terminate`;
    * ``linked_tasks`` gives the actor a nursery for :meth:`start_soon` (a linked task
      that raises crashes the actor, and the actor's exit cancels its tasks).
    """

    terminate_timeout: ClassVar[float] = 5.0
    linked_tasks: ClassVar[bool] = False

    _cell: ActorCell

    # -- hooks -----------------------------------------------------------------

    async def init(self) -> None:
        """Recover state. Runs before the actor is reported started; raising fails the start."""

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        """Answer a call: return the reply, or ``NOREPLY`` and use ``reply.send`` later."""
        raise UnhandledMessage("call", msg)

    async def handle_cast(self, msg: Any) -> None:
        raise UnhandledMessage("cast", msg)

    async def handle_info(self, msg: Any) -> None:
        """Timer messages and runtime notices. Unknown ones are logged and ignored, as in OTP."""
        log.warning("actor.unexpected_info", address=str(self.address), msg=repr(msg)[:200])

    async def terminate(self, reason: Exit) -> None:
        """Best-effort cleanup, bounded by ``terminate_timeout``. Never needed for durability:

        it does not run when the actor is killed, nor when the process dies.
        """

    def snapshot(self) -> dict[str, Any]:
        """A cheap, synchronous view of the actor's state for operators."""
        return {}

    # -- runtime internals (overridden by supervisors) -------------------------------

    async def handle_system(self, msg: Any) -> None:
        raise UnhandledMessage("system signal", msg)

    def child_count(self) -> int | None:
        """``None`` for workers; supervisors return how many children they hold."""
        return None

    def _after_exit(self) -> None:
        """Synchronous cleanup that runs however the incarnation ended, even when killed."""

    # -- helpers ---------------------------------------------------------------

    @property
    def address(self) -> Address:
        return self._cell.address

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def incarnation(self) -> int:
        return self._cell.incarnation

    def send_after(self, delay: float, msg: Any) -> Timer:
        """Deliver ``msg`` to this incarnation's ``handle_info`` after ``delay`` seconds."""
        return self._cell.send_after(delay, msg)

    def stop(self, reason: Exit | None = None) -> None:
        """Stop after the current message (a normal exit unless told otherwise)."""
        self._cell.stop_self(reason)

    def passivate(self) -> None:
        """Stop after the current message; a dynamic supervisor restarts it on its next message."""
        self._cell.passivate_self()

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a linked task in the actor's nursery (needs ``linked_tasks = True``)."""
        self._cell.start_linked(fn, *args)

    async def call(self, target: AddressLike, msg: Any, *, timeout: float = 5.0) -> Any:
        return await self._cell.system.call(target, msg, timeout=timeout)

    def cast(self, target: AddressLike, msg: Any) -> None:
        self._cell.system.cast(target, msg)

    async def send(self, target: AddressLike, msg: Any) -> None:
        await self._cell.system.send(target, msg)
