"""A simulated station on one Modbus RTU line: unit id = pump number, one master.

As in the RTU client (``devices.modbus.rtu``), pyserial opens and configures the tty
(speed, framing, raw mode, VMIN=1) and trio does the I/O on a duplicate of its file
descriptor, so no thread blocks on the line. Frames are found by
:class:`~devices.sim.framing.RtuServerCodec`; a pause of ``gap_s`` with a partial frame
buffered ends it (on a real line t3.5 does; a pty has no timing worth the name).

Like every slave on a bus, the line answers only its own unit ids: requests to other
units and broadcasts (unit 0) get no reply. The transport faults of the addressed point
apply (no reply, a late reply, a reply with a broken CRC, exception 06). If the tty
fails (the other end of a pty went away), it is reopened after ``retry_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
import trio

from devices.modbus.rtu_codec import SerialSettings

from .framing import Garbage, Incoming, RtuServerCodec
from .serial_line import SerialLineServer
from .simulation import Answer, Simulation

log = structlog.get_logger("devices.sim")


@dataclass(frozen=True, slots=True)
class RtuLineStatistics:
    station: int
    port: str
    open: bool
    opens: int
    requests: int  # to this line's units
    replies: int
    dropped: int
    corrupted: int
    ignored: int  # frames for other units, broadcasts
    garbage_runs: int
    dropped_bytes: int


class RtuLine(SerialLineServer):
    kind = "rtu"

    def __init__(
        self,
        sim: Simulation,
        station: int,
        settings: SerialSettings,
        clock: Callable[[], float],
        *,
        gap_s: float = 0.05,
        retry_s: float = 1.0,
    ) -> None:
        super().__init__(settings, retry_s=retry_s)
        self.sim, self.station, self._clock = sim, station, clock
        self._gap_s = gap_s
        self._codec = RtuServerCodec()
        self._requests = self._replies = self._dropped = 0
        self._corrupted = self._ignored = 0

    def statistics(self) -> RtuLineStatistics:
        return RtuLineStatistics(
            self.station,
            self.settings.port,
            self._open,
            self._opens,
            self._requests,
            self._replies,
            self._dropped,
            self._corrupted,
            self._ignored,
            self._codec.garbage_runs,
            self._codec.dropped_bytes,
        )

    def _line_closed(self) -> None:
        self._codec.flush()

    async def _serve(self, line: trio.lowlevel.FdStream) -> None:
        codec = self._codec
        while True:
            with trio.move_on_after(self._gap_s if codec.buffered else float("inf")) as quiet:
                data = await line.receive_some(512)
            if quiet.cancelled_caught:
                events = codec.flush()
            elif not data:
                return  # end of file: reopen
            else:
                events = codec.feed(data)
            for event in events:
                if isinstance(event, Garbage):
                    log.info("sim.rtu_garbage", port=self.settings.port, reason=event.reason)
                    continue
                answer = self._answer_for(event)
                if answer is None:
                    self._ignored += 1
                    continue
                self._requests += 1
                if answer.reply is None:
                    self._dropped += 1
                    continue
                if answer.delay_s:
                    await trio.sleep(answer.delay_s)
                self._corrupted += answer.corrupt_crc
                await line.send_all(codec.encode(answer.reply, corrupt_crc=answer.corrupt_crc))
                self._replies += 1

    def _answer_for(self, incoming: Incoming) -> Answer | None:
        if incoming.unit == 0:
            return None  # a broadcast: never answered (and not executed here)
        if incoming.request is not None:
            return self.sim.serve(self.station, incoming.request, self._clock(), rtu=True)
        assert incoming.refusal is not None
        return self.sim.refuse(
            self.station, incoming.unit, incoming.function, incoming.refusal, rtu=True
        )
