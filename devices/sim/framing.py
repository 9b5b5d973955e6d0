"""Server-side Modbus framing for the simulator: request frames in, reply frames out.

Sans-IO, the mirror image of the clients' cores in ``devices.modbus``: pymodbus's
framers (``FramerSocket``, ``FramerRTU``) split and build the frames and its server-side
decoder parses the request PDUs; requests come out as the project's own
:class:`~devices.modbus.pdu.Request` and replies go in as :class:`~devices.modbus.pdu.Reply`.
pymodbus trusts its peer, so both codecs look at a frame's start before handing it over:

* MBAP: a header with a protocol id other than 0 or an impossible length cannot start a
  frame. Such bytes are dropped one at a time until a plausible header shows up
  (hunting) and counted as one garbage run, so a burst of noise costs the requests in it
  and nothing after. While hunting, a header must also carry a function code this
  server implements, or noise that happens to look like a header would swallow the
  frames after it.
* RTU: a frame has no length field; it is tried from each byte that could start one (a
  unit id, then a function code pymodbus can size), and kept only if its CRC holds.
  The trio adapter calls :meth:`RtuServerCodec.flush` when the line goes quiet, which
  drops a partial frame that will never complete.

A frame that is sound but asks for what this server does not do is answered with an
exception, as the Modbus application protocol says: 01 for a function it does not
implement, 03 for a quantity out of range or a body that does not parse (the protocol's
"fault in the structure of the request"), 02 for addresses past 65535.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from devices.modbus.errors import ExceptionCode
from devices.modbus.mbap import MbapSkipped, MbapSplitter
from devices.modbus.pdu import MAX_READ_COUNT, MAX_WRITE_COUNT, FunctionCode, Reply, Request

_FUNCTIONS: Final = frozenset(int(f) for f in FunctionCode)
MAX_RTU_UNIT: Final = 247
MAX_RTU_BUFFER: Final = 1024  # a request is at most 256 bytes; more is noise
_READ_CACHE_SIZE: Final = 4096  # distinct read requests kept decoded per connection


@dataclass(frozen=True, slots=True)
class Incoming:
    """One request frame. ``refusal`` is set (and ``request`` None) when the frame is
    sound but the request cannot be served whatever the unit: answer that exception."""

    transaction_id: int  # 0 on RTU
    unit: int
    function: int
    request: Request | None
    refusal: ExceptionCode | None = None


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that cannot be a request frame, dropped."""

    reason: str
    nbytes: int


FrameEvent = Incoming | Garbage


_READ_REQUEST = struct.Struct(">BHH")  # function, address, count: a read request PDU
_READS: Final = frozenset((FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS))
_READ_REPLY_HEAD = struct.Struct(">HHHBBB")  # MBAP header, function, byte count
_WORDS = [struct.Struct(f">{n}H") for n in range(MAX_READ_COUNT + 1)]


def read_request(unit: int, pdu: bytes) -> Request | None:
    """A well-formed FC 03/04 request PDU as a :class:`Request`; None for anything else.

    The hot path of every poll: the layout is fixed (function, address, count), so it is
    unpacked here with one precompiled struct instead of pymodbus's decoder. Anything
    it does not vouch for (other functions, other lengths, counts or addresses out of
    range) goes the general way, which knows the exceptions to answer.
    """
    if len(pdu) != _READ_REQUEST.size:
        return None
    function, address, count = _READ_REQUEST.unpack(pdu)
    if function not in _READS or not 1 <= count <= MAX_READ_COUNT or address + count > 0x10000:
        return None
    return Request(unit, FunctionCode(function), address, count)


def to_request(decoder: DecodePDU, tid: int, unit: int, pdu: bytes) -> Incoming:
    """A request PDU (function code first) of a sound frame as :class:`Incoming`."""
    if (read := read_request(unit, pdu)) is not None:
        return Incoming(tid, unit, pdu[0], read)
    function = pdu[0]
    if function not in _FUNCTIONS:
        return Incoming(tid, unit, function, None, ExceptionCode.ILLEGAL_FUNCTION)
    try:
        decoded = decoder.decode(pdu)
    except Exception:  # foreign code fed untrusted bytes: any failure means garbage
        decoded = None
    if decoded is None:  # a sound frame (length or CRC vouch for it) with a bad body
        return Incoming(tid, unit, function, None, ExceptionCode.ILLEGAL_VALUE)
    code = FunctionCode(function)
    values: tuple[int, ...] = tuple(decoded.registers)
    if code is FunctionCode.WRITE_SINGLE_REGISTER:
        count, top = 1, 1
    elif code is FunctionCode.WRITE_MULTIPLE_REGISTERS:
        count, top = decoded.count, MAX_WRITE_COUNT
        if getattr(decoded, "byte_count", None) != 2 * count or len(values) != count:
            return Incoming(tid, unit, function, None, ExceptionCode.ILLEGAL_VALUE)
    else:
        count, top, values = decoded.count, MAX_READ_COUNT, ()
    if not 1 <= count <= top:
        return Incoming(tid, unit, function, None, ExceptionCode.ILLEGAL_VALUE)
    if decoded.address + count > 0x10000:
        return Incoming(tid, unit, function, None, ExceptionCode.ILLEGAL_ADDRESS)
    return Incoming(tid, unit, function, Request(unit, code, decoded.address, count, values))


