"""Modbus RTU client for one RS-485 line: many unit ids, strictly one request at a time.

pyserial opens the tty and configures it (speed, framing, raw mode, exclusive lock); trio
then does the I/O on a duplicate of its file descriptor through ``trio.lowlevel.FdStream``,
so no thread ever blocks on the line. The adapter around :mod:`devices.modbus.rtu_codec`
owns the line's timing: before each request it drops stale input (a late or half-read
reply) and waits out 3.5 character times of silence since the last byte on the wire.

If the port cannot be opened, or fails, requests fail fast with ModbusConnectionError and
the next request tries to open it again (a USB adapter may come back). Use it as
``async with ModbusRtuClient(...) as client:``; no background task is needed.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

import serial
import structlog
import trio

from ..serial_port import SerialOpenError, drain_input, open_serial
from .client import LinkState, ModbusStatistics, RegisterClient
from .errors import ModbusConnectionError, ModbusFrameError, ModbusTimeout
from .pdu import Request
from .rtu_codec import RTU_OVERHEAD, Parity, RtuBadFrame, RtuCodec, SerialSettings

log = structlog.get_logger("devices.modbus")

_LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class ModbusRtuClient(RegisterClient):
    """An RTU master on one serial line.

    ``timeout`` is how long a device may take to answer: the time the request and the
    expected reply spend on the wire at ``baudrate`` is added to it. Waiting for the line
    (other requests ahead) is not part of it; callers bound that themselves if they must.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        bytesize: int = 8,
        parity: Parity = Parity.EVEN,
        stopbits: int = 1,
        timeout: float = 0.5,
        exclusive: bool = True,
    ) -> None:
        super().__init__(timeout)
        self.settings = SerialSettings(port, baudrate, bytesize, parity, stopbits)
        self._exclusive = exclusive
        self._codec = RtuCodec()
        self._line = trio.Lock()  # fair (FIFO): requests take the line in arrival order
        self._serial: serial.Serial | None = None
        self._stream: trio.lowlevel.FdStream | None = None
        self._state = LinkState.CLOSED
        self._ever_open = False
        self._in_flight = 0
        self._quiet_until = 0.0

    def __repr__(self) -> str:
        return f"<ModbusRtuClient {self.settings.port} {self._state.value}>"

    @property
    def state(self) -> LinkState:
        return self._state

    def statistics(self) -> ModbusStatistics:
        return self._counters.snapshot(self._state, self._in_flight)

    async def __aenter__(self) -> Self:
        self._state = LinkState.DISCONNECTED
        with contextlib.suppress(ModbusConnectionError):
            self._open()  # a failure is logged and recorded; the first request tries again
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._close()
        self._state = LinkState.CLOSED
        await trio.lowlevel.checkpoint()

    async def execute(self, request: Request, *, timeout: float | None = None) -> tuple[int, ...]:
        timeout = self._timeout_for(timeout)
        if not 1 <= request.unit <= 247:
            raise ValueError(f"RTU unit ids are 1..247 (no broadcast), not {request.unit}")
        frame = self._codec.encode(request)
        async with self._line:
            stream = self._ready_stream()
            self._flush_stale(stream)
            await trio.sleep_until(self._quiet_until)
            self._counters.requests += 1
            self._in_flight = 1
            try:
                return await self._exchange(stream, request, frame, timeout)
            finally:
                self._in_flight = 0

    async def _exchange(
        self, stream: trio.lowlevel.FdStream, request: Request, frame: bytes, timeout: float
    ) -> tuple[int, ...]:
        settings = self.settings
        sent_at = trio.current_time()
        try:
            await stream.send_all(frame)
        except _LINK_ERRORS as exc:
            raise self._link_lost(f"write failed: {exc!r}") from None
        self._quiet_until = trio.current_time() + settings.wire_time(len(frame)) + settings.silence
        wire = settings.wire_time(len(frame) + request.reply_size() + RTU_OVERHEAD)
        with trio.move_on_after(timeout + wire):
            while True:
                try:
                    data = await stream.receive_some(512)
                except _LINK_ERRORS as exc:
                    raise self._link_lost(f"read failed: {exc!r}") from None
                if not data:
                    raise self._link_lost("end of file on the line")
                now = trio.current_time()
                self._quiet_until = now + settings.silence
                event = self._codec.feed(data, request)
                if event is None:
                    continue
                if isinstance(event, RtuBadFrame):
                    self._counters.frame_errors += 1
                    self._counters.dropped_bytes += event.nbytes
                    log.warning("modbus.bad_frame", port=settings.port, reason=event.reason)
                    raise ModbusFrameError(f"{settings.port}: unit {request.unit}: {event.reason}")
                return self._counters.settle(request, event.reply, now - sent_at)
        if self._codec.buffered:  # bytes arrived, but never a whole frame
            self._counters.frame_errors += 1
            self._counters.dropped_bytes += self._codec.discard()
        self._counters.timeouts += 1
        raise ModbusTimeout(request.unit, request.function, timeout)

    def _ready_stream(self) -> trio.lowlevel.FdStream:
        if self._state is LinkState.CLOSED:
            self._counters.connection_errors += 1
            raise ModbusConnectionError(f"{self.settings.port}: client closed")
        if self._stream is not None:
            return self._stream
        try:
            return self._open()
        except ModbusConnectionError:
            self._counters.connection_errors += 1
            raise

    def _open(self) -> trio.lowlevel.FdStream:
        """Open and configure the port with pyserial; hand a duplicate fd to trio."""
        s = self.settings
        try:
            port, stream = open_serial(s, exclusive=self._exclusive)
        except SerialOpenError as exc:
            self._counters.last_error = f"open failed: {exc}"
            log.warning("modbus.open_failed", port=s.port, error=str(exc))
            raise ModbusConnectionError(str(exc)) from None
        self._serial, self._stream = port, stream
        self._counters.reconnects += self._ever_open
        self._ever_open = True
        self._state = LinkState.CONNECTED
        self._quiet_until = trio.current_time() + s.silence
        return stream

    def _close(self) -> None:
        stream, port = self._stream, self._serial
        self._stream = self._serial = None
        self._codec.discard()
        if stream is not None:
            stream.close()
        if port is not None:
            port.close()

    def _link_lost(self, reason: str, *, sent: bool = True) -> ModbusConnectionError:
        """Close a port that failed; the caller raises the error returned."""
        self._close()
        self._state = LinkState.DISCONNECTED
        self._counters.last_error = reason
        self._counters.connection_errors += 1
        log.warning("modbus.link_down", port=self.settings.port, reason=reason)
        return ModbusConnectionError(f"{self.settings.port}: {reason}", outcome_unknown=sent)

    def _flush_stale(self, stream: trio.lowlevel.FdStream) -> None:
        """Drop input nobody waits for: a reply that came after its request timed out."""
        stale = self._codec.discard()
        try:
            stale += drain_input(stream)
        except OSError as exc:
            raise self._link_lost(f"read failed: {exc!r}", sent=False) from None
        if stale:
            self._counters.dropped_bytes += stale
            log.info("modbus.stale_input", port=self.settings.port, nbytes=stale)
