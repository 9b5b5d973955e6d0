"""The runtime's typed errors.

Callers branch on these, so each names one situation. They all derive from
:class:`ActorError`; a few also derive from the built-in a caller would reach for
first (``LookupError`` for an unknown name, ``TimeoutError`` for a call timeout).
"""

from __future__ import annotations

from typing import Any


class ActorError(Exception):
    """Base of every error the actor runtime raises."""


class InvalidAddress(ActorError, ValueError):
    """A string that is not a well-formed actor address."""


class ActorNotFound(ActorError, LookupError):
    """No actor is registered under this address."""

    def __init__(self, address: object) -> None:
        super().__init__(f"no actor at {address}")
        self.address = str(address)


class AlreadyRegistered(ActorError):
    """Another actor already holds this address."""

    def __init__(self, address: object) -> None:
        super().__init__(f"an actor is already registered at {address}")
        self.address = str(address)


class MailboxFull(ActorError):
    """The target's mailbox is at capacity and its overflow policy refused the message,

    or a message already queued was evicted by the drop-oldest policy (its caller gets this).
    """

    def __init__(self, address: object, detail: str = "mailbox full") -> None:
        super().__init__(f"{address}: {detail}")
        self.address = str(address)


class ActorStopped(ActorError):
    """The target stopped (or is stopping for good) before it handled the message."""

    def __init__(self, address: object, detail: str = "actor stopped") -> None:
        super().__init__(f"{address}: {detail}")
        self.address = str(address)


class CallTimeout(ActorError, TimeoutError):
    """No reply within the caller's timeout. The target may still handle the message."""

    def __init__(self, address: object, timeout: float) -> None:
        super().__init__(f"no reply from {address} within {timeout:g}s")
        self.address = str(address)
        self.timeout = timeout


class CallingSelf(ActorError):
    """An actor called its own address from its own loop, which can only deadlock."""

    def __init__(self, address: object) -> None:
        super().__init__(f"{address} called itself")
        self.address = str(address)


class ActorCrashed(ActorError):
    """The target crashed while handling this caller's message; ``cause`` is why."""

    def __init__(self, address: object, cause: BaseException) -> None:
        super().__init__(f"{address} crashed: {cause!r}")
        self.address = str(address)
        self.cause = cause
        self.__cause__ = cause


class UnhandledMessage(ActorError):
    """An actor received a message its hooks do not handle (a programming error: it crashes)."""

    def __init__(self, kind: str, msg: Any) -> None:
        super().__init__(f"unhandled {kind}: {msg!r}")
        self.msg = msg


class StartFailed(ActorError):
    """A child's ``init`` raised, so it was never reported started."""

    def __init__(self, address: object, cause: BaseException) -> None:
        super().__init__(f"{address} failed to start: {cause!r}")
        self.address = str(address)
        self.cause = cause
        self.__cause__ = cause


class SupervisorGaveUp(ActorError):
    """A supervisor exceeded its restart intensity, stopped its children, and exited.

    Raised to its own parent as its exit reason; at the top of the tree it leaves
    :func:`actors.open_system` so the process can exit.
    """

    def __init__(
        self, address: object, intensity: int, period: float, last: BaseException | None
    ) -> None:
        super().__init__(
            f"{address or '/'}: more than {intensity} restarts in {period:g}s; last exit: {last!r}"
        )
        self.address = str(address)
        self.intensity = intensity
        self.period = period
        self.last = last
        if last is not None:
            self.__cause__ = last
