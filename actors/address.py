"""Actor addresses: stable, path-like names such as ``stations/s001/pumps/p03``.

An address names a place in the supervision tree, not an incarnation: a restarted
actor keeps its address, so callers never hold stale references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import InvalidAddress

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """An immutable path of segments; ``str(addr)`` is the canonical slash-joined form."""

    parts: tuple[str, ...]
    path: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for part in self.parts:
            if not isinstance(part, str) or not _SEGMENT.fullmatch(part):
                raise InvalidAddress(f"bad address segment {part!r}")
        object.__setattr__(self, "path", "/".join(self.parts))

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``a/b/c``. Empty segments, leading or trailing slashes are rejected;
        ``""`` and ``"/"`` (how the root prints) are the root."""
        if not isinstance(text, str):
            raise InvalidAddress(f"address must be a string, not {type(text).__name__}")
        if text in ("", "/"):
            return ROOT
        return cls(tuple(text.split("/")))

    @property
    def name(self) -> str:
        """The last segment (the child's name under its supervisor)."""
        return self.parts[-1] if self.parts else ""

    @property
    def parent(self) -> Address | None:
        return Address(self.parts[:-1]) if self.parts else None

    @property
    def depth(self) -> int:
        return len(self.parts)

    def child(self, name: str) -> Address:
        """Only the new segment is validated: ``self`` already was."""
        if not isinstance(name, str) or not _SEGMENT.fullmatch(name):
            raise InvalidAddress(f"bad address segment {name!r}")
        child = object.__new__(Address)
        object.__setattr__(child, "parts", (*self.parts, name))
        object.__setattr__(child, "path", f"{self.path}/{name}" if self.parts else name)
        return child

    def __truediv__(self, name: str) -> Address:
        return self.child(name)

    def is_ancestor_of(self, other: Address) -> bool:
        n = len(self.parts)
        return len(other.parts) > n and other.parts[:n] == self.parts

    def __str__(self) -> str:
        return self.path or "/"


ROOT = Address(())
"""The root of the tree: the system's own top supervisor."""

AddressLike = Address | str


def as_address(value: AddressLike) -> Address:
    return value if isinstance(value, Address) else Address.parse(value)
