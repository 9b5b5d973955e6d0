"""The pumps of one simulated DART line, sans-IO: routing by address, transport faults.

A :class:`DartStation` is one station of a :class:`~devices.sim.simulation.Simulation`
seen as a DART line: pump number n of the station (its unit id) is the pump at address
0x50 + n - 1. It hands each decoded frame to the pump it is addressed to and applies that
point's transport faults to the reply, with the point's own transport ``random.Random``
and counters, as the Modbus servers do:

* ``drop_reply_probability``: the frame was taken and acted on, the reply is not sent;
* ``delay_reply_probability`` / ``delay_reply_s``: the reply goes out that much later;
* ``crc_error_probability``: one byte of the reply's CRC is flipped; an ACK, NAK or EOT
  has no CRC, so its control byte is garbled instead, into a kind no decoder accepts.

``busy_reply_probability`` (Modbus exception 06) has no DART counterpart and is ignored.
The trio adapter (:mod:`devices.dart.sim.line_server`) owns the tty and the timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from devices.sim.simulation import SimPoint, Simulation

from ..frames import ETX, SF, BadFrame, Frame, Kind, crc16_arc, encode, stuff
from ..transactions import Decimals
from .pump_model import DEFAULT_DECIMALS
from .pump_side import DartPumpSide, pump_address

log = structlog.get_logger("devices.sim")


@dataclass(frozen=True, slots=True)
class DartAnswer:
    """What the line does about one frame for one of its pumps: ``wire`` None = silence."""

    reply: Frame | None
    wire: bytes | None
    delay_s: float = 0.0
    dropped: bool = False
    corrupted: bool = False


def corrupt(frame: Frame) -> bytes:
    """``frame`` as it would arrive through a noisy line: a DATA frame with one CRC byte
    flipped (restuffed, so the frame still ends where it should), any other frame with
    its kind garbled (every kind XOR 8 is a nibble the decoder does not know)."""
    head = bytes([frame.address, (frame.kind << 4) | frame.seq])
    if frame.kind is not Kind.DATA:
        return bytes([frame.address, head[1] ^ 0x80, SF])
    crc = crc16_arc(head + frame.data) ^ 0x00FF
    return head + stuff(frame.data + crc.to_bytes(2, "little")) + bytes([ETX, SF])


class DartStation:
    """The pumps of station ``station`` as one DART line; see the module docstring."""

    def __init__(
        self, sim: Simulation, station: int, decimals: Decimals = DEFAULT_DECIMALS
    ) -> None:
        self.sim, self.station, self.decimals = sim, station, decimals
        self.pumps: dict[int, tuple[SimPoint, DartPumpSide]] = {}
        for unit in sim.units(station):
            point = sim.point(station, unit)
            # A pump restored from the state file came through a power-up: not programmed.
            side = DartPumpSide(point.point, unit, decimals, programmed=not point.restored)
            point.dart = side
            self.pumps[pump_address(unit)] = (point, side)

    @property
    def addresses(self) -> list[int]:
        return sorted(self.pumps)

    def handle(self, event: Frame | BadFrame, now_s: float) -> DartAnswer | None:
        """The line's answer to one frame; None if it is for no pump of this line."""
        entry = self.pumps.get(event.address) if event.address is not None else None
        if entry is None:
            return None
        point, side = entry
        try:
            reply = side.handle(event, now_s)
        except Exception:  # a model bug: this pump falls silent, not the whole line
            log.exception("sim.dart_pump_failure", station=self.station, unit=side.number)
            reply = None
        point.collect()
        if reply is None:
            return DartAnswer(None, None)
        faults, rng = point.point.faults, point.transport_rng
        if faults.drop_reply(rng):
            point.dropped += 1
            return DartAnswer(reply, None, dropped=True)
        delay = faults.reply_delay_s(rng)
        point.delayed += delay > 0
        if faults.corrupt_crc(rng):
            point.corrupted += 1
            return DartAnswer(reply, corrupt(reply), delay, corrupted=True)
        return DartAnswer(reply, encode(reply), delay)
