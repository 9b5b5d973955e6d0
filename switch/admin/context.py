"""What the switch's admin commands work on: the running switch, seen through a narrow door.

The commands need the actor system, the database, the order service and a few process-level
controls (drain, in-flight count). :class:`ProcessControl` is that door, so the commands can
be driven by the real :class:`switch.server.SwitchProcess` and by nothing else that would
have to fake a whole switch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Protocol

from actors import ActorSystem
from switch.config import SwitchConfig
from switch.orders import OrderService
from switch.routing import ChannelPolicy, Router
from switch.store import Database

__all__ = ["AdminContext", "ProcessControl", "operator"]


class ProcessControl(Protocol):
    """The process-level controls the admin socket needs from the switch process."""

    @property
    def draining(self) -> bool: ...

    def drain(self, on: bool = True) -> None: ...

    def in_flight_orders(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AdminContext:
    config: SwitchConfig
    system: ActorSystem
    db: Database
    service: OrderService
    router: Router
    process: ProcessControl
    http_url: str
    policies: dict[str, ChannelPolicy] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def build(
        cls,
        config: SwitchConfig,
        system: ActorSystem,
        db: Database,
        service: OrderService,
        router: Router,
        process: ProcessControl,
        http_url: str,
    ) -> AdminContext:
        policies = {
            e.config.name: ChannelPolicy.from_mapping(e.config.name, e.config.provider, e.routing)
            for e in config.channels
        }
        return cls(config, system, db, service, router, process, http_url, policies)


def operator(uid: int) -> str:
    """The audit log's who for an operator on the admin socket (the schema's ``uid:1000``)."""
    return f"uid:{uid}"