def to_pymodbus_reply(reply: Reply, transaction_id: int = 0) -> ModbusPDU:
    """The pymodbus response PDU for a reply, ready for a framer's ``buildFrame``."""
    if reply.exception_code is not None:
        return ExceptionResponse(reply.function, reply.exception_code, reply.unit, transaction_id)
    function, unit, tid = FunctionCode(reply.function), reply.unit, transaction_id
    registers = list(reply.registers)
    if function is FunctionCode.READ_INPUT_REGISTERS:
        return ReadInputRegistersResponse(dev_id=unit, transaction_id=tid, registers=registers)
    if function is FunctionCode.READ_HOLDING_REGISTERS:
        return ReadHoldingRegistersResponse(dev_id=unit, transaction_id=tid, registers=registers)
    if function is FunctionCode.WRITE_SINGLE_REGISTER:
        return WriteSingleRegisterResponse(
            dev_id=unit, transaction_id=tid, address=reply.address, registers=registers
        )
    return WriteMultipleRegistersResponse(
        dev_id=unit, transaction_id=tid, address=reply.address, count=reply.count
    )


class MbapServerCodec:
    """Server-side MBAP framing over one connection (one codec per connection)."""

    def __init__(self) -> None:
        self._framer = FramerSocket(DecodePDU(is_server=True))
        self._splitter = MbapSplitter(self._framer, function_mask=0xFF)
        self._reads: dict[tuple[int, bytes], Request] = {}  # a poll asks the same each time
        self.garbage_runs = 0

    @property
    def dropped_bytes(self) -> int:
        return self._splitter.dropped_bytes

    @property
    def buffered(self) -> int:
        return self._splitter.buffered

    def encode(self, transaction_id: int, reply: Reply) -> bytes:
        """The reply's frame. A normal read reply (every poll's) is packed here with two
        precompiled structs; a test checks the bytes equal what pymodbus builds, which
        frames everything else."""
        if reply.exception_code is None and reply.function in _READS:
            n = len(reply.registers)
            if 1 <= n <= MAX_READ_COUNT and 0 <= transaction_id <= 0xFFFF:
                try:
                    words = _WORDS[n].pack(*reply.registers)
                except struct.error:
                    pass  # not words: pymodbus's framer decides what to do with them
                else:
                    head = (transaction_id, 0, 3 + 2 * n, reply.unit, reply.function, 2 * n)
                    return _READ_REPLY_HEAD.pack(*head) + words
        return self._framer.buildFrame(to_pymodbus_reply(reply, transaction_id))

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Take bytes from the stream; return the requests (and garbage) they complete."""
        events: list[FrameEvent] = []
        for item in self._splitter.feed(data):
            if isinstance(item, MbapSkipped):
                self.garbage_runs += 1
                events.append(Garbage(item.reason, item.count))
                continue
            key = (item.unit, item.pdu)
            read = self._reads.get(key)
            if read is None and (read := read_request(item.unit, item.pdu)) is not None:
                if len(self._reads) >= _READ_CACHE_SIZE:
                    self._reads.clear()
                self._reads[key] = read
            if read is not None:
                events.append(Incoming(item.transaction_id, item.unit, item.pdu[0], read))
            else:
                decoder = self._framer.decoder
                events.append(to_request(decoder, item.transaction_id, item.unit, item.pdu))
        return events


class RtuServerCodec:
    """Server-side RTU framing for one line: requests to any unit come out; the server
    answers those for its own units and ignores the rest, as a slave on a bus does."""

    def __init__(self) -> None:
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._buffer = bytearray()
        self.garbage_runs = 0
        self.dropped_bytes = 0

    def encode(self, reply: Reply, *, corrupt_crc: bool = False) -> bytes:
        frame = self._framer.buildFrame(to_pymodbus_reply(reply))
        return frame[:-1] + bytes([frame[-1] ^ 0xFF]) if corrupt_crc else frame

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[FrameEvent]:
        self._buffer += data
        events: list[FrameEvent] = []
        while self._buffer:
            start, size, waiting = self._find_frame()
            if size:
                self._drop(start, "bytes before a frame", events)
                frame = bytes(self._buffer[:size])
                del self._buffer[:size]
                decoder = self._framer.decoder
                events.append(to_request(decoder, 0, frame[0], frame[1:-2]))
                continue
            self._drop(len(self._buffer) if waiting is None else waiting, "noise", events)
            break
        if len(self._buffer) > MAX_RTU_BUFFER:
            self._drop(len(self._buffer), "overlong frame", events)
        return events

    def flush(self) -> list[FrameEvent]:
        """The line went quiet: a partial frame will not complete. Drop it."""
        events: list[FrameEvent] = []
        self._drop(len(self._buffer), "incomplete frame", events)
        return events

    def _drop(self, nbytes: int, reason: str, events: list[FrameEvent]) -> None:
        if nbytes:
            del self._buffer[:nbytes]
            self.garbage_runs += 1
            self.dropped_bytes += nbytes
            events.append(Garbage(reason, nbytes))

    def _find_frame(self) -> tuple[int, int, int | None]:
        """(start, size, 0) of the first CRC-valid frame; else (0, 0, w) where w is the
        first offset whose frame is still arriving (None: nothing can start a frame)."""
        buf = bytes(self._buffer)
        waiting: int | None = None
        for start in range(len(buf) - 1):
            if buf[start] > MAX_RTU_UNIT or buf[start + 1] & 0x80:
                continue
            try:
                pdu_class = self._framer.decoder.lookupPduClass(buf[start:])
                size = pdu_class.calculateRtuFrameSize(buf[start:]) if pdu_class else None
            except Exception:  # foreign code fed untrusted bytes: not a frame start
                continue
            if size is None:
                continue
            if not size or len(buf) - start < size:
                waiting = start if waiting is None else waiting
                continue
            body, crc = buf[start : start + size - 2], buf[start + size - 2 : start + size]
            if FramerRTU.check_CRC(body, int.from_bytes(crc, "big")):
                return start, size, 0
        return 0, 0, waiting
