"""What every simulated serial line does around its protocol: keep the tty open.

The RTU line and the DART line differ in framing and answers, not in how they hold the
port: open it (pyserial configures, trio does the fd I/O), serve until it fails (the
other end of a pty went away), drop whatever half frame was buffered, and open it again
after ``retry_s``, for as long as the simulator runs.
"""

from __future__ import annotations

import abc

import serial
import structlog
import trio

from devices.modbus.rtu_codec import SerialSettings
from devices.serial_port import open_serial

from .gateway import LINK_ERRORS

log = structlog.get_logger("devices.sim")


class SerialLineServer(abc.ABC):
    kind = "serial"  # names the line in logs

    def __init__(self, settings: SerialSettings, *, retry_s: float) -> None:
        self.settings = settings
        self._retry_s = retry_s
        self._open = False
        self._opens = 0

    def open(self) -> trio.lowlevel.FdStream:
        """Open and configure the tty (raises ``serial.SerialException`` or OSError)."""
        port, stream = open_serial(self.settings)
        port.close()  # the duplicate keeps the tty open, configured and locked
        return stream

    @abc.abstractmethod
    async def _serve(self, line: trio.lowlevel.FdStream) -> None:
        """Answer on the line until it ends (return) or fails (raise)."""

    @abc.abstractmethod
    def _line_closed(self) -> None:
        """Forget a half-read frame: the next one comes on a fresh line."""

    async def run(
        self,
        stream: trio.lowlevel.FdStream | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the line until cancelled; ``stream`` is the tty opened by :meth:`open`
        (opened here if None). Reports started once the line is open."""
        first: trio.lowlevel.FdStream | None = stream if stream is not None else self.open()
        task_status.started()
        port = self.settings.port
        while True:
            try:
                line = first if first is not None else self.open()
            except (serial.SerialException, OSError) as exc:
                log.warning(f"sim.{self.kind}_open_failed", port=port, error=str(exc))
            else:
                first = None
                self._opens += 1
                self._open = True
                try:
                    async with line:
                        await self._serve(line)
                except LINK_ERRORS as exc:
                    log.warning(f"sim.{self.kind}_failed", port=port, error=repr(exc))
                finally:
                    self._open = False
                    self._line_closed()
            await trio.sleep(self._retry_s)
