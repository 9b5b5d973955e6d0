"""The DART line master as a sans-IO state machine: which frame goes out next, and what
each reply (or silence) means.

Theory of operation
-------------------
One RS-485 line, up to 32 pumps, one exchange at a time. The trio adapter
(:mod:`devices.dart.line`) asks :meth:`LineMaster.next_exchange` for the next frame,
writes it, collects the reply until the line is quiet (or the reply timeout passes) and
hands it to :meth:`LineMaster.on_reply`; this class decides everything else:

* **Round robin.** Each turn serves one address: its queued command block if any, else a
  POLL. A pump whose DATA block is still unacknowledged is acknowledged first - with
  ACKPOLL when there is nothing to send it (ack and poll in one frame), or a bare ACK
  ahead of the command block (a DATA from the master does not acknowledge the pump's).
* **Sequence numbers.** The master numbers its DATA blocks per pump (0-15, wrapping)
  and waits for ``ACK n``. On NAK or a mismatched ACK it resets n to 0 and resends; on
  silence it resends the same block under the same n, which a pump that executed it
  already acknowledges again without executing it twice. After ``max_tries`` the
  command fails, its outcome unknown.
* **Pump blocks.** A pump repeats a DATA block until it is acknowledged; a block whose
  number equals the last one taken from that pump is a repeat (our ACK was lost) and is
  acknowledged again but not delivered twice.
* **Offline.** ``offline_after`` failed exchanges in a row (silence or garbage) mark the
  pump offline; its queued commands fail at once, and it is still polled on its turn,
  so it comes back online on its first good answer.

Commands are never interleaved mid-exchange: a block stays the current exchange of its
address until acknowledged or failed, and only then does the next queued block start.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from .frames import BadFrame, Frame, Kind
from .transactions import DartCodecError, Transaction, decode_from_pump, encode_block

MAX_PUMPS: Final = 32


class LinkStatus(enum.Enum):
    UNKNOWN = "unknown"  # not answered yet
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Exchange:
    """A frame to write, and whether an answer is expected."""

    address: int
    frame: Frame
    expects_reply: bool
    command: int | None = None  # the command id whose block this is


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PumpData:
    """Transactions a pump sent (delivered once, however often it repeated the block)."""

    address: int
    transactions: tuple[Transaction, ...]


@dataclass(frozen=True, slots=True)
class Answered:
    """The pump answered a poll or a command: it is alive (sent on every good answer)."""

    address: int


@dataclass(frozen=True, slots=True)
class Delivered:
    address: int
    command: int


@dataclass(frozen=True, slots=True)
class Failed:
    address: int
    command: int
    reason: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    address: int
    status: LinkStatus


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A bad frame, a NAK, a reply from the wrong pump: counted and logged, not fatal."""

    address: int
    reason: str


Event = PumpData | Answered | Delivered | Failed | StatusChanged | LineProblem


@dataclass(slots=True)
class _Pump:
    address: int
    status: LinkStatus = LinkStatus.UNKNOWN
    tx_seq: int = 0  # the number of our current (or last) block
    rx_seq: int | None = None  # the number of the last block taken from the pump
    ack_due: int | None = None  # the pump's block number we still owe an ACK for
    queue: deque[tuple[int, bytes]] = field(default_factory=deque)  # (command id, block)
    tries: int = 0  # sends of the head of the queue so far
    failures: int = 0  # failed exchanges in a row
    polls: int = 0
    blocks_in: int = 0
    repeats: int = 0
    naks: int = 0
    resends: int = 0


