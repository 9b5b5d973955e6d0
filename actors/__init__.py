"""A supervised-actor runtime on trio, with OTP's semantics.

Knows nothing about fuel, payments or databases. Start here::

    async with actors.open_system([ChildSpec("echo", Echo)]) as system:
        await system.call("echo", "hi")
"""

from .actor import NOREPLY, Actor
from .address import ROOT, Address, AddressLike, as_address
from .dynamic import DynamicSupervisor
from .errors import (
    ActorCrashed,
    ActorError,
    ActorNotFound,
    ActorStopped,
    AlreadyRegistered,
    CallingSelf,
    CallTimeout,
    InvalidAddress,
    MailboxFull,
    StartFailed,
    SupervisorGaveUp,
    UnhandledMessage,
)
from .mailbox import (
    OVERFLOW_ACTIONS,
    Action,
    Delivery,
    Mailbox,
    MailboxConfig,
    MailboxStatistics,
    Overflow,
)
from .policy import (
    RESTART_ON_EXIT,
    Backoff,
    Exit,
    ExitKind,
    Restart,
    RestartWindow,
    Strategy,
    restart_group,
    should_restart,
)
from .registry import Registry
from .reply import Reply
from .snapshot import ActorSnapshot, TreePage
from .spec import ChildSpec, Status
from .supervisor import RestartChild, StartChild, Supervisor, TerminateChild
from .system import ActorSystem, gather, open_system
from .timers import Timer

__all__ = [
    "NOREPLY",
    "OVERFLOW_ACTIONS",
    "RESTART_ON_EXIT",
    "ROOT",
    "Action",
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorNotFound",
    "ActorSnapshot",
    "ActorStopped",
    "ActorSystem",
    "Address",
    "AddressLike",
    "AlreadyRegistered",
    "Backoff",
    "CallTimeout",
    "CallingSelf",
    "ChildSpec",
    "Delivery",
    "DynamicSupervisor",
    "Exit",
    "ExitKind",
    "InvalidAddress",
    "Mailbox",
    "MailboxConfig",
    "MailboxFull",
    "MailboxStatistics",
    "Overflow",
    "Registry",
    "Reply",
    "Restart",
    "RestartChild",
    "RestartWindow",
    "StartChild",
    "StartFailed",
    "Status",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "TerminateChild",
    "Timer",
    "TreePage",
    "UnhandledMessage",
    "as_address",
    "gather",
    "open_system",
    "restart_group",
    "should_restart",
]
