"""A simulated DART line on a tty: the pumps' side of one RS-485 line, on trio.

The sibling of :mod:`devices.sim.rtu_server`. pyserial opens and configures the tty
(:func:`devices.serial_port.open_serial`: speed, framing, raw mode, VMIN=1, the
exclusive lock) and trio reads and writes a duplicate of its descriptor, so no thread
blocks on the line. The bytes go through a :class:`~devices.dart.frames.FrameDecoder`;
``gap_s`` of quiet with a partial frame buffered ends it as noise. Each frame goes to
:class:`~devices.dart.sim.station.DartStation`, which answers for the addressed pump (or
not at all) and applies its transport faults.

A pty delivers a frame the instant it is written, so the line is simulated: the reply's
last byte arrives when the request and the reply would have crossed the wire, (request
bytes + reply bytes) x the character time at the configured speed (8O1: 11 bits), plus
``turnaround_s``, plus any injected delay. The reply is written in pieces of about
``PIECE_S`` of wire time each, as a UART would deliver it: a master that ends a reply
after some 50 ms of silence, with a reply timeout of 150 ms for the first byte, then
sees a long reply (totals of many nozzles) as it would on a real line, not as silence
followed by a burst. Frames are served one at a time, as on a half-duplex bus: whatever
the master sends meanwhile waits in the tty.

If the tty fails (the other end of a pty went away) it is reopened after ``retry_s``.
"""

from __future__ import annotations

import os
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
import trio

from devices.modbus.rtu_codec import SerialSettings
from devices.sim.serial_line import SerialLineServer

from ..frames import BadFrame, Frame, FrameDecoder, encode
from .station import DartStation

log = structlog.get_logger("devices.sim")

AUTO_PTY: Final = "pty"  # --dart pty: the simulator makes the pty pair itself
MAX_LATENESS_S: Final = 0.002  # never aim earlier than this
PIECE_S: Final = 0.01  # wire time of one write of a reply


@dataclass(frozen=True, slots=True)
class DartLineStatistics:
    station: int
    port: str
    open: bool
    opens: int
    frames: int  # to this line's pumps, bad ones with their address included
    replies: int
    silent: int  # frames the pump does not answer (a bare ACK, noise)
    dropped: int  # replies swallowed by the drop fault
    delayed: int
    corrupted: int
    ignored: int  # frames for addresses not on this line
    garbage: int  # bad frames with no usable address (noise, cut short)
    dropped_bytes: int


class DartLineServer(SerialLineServer):
    kind = "dart"

    def __init__(
        self,
        station: DartStation,
        settings: SerialSettings,
        clock: Callable[[], float],
        *,
        gap_s: float = 0.05,
        retry_s: float = 1.0,
        turnaround_s: float = 0.0,
    ) -> None:
        super().__init__(settings, retry_s=retry_s)
        self.station, self._clock = station, clock
        self._gap_s, self._turnaround_s = gap_s, turnaround_s
        self._decoder = FrameDecoder()
        self._lateness = 0.0  # how late a timed wake-up runs, on average
        self._pty: tuple[int, int] | None = None  # (master, slave) with the port AUTO_PTY
        self.peer_path = settings.port  # what the switch opens
        self._frames = self._replies = self._silent = self._dropped = 0
        self._delayed = self._corrupted = self._ignored = self._garbage = 0

    def statistics(self) -> DartLineStatistics:
        return DartLineStatistics(
            self.station.station,
            self.settings.port,
            self._open,
            self._opens,
            self._frames,
            self._replies,
            self._silent,
            self._dropped,
            self._delayed,
            self._corrupted,
            self._ignored,
            self._garbage,
            self._decoder.dropped_bytes,
        )

    def open(self) -> trio.lowlevel.FdStream:
        """Open and configure the tty (raises :class:`SerialOpenError`, an OSError).

        With the port ``pty`` the simulator makes its own pty pair and serves the
        master side; the switch opens :attr:`peer_path` (the slave) as its serial port,
        so no null-modem relay between two pairs is needed. The slave stays open here
        too: a pty master whose slave nobody holds reads as an error.
        """
        if self.settings.port == AUTO_PTY:
            if self._pty is None:
                master, slave = os.openpty()
                tty.setraw(slave)
                self._pty, self.peer_path = (master, slave), os.ttyname(slave)
            return trio.lowlevel.FdStream(os.dup(self._pty[0]))
        return super().open()

    def _line_closed(self) -> None:
        self._decoder.silence()

    async def _serve(self, line: trio.lowlevel.FdStream) -> None:
        decoder = self._decoder
        while True:
            with trio.move_on_after(self._gap_s if decoder.buffered else float("inf")) as quiet:
                data = await line.receive_some(512)
            if quiet.cancelled_caught:
                cut = decoder.silence()
                events: list[Frame | BadFrame] = [cut] if cut is not None else []
            elif not data:
                return  # end of file: reopen
            else:
                events = decoder.feed(data)
            for event in events:
                await self._answer(line, event)

    async def _answer(self, line: trio.lowlevel.FdStream, event: Frame | BadFrame) -> None:
        answer = self.station.handle(event, self._clock())
        if answer is None:
            if event.address is None:
                self._garbage += 1
                log.info("sim.dart_garbage", port=self.settings.port, reason=event.reason)
            else:
                self._ignored += 1
            return
        self._frames += 1
        if answer.wire is None:
            self._dropped += answer.dropped
            self._silent += not answer.dropped
            return
        # What crossed the wire: the frame as sent, stuffing included.
        request_bytes = len(event.raw) if isinstance(event, BadFrame) else len(encode(event))
        char_s = self.settings.char_time
        self._delayed += answer.delay_s > 0
        self._corrupted += answer.corrupted
        due = trio.current_time() + request_bytes * char_s + self._turnaround_s + answer.delay_s
        wire, piece = answer.wire, max(1, int(PIECE_S / char_s))
        for start in range(0, len(wire), piece):
            chunk = wire[start : start + piece]
            due += len(chunk) * char_s  # its bytes cross the wire
            await self._sleep_until(due)
            await line.send_all(chunk)
        self._replies += 1

    async def _sleep_until(self, due: float) -> None:
        """Wake at ``due`` on average. Deadlines are absolute, so rounding errors do not
        add up over a reply's pieces, and each wake aims early by the lateness seen so
        far: the OS rounds a timed wait up to the next millisecond and the scheduler adds
        its own delay, which at 9600 baud (about 1 ms a character) would otherwise make
        the simulated wire a good deal slower than a real one."""
        aim = due - self._lateness
        await trio.sleep_until(aim)
        late = trio.current_time() - aim
        self._lateness = min(MAX_LATENESS_S, 0.9 * self._lateness + 0.1 * late)
