"""What operators see: plain, serialisable snapshots of actors and pages of the tree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .mailbox import MailboxStatistics


@dataclass(frozen=True, slots=True)
class ActorSnapshot:
    address: str
    kind: str
    status: str
    restart: str
    incarnation: int
    restarts: int
    last_exit: str | None
    last_exit_at: float | None  # wall clock (Unix seconds)
    uptime_s: float | None
    mailbox: MailboxStatistics
    handling: str | None  # the message being handled now
    handling_for_s: float | None  # and for how long: this is how stuck actors are found
    late_replies: int
    supervisor: bool
    children: int | None
    state: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class TreePage:
    """One supervisor and a page of its direct children."""

    supervisor: ActorSnapshot
    children: list[ActorSnapshot]
    offset: int
    total: int
    next_offset: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "supervisor": self.supervisor.to_dict(),
            "children": [c.to_dict() for c in self.children],
            "offset": self.offset,
            "total": self.total,
            "next_offset": self.next_offset,
        }


def describe(msg: Any, limit: int = 120) -> str:
    text = repr(msg)
    return text if len(text) <= limit else text[: limit - 3] + "..."
