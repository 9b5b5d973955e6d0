"""Child specifications and the statuses a supervised actor moves through."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .address import Address
from .mailbox import MailboxConfig
from .policy import Backoff, Restart

if TYPE_CHECKING:
    from .actor import Actor


class Status(enum.Enum):
    STARTING = "starting"  # init is running
    RUNNING = "running"
    STOPPING = "stopping"  # its supervisor asked it to stop
    EXITED = "exited"  # an incarnation ended; its supervisor has not acted yet
    BACKOFF = "backoff"  # waiting out a restart delay
    PASSIVATED = "passivated"  # stopped while idle; its next message restarts it
    STOPPED = "stopped"  # gone for good; its mailbox is closed


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    ``factory`` builds a fresh actor for every incarnation. ``shutdown`` is the grace
    (seconds) a stopping child gets to finish its current message and run
    ``terminate`` before it is cancelled: ``0`` cancels at once (OTP's brutal_kill),
    ``math.inf`` waits as long as it takes (the usual value for supervisors).
    """

    name: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        Address((self.name,))  # validates the name as an address segment
        if not self.shutdown >= 0:  # also rejects NaN; math.inf means "wait as long as it takes"
            raise ValueError(f"shutdown grace must be >= 0, not {self.shutdown!r}")

    @property
    def kind(self) -> str:
        factory = self.factory
        return getattr(factory, "__qualname__", None) or type(factory).__name__
