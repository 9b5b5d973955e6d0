"""The sans-IO core of Modbus RTU: line settings and timing, request frames out, replies in.

RTU has no length field and no transaction id: a frame ends where the line goes quiet, and
a master has one request outstanding, so the only frame it expects is the reply to it.
pymodbus's :class:`FramerRTU` sizes that frame from its function code and byte count and
checks its CRC; this core decides where the frame starts and turns the framer's results
into one event per reply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from .pdu import Reply, Request, decode_reply, to_pymodbus

RTU_OVERHEAD: Final = 3  # unit id + CRC around the PDU
FAST_SILENCE: Final = 0.00175  # t3.5 is fixed above 19200 baud (Modbus over serial line, 2.5.1.1)


class Parity(enum.Enum):
    """pyserial's parity letters. Modbus RTU's default is even parity."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


@dataclass(frozen=True, slots=True)
class SerialSettings:
    port: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = Parity.EVEN
    stopbits: int = 1

    def __post_init__(self) -> None:
        if self.baudrate <= 0 or self.bytesize not in (7, 8) or self.stopbits not in (1, 2):
            raise ValueError(f"unusable serial settings: {self}")

    @property
    def bits_per_char(self) -> int:
        """Start bit, data bits, parity bit if any, stop bits."""
        return 1 + self.bytesize + (self.parity is not Parity.NONE) + self.stopbits

    @property
    def char_time(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def silence(self) -> float:
        """t3.5: the quiet time that ends a frame, and must precede the next one."""
        return FAST_SILENCE if self.baudrate > 19200 else 3.5 * self.char_time

    def wire_time(self, nbytes: int) -> float:
        return nbytes * self.char_time


@dataclass(frozen=True, slots=True)
class RtuReply:
    reply: Reply


@dataclass(frozen=True, slots=True)
class RtuBadFrame:
    """A complete frame that cannot be used (bad CRC, or a PDU pymodbus cannot decode)."""

    reason: str
    nbytes: int


RtuEvent = RtuReply | RtuBadFrame


class RtuCodec:
    """Client-side RTU framing for one line. :meth:`discard` before each request."""

    def __init__(self) -> None:
        self._framer = FramerRTU(DecodePDU(is_server=False))
        self._buffer = bytearray()

    def encode(self, request: Request) -> bytes:
        return self._framer.buildFrame(to_pymodbus(request))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def discard(self) -> int:
        """Drop whatever was received so far (a late or partial reply); return its size."""
        nbytes = len(self._buffer)
        self._buffer.clear()
        return nbytes

    def feed(self, data: bytes, expected: Request) -> RtuEvent | None:
        """Take bytes from the line; return the reply to ``expected`` once complete, else None.

        pymodbus's framer hunts for a frame start by function code alone and, at the first
        candidate whose CRC fails, drops everything: a glitch byte before a reply from unit 1
        to 4 reads as a function code (01..04 are all valid ones) and costs the whole reply.
        The reply's first two bytes are known, though (the unit, then the function or its
        exception), so frames are tried from each such anchor in turn: a CRC failure at one
        anchor moves on to the next, and a frame still arriving at one waits for more.
        """
        self._buffer += data
        buffered = bytes(self._buffer)
        functions = (expected.function, expected.function | 0x80)
        anchored = False
        for start in range(len(buffered) - 1):
            if buffered[start] != expected.unit or buffered[start + 1] not in functions:
                continue
            anchored = True
            try:
                used, unit, _tid, pdu = self._framer.decode(buffered[start:])
            except Exception:  # foreign code fed untrusted bytes: any failure means garbage
                continue
            if not used:
                return None  # a frame that has not fully arrived yet
            if pdu:
                self._buffer.clear()  # with one request outstanding, the rest is nobody's
                reply = decode_reply(self._framer.decoder, unit, pdu)
                if reply is None:
                    return RtuBadFrame("undecodable PDU", len(buffered))
                return RtuReply(reply)
        if anchored:  # every candidate failed its CRC
            return RtuBadFrame("CRC mismatch", self.discard())
        return None  # nothing that could start the reply yet: noise, or not yet arrived
