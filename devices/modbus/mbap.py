"""The sans-IO core of Modbus TCP: request frames out, reply events in, transaction ids.

Nothing here does I/O or knows about trio, so the framing rules are tested by feeding bytes.
pymodbus's :class:`FramerSocket` builds and splits the frames and its decoder parses the
PDUs, but its framer is written for a peer it trusts: a header with a non-zero protocol id
makes it "wait for more data" forever, which would wedge the connection on the first burst
of garbage. So the header is checked here first, and bytes that cannot start a frame are
dropped until one could (hunting), counted as one frame error per run.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from .pdu import FunctionCode, Reply, Request, decode_reply, to_pymodbus

HEADER_SIZE: Final = 7  # transaction id, protocol id, length, unit id
MIN_LENGTH: Final = 3  # the length field counts the unit id, the function code and >= 1 byte
MAX_LENGTH: Final = 254  # unit id + the largest PDU (253 bytes)
MAX_TRANSACTION_ID: Final = 0xFFFF
_READ_CACHE_SIZE: Final = 4096  # distinct read requests kept framed (a station has <= 247 units)
_FUNCTIONS: Final = frozenset(int(f) for f in FunctionCode)


@dataclass(frozen=True, slots=True)
class MbapReply:
    """A well-formed reply frame."""

    transaction_id: int
    reply: Reply


@dataclass(frozen=True, slots=True)
class MbapBadPdu:
    """A frame with a sound header whose PDU pymodbus cannot decode."""

    transaction_id: int
    unit: int


@dataclass(frozen=True, slots=True)
class MbapGarbage:
    """The start of a run of bytes that cannot begin a frame (further bytes of the run
    are dropped silently and show only in :attr:`MbapCodec.dropped_bytes`)."""

    reason: str


MbapEvent = MbapReply | MbapBadPdu | MbapGarbage


@dataclass(frozen=True, slots=True)
class MbapFrame:
    """One frame cut from the stream, its PDU still undecoded."""

    transaction_id: int
    unit: int
    pdu: bytes


@dataclass(frozen=True, slots=True)
class MbapSkipped:
    """The start of a run of bytes that cannot begin a frame."""

    reason: str
    count: int


class MbapSplitter:
    """Cuts one byte stream into MBAP frames, on either side of the wire.

    Checks each header before pymodbus's framer sees it, and drops bytes that cannot
    start a frame until one could (hunting); each run of such bytes is reported once.
    ``function_mask`` is 0x7F on the client side, where replies may carry the
    exception bit on their function code.
    """

    def __init__(self, framer: FramerSocket, *, function_mask: int) -> None:
        self.framer = framer
        self._function_mask = function_mask
        self._buffer = bytearray()
        self._hunting = False
        self.dropped_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
        self._hunting = False

    def feed(self, data: bytes) -> list[MbapFrame | MbapSkipped]:
        self._buffer += data
        out: list[MbapFrame | MbapSkipped] = []
        while self._buffer:
            skipped, reason = skip_to_header(
                self._buffer, hunting=self._hunting, function_mask=self._function_mask
            )
            if skipped:
                del self._buffer[:skipped]
                self.dropped_bytes += skipped
                if not self._hunting:
                    self._hunting = True
                    out.append(MbapSkipped(reason, skipped))
            if len(self._buffer) < HEADER_SIZE + 1:
                break
            used, unit, tid, pdu = self.framer.decode(bytes(self._buffer))
            if not used:
                break  # a plausible header whose frame has not fully arrived yet
            del self._buffer[:used]
            self._hunting = False
            out.append(MbapFrame(tid, unit, pdu))
        return out


class MbapCodec:
    """Client-side MBAP framing over one byte stream. ``reset`` it for each new connection."""

    def __init__(self) -> None:
        self._framer = FramerSocket(DecodePDU(is_server=False))
        self._splitter = MbapSplitter(self._framer, function_mask=0x7F)
        self._reads: dict[Request, bytes] = {}  # framed with transaction id 0

    @property
    def dropped_bytes(self) -> int:
        return self._splitter.dropped_bytes

    @property
    def buffered(self) -> int:
        return self._splitter.buffered

    def encode(self, transaction_id: int, request: Request) -> bytes:
        """The request's frame. Reads are framed once per distinct request and then only
        get their transaction id (the frame's first two bytes) patched in: a switch sends
        the same status read to each pump every second."""
        if not request.is_read:
            return self._framer.buildFrame(to_pymodbus(request, transaction_id))
        frame = self._reads.get(request)
        if frame is None:
            if len(self._reads) >= _READ_CACHE_SIZE:
                self._reads.clear()
            frame = self._reads[request] = self._framer.buildFrame(to_pymodbus(request, 0))
        return transaction_id.to_bytes(2, "big") + frame[2:]

    def reset(self) -> None:
        self._splitter.reset()

    def feed(self, data: bytes) -> list[MbapEvent]:
        """Take bytes from the stream; return the events they complete, in order."""
        events: list[MbapEvent] = []
        for item in self._splitter.feed(data):
            if isinstance(item, MbapSkipped):
                events.append(MbapGarbage(item.reason))
                continue
            reply = decode_reply(self._framer.decoder, item.unit, item.pdu)
            tid = item.transaction_id
            events.append(MbapBadPdu(tid, item.unit) if reply is None else MbapReply(tid, reply))
        return events


T = TypeVar("T")


class TransactionTable(Generic[T]):
    """Transaction ids of the requests in flight, and of those recently abandoned.

    Ids run 1..65535 and wrap, skipping ids still pending or recently abandoned, so a late
    reply to a timed-out request is recognised as late instead of answering a new request.
    (0 is never used: some peers, pymodbus among them, read tid 0 as "any".)
    """

    def __init__(self, remember_abandoned: int = 1024) -> None:
        self._pending: dict[int, T] = {}
        self._abandoned: OrderedDict[int, None] = OrderedDict()
        self._remember = remember_abandoned
        self._next = 1

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, waiter: T) -> int:
        if len(self._pending) >= MAX_TRANSACTION_ID:
            raise RuntimeError("every transaction id is in use")
        while True:
            tid, self._next = self._next, self._next % MAX_TRANSACTION_ID + 1
            if tid not in self._pending and tid not in self._abandoned:
                self._pending[tid] = waiter
                return tid
            if len(self._pending) + len(self._abandoned) >= MAX_TRANSACTION_ID:
                self._abandoned.popitem(last=False)

    def get(self, tid: int) -> T | None:
        return self._pending.get(tid)

    def pop(self, tid: int) -> T | None:
        """The waiter a reply with this id answers, removed from the table; None if none."""
        return self._pending.pop(tid, None)

    def abandon(self, tid: int) -> None:
        """Forget a waiter that gave up; a reply with its id is then counted as late."""
        if self._pending.pop(tid, None) is not None:
            self._abandoned[tid] = None
            while len(self._abandoned) > self._remember:
                self._abandoned.popitem(last=False)

    def was_abandoned(self, tid: int) -> bool:
        """True (once) if ``tid`` belonged to an abandoned request."""
        return self._abandoned.pop(tid, 0) is None

    def drain(self) -> list[T]:
        """Every pending waiter, removed; for a connection that is gone."""
        waiters = list(self._pending.values())
        self._pending.clear()
        self._abandoned.clear()
        return waiters


def skip_to_header(
    buffer: bytearray | bytes, *, hunting: bool, function_mask: int = 0xFF
) -> tuple[int, str]:
    """How many leading bytes cannot start an MBAP frame, and why the first of them cannot.

    Shared by the client's reply decoder and the simulator's request decoder. A tail too
    short to judge is kept: it may be the start of the next frame. While ``hunting`` (after
    garbage), a header must also carry a known function code (masked with
    ``function_mask``): garbage that happens to look like a header would otherwise swallow
    the frames after it.
    """
    first_reason = ""
    for offset in range(len(buffer)):
        reason = _implausible(buffer, offset, hunting, function_mask)
        if reason is None:
            return offset, first_reason
        first_reason = first_reason or reason
    return len(buffer), first_reason


def _implausible(buf: bytearray | bytes, offset: int, hunting: bool, mask: int) -> str | None:
    available = len(buf) - offset
    if available >= 4 and (protocol := int.from_bytes(buf[offset + 2 : offset + 4])) != 0:
        return f"protocol id {protocol}"
    if available >= 6:
        length = int.from_bytes(buf[offset + 4 : offset + 6])
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            return f"length {length}"
    if hunting and available >= 8 and buf[offset + 7] & mask not in _FUNCTIONS:
        return f"function code {buf[offset + 7]}"
    return None