class LineMaster:
    def __init__(
        self, addresses: Sequence[int], *, max_tries: int = 4, offline_after: int = 3
    ) -> None:
        if not 1 <= len(addresses) <= MAX_PUMPS or len(set(addresses)) != len(addresses):
            raise ValueError(f"a line has 1..{MAX_PUMPS} distinct pump addresses")
        self._pumps = {a: _Pump(a) for a in addresses}
        self._order = itertools.cycle(list(addresses))
        self._ids = itertools.count(1)
        self._current: Exchange | None = None
        self.max_tries = max_tries
        self.offline_after = offline_after

    # -- what the driver asks -----------------------------------------------------------

    def submit(self, address: int, transactions: Sequence[Transaction]) -> int:
        """Queue a command block for ``address``; returns the id its outcome will carry.
        Raises ``DartCodecError`` for a block that cannot be encoded, ``KeyError`` for
        an address not on this line."""
        pump = self._pumps[address]
        command = next(self._ids)
        pump.queue.append((command, encode_block(transactions)))
        return command

    def status(self, address: int) -> LinkStatus:
        return self._pumps[address].status

    def statistics(self) -> dict[int, dict[str, object]]:
        return {
            a: {
                "status": p.status.value,
                "queued": len(p.queue),
                "failures": p.failures,
                "polls": p.polls,
                "blocks_in": p.blocks_in,
                "repeats": p.repeats,
                "naks": p.naks,
                "resends": p.resends,
            }
            for a, p in self._pumps.items()
        }

    # -- the line -------------------------------------------------------------------------

    def line_down(self, address: int) -> list[Event]:
        """The line itself failed: the pump is offline and its queued commands fail."""
        self._current = None
        pump = self._pumps[address]
        events: list[Event] = []
        pump.failures = max(pump.failures, self.offline_after)
        self._go_offline(pump, events)
        return events

    def next_exchange(self) -> Exchange:
        """The next frame to send. A queued command goes before the next poll (the
        customer at the pump is waiting for it); polls go round robin."""
        if self._current is not None:
            raise RuntimeError("the previous exchange has not been answered yet")
        pump = next((p for p in self._pumps.values() if p.queue), None)
        if pump is None:
            pump = self._pumps[next(self._order)]
        if pump.ack_due is not None and pump.queue:
            seq, pump.ack_due = pump.ack_due, None
            exchange = Exchange(pump.address, Frame(pump.address, Kind.ACK, seq), False)
        elif pump.queue:
            command, block = pump.queue[0]
            pump.tries += 1
            pump.resends += pump.tries > 1
            exchange = Exchange(
                pump.address, Frame(pump.address, Kind.DATA, pump.tx_seq, block), True, command
            )
        elif pump.ack_due is not None:
            exchange = Exchange(pump.address, Frame(pump.address, Kind.ACKPOLL, pump.ack_due), True)
            pump.ack_due = None
            pump.polls += 1
        else:
            exchange = Exchange(pump.address, Frame(pump.address, Kind.POLL), True)
            pump.polls += 1
        self._current = exchange
        return exchange

    def on_reply(self, replies: Sequence[Frame | BadFrame]) -> list[Event]:
        """Everything the line carried back for the current exchange (empty: silence)."""
        exchange, self._current = self._current, None
        if exchange is None:
            raise RuntimeError("no exchange in progress")
        pump = self._pumps[exchange.address]
        events: list[Event] = []
        good: Frame | None = None
        for reply in replies:
            if isinstance(reply, BadFrame):
                events.append(LineProblem(pump.address, reply.reason))
            elif reply.address != pump.address:
                events.append(LineProblem(pump.address, f"reply from {reply.address:#04x}"))
            elif good is None:
                good = reply
            else:
                events.append(LineProblem(pump.address, f"extra frame {reply!r}"))
        if good is None or not self._answer(pump, exchange, good, events):
            self._failed_exchange(pump, exchange, events)
        return events

    def _answer(self, pump: _Pump, exchange: Exchange, reply: Frame, events: list[Event]) -> bool:
        """Take a well-formed answer; False if it does not answer the exchange."""
        if exchange.command is not None:  # we sent a DATA block
            if reply.kind is Kind.ACK and reply.seq == pump.tx_seq:
                self._alive(pump, events)
                pump.queue.popleft()
                pump.tries = 0
                pump.tx_seq = (pump.tx_seq + 1) % 16
                events.append(Delivered(pump.address, exchange.command))
                return True
            if reply.kind in (Kind.NAK, Kind.ACK):
                # Asked to resend, or acknowledged another number: start the numbering over.
                pump.naks += 1
                pump.tx_seq = 0
                events.append(LineProblem(pump.address, f"{reply.kind.name} {reply.seq}"))
                self._alive(pump, events)
                self._retry_or_fail(pump, events, f"{reply.kind.name} {reply.seq}")
                return True
            return False
        if reply.kind is Kind.EOT:
            self._alive(pump, events)
            return True
        if reply.kind is Kind.DATA:
            try:
                transactions = tuple(decode_from_pump(reply.data))
            except DartCodecError as exc:
                events.append(LineProblem(pump.address, f"undecodable block: {exc}"))
                return False  # not acknowledged: the pump sends it again
            self._alive(pump, events)
            pump.ack_due = reply.seq
            if reply.seq == pump.rx_seq:
                pump.repeats += 1  # our ACK was lost: acknowledge again, deliver once
            else:
                pump.rx_seq = reply.seq
                pump.blocks_in += 1
                events.append(PumpData(pump.address, transactions))
            return True
        return False

    def _alive(self, pump: _Pump, events: list[Event]) -> None:
        pump.failures = 0
        events.append(Answered(pump.address))
        if pump.status is not LinkStatus.ONLINE:
            pump.status = LinkStatus.ONLINE
            events.append(StatusChanged(pump.address, LinkStatus.ONLINE))

    def _failed_exchange(self, pump: _Pump, exchange: Exchange, events: list[Event]) -> None:
        if not exchange.expects_reply:
            return
        pump.failures += 1
        if exchange.command is not None:
            self._retry_or_fail(pump, events, "no acknowledgement")
        if pump.failures >= self.offline_after:
            self._go_offline(pump, events)

    def _go_offline(self, pump: _Pump, events: list[Event]) -> None:
        """Mark the pump offline (once) and fail what is queued for it."""
        if pump.status is not LinkStatus.OFFLINE:
            pump.status = LinkStatus.OFFLINE
            pump.rx_seq = None  # a pump that comes back may have restarted its numbering
            pump.ack_due = None
            events.append(StatusChanged(pump.address, LinkStatus.OFFLINE))
        while pump.queue:
            command, _ = pump.queue.popleft()
            events.append(Failed(pump.address, command, "pump offline"))
        pump.tries = 0

    def _retry_or_fail(self, pump: _Pump, events: list[Event], why: str) -> None:
        if pump.tries >= self.max_tries and pump.queue:
            command, _ = pump.queue.popleft()
            pump.tries = 0
            pump.tx_seq = (pump.tx_seq + 1) % 16
            events.append(Failed(pump.address, command, f"{why} after {self.max_tries} tries"))
