"""A register block's field table compiled into one struct format.

The status block is decoded on every poll of every pump, thousands of times a second
in a large switch. Assembling its 32 fields word by word in Python costs some 15 us a
block; packing the 57 registers into bytes and unpacking them with one precompiled
format (16-bit fields as ``H``, 32-bit as ``I``, 64-bit as ``Q``, unused registers
skipped) costs about 2 us, and the field table stays the single description of the map.
Packing also checks that every value is a 16-bit word, which the slow path did by hand.

The simulator answers the same block thousands of times a second, so the layout also
runs the other way (:meth:`Layout.pack`): field values in, registers out, in one pack
and one unpack instead of a dictionary of fields assembled word by word.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .registers import Field

_CODES = {1: "H", 2: "I", 4: "Q"}


class LayoutError(ValueError):
    """Registers that do not fit the layout (wrong count, a value that is not a word)."""


class Layout:
    """``unpack(regs)`` returns the table's fields in table order, as ints."""

    __slots__ = ("_fields", "_pack", "_pack_fields", "_unpack", "_unpack_words", "count", "names")

    def __init__(self, fields: Sequence[Field], start: int, count: int) -> None:
        ordered = sorted(fields, key=lambda f: f.address)
        if [f.name for f in ordered] != [f.name for f in fields]:
            raise ValueError("a layout's fields must be listed in address order")
        parts, at = [">"], start
        for f in fields:
            if f.address < at or f.words not in _CODES:
                raise ValueError(f"field {f.name} overlaps its predecessor or has odd width")
            if f.address > at:
                parts.append(f"{2 * (f.address - at)}x")
            parts.append(_CODES[f.words])
            at = f.address + f.words
        if at > start + count:
            raise ValueError("fields run past the end of the block")
        if at < start + count:
            parts.append(f"{2 * (start + count - at)}x")
        self.count = count
        self.names = tuple(f.name for f in fields)
        words, layout = struct.Struct(f">{count}H"), struct.Struct("".join(parts))
        self._pack, self._unpack_words = words.pack, words.unpack
        self._pack_fields, self._unpack = layout.pack, layout.unpack
        self._fields = tuple(fields)

    def unpack(self, regs: Sequence[int]) -> tuple[int, ...]:
        if len(regs) != self.count:
            raise LayoutError(f"expected {self.count} registers, got {len(regs)}")
        try:
            raw = self._pack(*regs)
        except struct.error:
            bad = next((r for r in regs if not isinstance(r, int) or not 0 <= r <= 0xFFFF), None)
            raise LayoutError(f"register value {bad!r} is not a 16-bit word") from None
        return self._unpack(raw)

    def pack(self, values: Sequence[int]) -> tuple[int, ...]:
        """The registers holding ``values`` (the table's fields in table order; unused
        registers are 0). A value that does not fit its field is a :class:`LayoutError`."""
        try:
            raw = self._pack_fields(*values)
        except struct.error as exc:
            raise LayoutError(f"a value does not fit its field: {exc}") from None
        return self._unpack_words(raw)
