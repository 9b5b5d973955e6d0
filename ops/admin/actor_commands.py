"""Admin commands over any actor system: ``tree``, ``actor`` and ``restart``.

They know nothing about fuel: the switch adds its own commands beside these. ``tree``
is paged (at most 1,000 children a request) because a station chain has thousands of
pumps and orders; a client walks the pages with further requests, and the event loop
runs everything else between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from actors import (
    ROOT,
    ActorNotFound,
    ActorSystem,
    CallTimeout,
    InvalidAddress,
    Supervisor,
    as_address,
)

from .commands import Command, Param
from .protocol import BadArgsError, Caller, NotFoundError, UnavailableError

__all__ = ["MAX_TREE_LIMIT", "actor_commands"]

MAX_TREE_LIMIT: Final = 1000


def actor_commands(system: ActorSystem) -> list[Command]:
    async def tree(args: Mapping[str, Any], caller: Caller) -> Any:
        offset, limit = args["offset"], args["limit"]
        if offset < 0:
            raise BadArgsError("argument 'offset' must be >= 0")
        if not 1 <= limit <= MAX_TREE_LIMIT:
            raise BadArgsError(f"argument 'limit' must be within 1..{MAX_TREE_LIMIT}")
        with _lookup_errors("supervisor"):
            page = system.tree_page(args["supervisor"], offset=offset, limit=limit)
        return page.to_dict()

    async def actor(args: Mapping[str, Any], caller: Caller) -> Any:
        with _lookup_errors("address"):
            return system.snapshot(args["address"]).to_dict()

    async def restart(args: Mapping[str, Any], caller: Caller) -> Any:
        with _lookup_errors("address"):
            address = as_address(args["address"])
            if address == ROOT:
                raise BadArgsError("the root supervisor cannot be restarted")
            system.registry.resolve(address)  # not found before a supervisor is bothered
            parent = address.parent or ROOT
            if not isinstance(system.registry.resolve(parent).actor, Supervisor):
                raise NotFoundError(f"{parent} is not a supervisor")
            restarted = await system.restart_child(parent, address.name)
            return {
                "address": str(restarted),
                "incarnation": system.snapshot(restarted).incarnation,
            }

    return [
        Command(
            "tree",
            tree,
            (
                Param("supervisor", str, default="", help="address of a supervisor; '' = root"),
                Param("offset", int, default=0, help="first child of the page"),
                Param("limit", int, default=200, help=f"children per page, 1..{MAX_TREE_LIMIT}"),
            ),
            help="a supervisor and one page of its children",
        ),
        Command(
            "actor",
            actor,
            (Param("address", str, required=True, help="e.g. stations/s001/p03"),),
            help="one actor's snapshot: status, mailbox, restarts, what it is handling",
        ),
        Command(
            "restart",
            restart,
            (Param("address", str, required=True, help="the actor to stop and start again"),),
            action=True,
            help="restart one actor through its supervisor (not counted as a crash)",
        ),
    ]


@contextmanager
def _lookup_errors(arg: str) -> Iterator[None]:
    """The runtime's lookup errors as admin errors naming the argument."""
    try:
        yield
    except InvalidAddress as exc:
        raise BadArgsError(f"argument {arg!r}: {exc}") from None
    except ActorNotFound as exc:
        raise NotFoundError(str(exc)) from None
    except CallTimeout as exc:
        raise UnavailableError(str(exc)) from None
