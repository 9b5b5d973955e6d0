"""DART line frames, sans-IO: bytes in, frames out, and back (``../shared/specs/dart.md``).

Every frame starts with the pump's address (0x50-0x6F) and a control byte whose high
nibble is the kind and low nibble the block sequence number, and ends with ``FA``.
DATA frames carry transactions and a CRC-16/ARC (low byte first) over everything from
the address to the last data byte; inside data and CRC, a ``10`` is stuffed before any
``FA`` so that the first unescaped ``FA`` always ends the frame.

:class:`FrameDecoder` cuts a byte stream into frames and reports what it cannot use as
:class:`BadFrame` events (bad CRC, bad stuffing, unknown control byte, a frame cut short
by line silence): a parser error is an event, never an exception, so neither the master
nor the simulated pump dies of noise on the line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

ETX: Final = 0x03
SF: Final = 0xFA  # stop flag
DLE: Final = 0x10  # stuffed before an FA inside data or CRC
MIN_ADDRESS: Final = 0x50
MAX_ADDRESS: Final = 0x6F
MAX_FRAME: Final = 512  # no DART frame of this subset comes near it


class Kind(enum.IntEnum):
    """The control byte's high nibble."""

    POLL = 0x2
    DATA = 0x3
    NAK = 0x5
    EOT = 0x7
    ACK = 0xC
    ACKPOLL = 0xE


class DartFrameError(ValueError):
    """A frame that cannot be built (bad address, sequence number or payload)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``seq`` is the block sequence number (0 for POLL); ``data`` is the
    transactions of a DATA frame, unstuffed and without CRC, ETX and SF."""

    address: int
    kind: Kind
    seq: int = 0
    data: bytes = b""

    def __post_init__(self) -> None:
        if not MIN_ADDRESS <= self.address <= MAX_ADDRESS:
            raise DartFrameError(f"pump address {self.address:#04x} is outside 0x50..0x6F")
        if not 0 <= self.seq <= 0xF:
            raise DartFrameError(f"block sequence number {self.seq} is outside 0..15")
        if (self.kind is Kind.DATA) != bool(self.data):
            raise DartFrameError("DATA frames, and only they, carry transactions")

    def __repr__(self) -> str:
        body = f" {self.data.hex(' ')}" if self.data else ""
        return f"<{self.kind.name} {self.address:#04x}/{self.seq}{body}>"


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Bytes up to an ``FA`` (or cut off by silence) that are not a usable frame."""

    reason: str
    raw: bytes
    address: int | None = None  # when the first byte was a plausible address


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC: reflected polynomial 0xA001, initial value 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def stuff(data: bytes) -> bytes:
    return data.replace(b"\xfa", b"\x10\xfa")


def encode(frame: Frame) -> bytes:
    head = bytes([frame.address, (frame.kind << 4) | frame.seq])
    if frame.kind is not Kind.DATA:
        return head + bytes([SF])
    crc = crc16_arc(head + frame.data)
    return head + stuff(frame.data + crc.to_bytes(2, "little")) + bytes([ETX, SF])


def poll(address: int) -> Frame:
    return Frame(address, Kind.POLL)


def data(address: int, seq: int, payload: bytes) -> Frame:
    return Frame(address, Kind.DATA, seq, payload)


_KINDS: Final = {int(k): k for k in Kind}


def decode_one(raw: bytes) -> Frame | BadFrame:
    """One frame's bytes, ending with its unescaped ``FA``."""
    if len(raw) < 3 or raw[-1] != SF:
        return BadFrame("truncated frame", raw)
    address = raw[0]
    if not MIN_ADDRESS <= address <= MAX_ADDRESS:
        return BadFrame(f"address {address:#04x} is outside 0x50..0x6F", raw)
    kind = _KINDS.get(raw[1] >> 4)
    seq = raw[1] & 0xF
    if kind is None:
        return BadFrame(f"unknown control byte {raw[1]:#04x}", raw, address)
    if kind is not Kind.DATA:
        if len(raw) != 3:
            return BadFrame(f"{kind.name} frame of {len(raw)} bytes", raw, address)
        if kind is Kind.POLL and seq:
            return BadFrame(f"POLL with sequence number {seq}", raw, address)
        return Frame(address, kind, seq)
    body = raw[2:-1]
    if len(body) < 3 or body[-1] != ETX:
        return BadFrame("DATA frame without CRC and ETX", raw, address)
    unstuffed = bytearray()
    i, end = 0, len(body) - 1
    while i < end:
        byte = body[i]
        if byte == DLE and i + 1 < end and body[i + 1] == SF:
            i += 1
            byte = SF
        elif byte == SF:  # cannot happen: an unescaped FA ends the frame
            return BadFrame("unescaped FA inside a DATA frame", raw, address)
        unstuffed.append(byte)
        i += 1
    if len(unstuffed) < 3:
        return BadFrame("DATA frame without transactions", raw, address)
    payload, crc = bytes(unstuffed[:-2]), int.from_bytes(unstuffed[-2:], "little")
    expected = crc16_arc(raw[:2] + payload)
    if crc != expected:
        return BadFrame(f"CRC {crc:#06x}, expected {expected:#06x}", raw, address)
    return Frame(address, kind, seq, payload)


class FrameDecoder:
    """Cuts a byte stream into frames at each unescaped ``FA``.

    The line owner calls :meth:`silence` when the line has been quiet long enough to end
    a reply (DART: ~50 ms): whatever is buffered then can never become a frame and is
    reported as truncated. A frame longer than ``MAX_FRAME`` is dropped as noise.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._escaped = False  # the previous byte was a DLE inside a DATA frame
        self.dropped_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Frame | BadFrame]:
        out: list[Frame | BadFrame] = []
        buffer = self._buffer
        for byte in chunk:
            buffer.append(byte)
            if byte == SF and not self._escaped:
                event = decode_one(bytes(buffer))
                if isinstance(event, BadFrame):
                    self.dropped_bytes += len(buffer)
                out.append(event)
                buffer.clear()
            elif len(buffer) > MAX_FRAME:
                out.append(BadFrame("frame too long", bytes(buffer[:16])))
                self.dropped_bytes += len(buffer)
                buffer.clear()
            # A DLE escapes the next FA only inside a DATA frame's body.
            self._escaped = byte == DLE and len(buffer) > 2 and (buffer[1] >> 4) == Kind.DATA
        return out

    def silence(self) -> BadFrame | None:
        """The line went quiet: a partial frame will never be completed."""
        if not self._buffer:
            return None
        raw = bytes(self._buffer)
        self.dropped_bytes += len(raw)
        self._buffer.clear()
        self._escaped = False
        return BadFrame("frame cut short by line silence", raw)
