"""Name resolution: address -> the actor cell that lives there.

Keyed by the canonical path string so the hot path (``call("a/b", ...)``) is one
dict lookup without parsing; a miss parses the name to tell a malformed address
(``InvalidAddress``) from an unknown one (``ActorNotFound``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .address import Address, AddressLike
from .errors import ActorNotFound, AlreadyRegistered

if TYPE_CHECKING:
    from .cell import ActorCell


class Registry:
    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[str, ActorCell] = {}

    def register(self, cell: ActorCell) -> None:
        key = cell.address.path
        if key in self._cells:
            raise AlreadyRegistered(cell.address)
        self._cells[key] = cell

    def unregister(self, cell: ActorCell) -> None:
        key = cell.address.path
        if self._cells.get(key) is cell:
            del self._cells[key]

    def lookup(self, target: AddressLike) -> ActorCell | None:
        return self._cells.get(target if isinstance(target, str) else target.path)

    def resolve(self, target: AddressLike) -> ActorCell:
        cell = self._cells.get(target if isinstance(target, str) else target.path)
        if cell is None:
            if isinstance(target, str):
                target = Address.parse(target)  # InvalidAddress, or its canonical form
                cell = self._cells.get(target.path)
            if cell is None:
                raise ActorNotFound(target)
        return cell

    def __contains__(self, target: AddressLike) -> bool:
        return self.lookup(target) is not None

    def __len__(self) -> int:
        return len(self._cells)

    def addresses(self, prefix: AddressLike | None = None) -> list[str]:
        """Registered addresses (sorted), optionally only those under ``prefix``."""
        if prefix is None:
            return sorted(self._cells)
        base = prefix if isinstance(prefix, str) else prefix.path
        head = base + "/"
        return sorted(k for k in self._cells if k == base or k.startswith(head))
