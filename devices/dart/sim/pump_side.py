"""One simulated DART pump on the line: the link layer over :class:`DartPumpModel`, sans-IO.

:meth:`DartPumpSide.handle` takes what the line decoder made of one frame from the
controller and returns the pump's reply frame, or None when a pump says nothing (a frame
for another address, the controller's bare ACK, noise). The rules are those a master
relies on (``../shared/specs/dart.md``):

* POLL: an unacknowledged DATA block of the pump's is sent again unchanged, same number;
  otherwise news make a new DATA block under the pump's next number (0-15, wrapping),
  and no news is ``EOT n`` (n: the number the next block will carry).
* ACK n clears the pending block if it is block n; ACKPOLL n is that ACK, then a POLL.
  A bare ACK is never answered: the controller sends its next frame right behind it.
* NAK: the pending block again, else EOT.
* DATA n: if n and the bytes equal the last block taken, it is the controller's resend
  after a lost ACK: ``ACK n`` again, not executed twice. A block that does not decode
  (or, as a :class:`~devices.dart.frames.BadFrame` with our address, fails its CRC) gets
  ``NAK n``. Otherwise its transactions run, in order, and the answer is ``ACK n``.

A power cycle of the point (its BOOT_COUNT changes) wipes the pump's RAM: the pending
block and the memory of the last controller block are gone (a resend after it executes
again, as on a real pump). The pump's own block counter is kept on purpose: a simulated
power cycle is instantaneous, while a real pump is silent long enough to be declared
offline, which restarts the master's numbering; keeping the counter prevents the first
block after the simulated restart being taken for a repeat and dropped.

Every frame for the pump advances the point to the present and counts as host activity
(the point's host watchdog), as every Modbus request does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from devices.sim.dispenser import FuellingPoint

from ..frames import MIN_ADDRESS, BadFrame, Frame, Kind
from ..transactions import DartCodecError, Decimals, decode_to_pump, encode_block
from .pump_model import DEFAULT_DECIMALS, DartPumpModel

MAX_PUMPS: Final = 32  # addresses 0x50-0x6F


def pump_address(number: int) -> int:
    """The DART address of pump ``number`` (1..32): 0x50 + number - 1."""
    if not 1 <= number <= MAX_PUMPS:
        raise ValueError(f"DART pump numbers are 1..{MAX_PUMPS}, not {number}")
    return MIN_ADDRESS + number - 1


@dataclass(frozen=True, slots=True)
class PumpSideStatistics:
    frames_in: int  # frames addressed to this pump, bad ones included
    frames_out: int
    blocks_in: int  # controller blocks executed
    repeats: int  # controller blocks acknowledged again, not executed
    blocks_out: int  # new DATA blocks sent
    resends: int  # DATA blocks sent again (not acknowledged yet, or NAKed)
    acks_in: int  # ACKs that cleared the pending block
    acks_out: int
    naks_in: int
    naks_out: int
    eots: int
    bad_frames: int
    power_ups: int  # power cycles noticed
    refused: int  # commands the point did not carry out


class DartPumpSide:
    """One DART pump (one address) over one fuelling point; see the module docstring."""

    def __init__(
        self,
        point: FuellingPoint,
        number: int,
        decimals: Decimals = DEFAULT_DECIMALS,
        *,
        programmed: bool = True,
    ) -> None:
        self.number = number
        self.address = pump_address(number)
        self.model = DartPumpModel(point, decimals, programmed=programmed)
        self._seq = 0  # the number of the next block of ours
        self._pending: Frame | None = None  # our DATA block not acknowledged yet
        self._last_in: tuple[int, bytes] | None = None  # the controller's last block taken
        self._frames_in = self._frames_out = self._blocks_in = self._repeats = 0
        self._blocks_out = self._resends = self._acks_in = self._acks_out = 0
        self._naks_in = self._naks_out = self._eots = self._bad = self._power_ups = 0

    @property
    def point(self) -> FuellingPoint:
        return self.model.point

    @property
    def pending(self) -> Frame | None:
        return self._pending

    def handle(self, event: Frame | BadFrame, now_s: float) -> Frame | None:
        """The reply to one decoded frame at model time ``now_s`` (None: say nothing)."""
        if event.address != self.address:
            return None
        point = self.point
        point.advance(max(now_s, point.now_s))
        point.host_activity()
        self._frames_in += 1
        self._check_power()
        reply = self._reply(event)
        if reply is not None:
            self._frames_out += 1
            self._acks_out += reply.kind is Kind.ACK
            self._naks_out += reply.kind is Kind.NAK
            self._eots += reply.kind is Kind.EOT
        return reply

    def _reply(self, event: Frame | BadFrame) -> Frame | None:
        if isinstance(event, BadFrame):
            self._bad += 1
            raw = event.raw
            if len(raw) >= 2 and raw[1] >> 4 == Kind.DATA:
                return Frame(self.address, Kind.NAK, raw[1] & 0x0F)  # a block we lost
            return None
        kind = event.kind
        if kind is Kind.POLL:
            return self._poll()
        if kind is Kind.ACK:
            self._ack(event.seq)
            return None
        if kind is Kind.ACKPOLL:
            self._ack(event.seq)
            return self._poll()
        if kind is Kind.NAK:
            self._naks_in += 1
            return self._resend() if self._pending is not None else self._eot()
        if kind is Kind.DATA:
            return self._data(event)
        return None  # an EOT: no controller sends one

    def _poll(self) -> Frame:
        if self._pending is not None:
            return self._resend()
        transactions = self.model.report()
        if not transactions:
            return self._eot()
        block = Frame(self.address, Kind.DATA, self._seq, encode_block(transactions))
        self._seq = (self._seq + 1) % 16
        self._pending = block
        self._blocks_out += 1
        return block

    def _resend(self) -> Frame:
        assert self._pending is not None
        self._resends += 1
        return self._pending

    def _eot(self) -> Frame:
        return Frame(self.address, Kind.EOT, self._seq)

    def _ack(self, seq: int) -> None:
        if self._pending is not None and self._pending.seq == seq:
            self._pending = None
            self._acks_in += 1

    def _data(self, frame: Frame) -> Frame:
        if self._last_in == (frame.seq, frame.data):
            self._repeats += 1
            return Frame(self.address, Kind.ACK, frame.seq)
        try:
            transactions = decode_to_pump(frame.data)
        except DartCodecError:
            return Frame(self.address, Kind.NAK, frame.seq)
        self.model.execute(transactions)
        self._last_in = (frame.seq, frame.data)
        self._blocks_in += 1
        return Frame(self.address, Kind.ACK, frame.seq)

    def _check_power(self) -> None:
        if self.model.check_power():
            self._power_ups += 1
            self._pending = None
            self._last_in = None

    # -- reading ------------------------------------------------------------------------------

    def statistics(self) -> PumpSideStatistics:
        return PumpSideStatistics(
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            blocks_in=self._blocks_in,
            repeats=self._repeats,
            blocks_out=self._blocks_out,
            resends=self._resends,
            acks_in=self._acks_in,
            acks_out=self._acks_out,
            naks_in=self._naks_in,
            naks_out=self._naks_out,
            eots=self._eots,
            bad_frames=self._bad,
            power_ups=self._power_ups,
            refused=self.model.refused,
        )

    def snapshot(self) -> dict[str, Any]:
        """The pump's DART side as JSON-able values: address, status, RAM, counters."""
        self._check_power()
        pending = self._pending
        return {
            "address": self.address,
            "status": int(self.model.status()),
            "programmed": self.model.programmed,
            "prices_received": self.model.prices_received,
            "next_seq": self._seq,
            "pending_seq": None if pending is None else pending.seq,
            **asdict(self.statistics()),
        }
