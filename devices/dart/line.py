"""The DART line master on trio: one task owns the serial line and runs the poll loop.

The thin adapter around :class:`~devices.dart.master.LineMaster`: it writes the frame
the master chooses, reads the answer until a whole frame has arrived (the reply ends at
its unescaped ``FA``), the line has been quiet for ``silence`` with a frame half read,
or ``reply_timeout`` passed with nothing at all, and feeds what it got back to the
master. Events go to the listener attached for each address (the DART driver of that
pump); command outcomes wake the task that submitted the block.

If the port cannot be opened or fails, the loop reports every pump offline, fails the
queued commands and tries again after a backoff, for as long as it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from actors import Backoff

from ..modbus.rtu_codec import Parity, SerialSettings
from ..serial_port import SerialOpenError, drain_input, open_serial
from .frames import BadFrame, Frame, FrameDecoder, encode
from .master import (
    Delivered,
    Event,
    Failed,
    LineMaster,
    LineProblem,
    LinkStatus,
    StatusChanged,
)
from .transactions import Transaction

log = structlog.get_logger("devices.dart")

_LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
Listener = Callable[[Event], None]


class DartLineError(Exception):
    """A command block was not delivered: the pump is offline, the line is down, or the
    pump never acknowledged it (then whether it ran is unknown)."""

    def __init__(self, message: str, *, outcome_unknown: bool) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


@dataclass(slots=True)
class _Outcome:
    done: trio.Event
    error: str | None = None


class DartLine:
    def __init__(
        self,
        port: str,
        addresses: Sequence[int],
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: Parity = Parity.ODD,
        stopbits: int = 1,
        reply_timeout: float = 0.15,
        silence: float = 0.05,
        max_tries: int = 4,
        offline_after: int = 3,
        exclusive: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = SerialSettings(port, baudrate, bytesize, parity, stopbits)
        self.reply_timeout = reply_timeout
        self.silence = silence
        self._exclusive = exclusive
        self._backoff = backoff or Backoff(min_delay=0.2, max_delay=5.0, jitter=0.2)
        self.master = LineMaster(addresses, max_tries=max_tries, offline_after=offline_after)
        self._addresses = tuple(addresses)
        self._listeners: dict[int, list[Listener]] = {a: [] for a in addresses}
        self._outcomes: dict[int, _Outcome] = {}
        self._open = False
        self.exchanges = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self.bad_frames = 0
        self.silent = 0
        self.last_error: str | None = None

    def attach(self, address: int, listener: Listener) -> None:
        self._listeners[address].append(listener)

    def statistics(self) -> dict[str, Any]:
        return {
            "port": self.settings.port,
            "open": self._open,
            "exchanges": self.exchanges,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "bad_frames": self.bad_frames,
            "silent": self.silent,
            "last_error": self.last_error,
            "pumps": self.master.statistics(),
        }

    async def command(self, address: int, transactions: Sequence[Transaction]) -> None:
        """Send one block and wait until the pump acknowledged it (callers own the
        timeout). Raises :class:`DartLineError`, or ``DartCodecError`` for a block that
        cannot be encoded (nothing was sent)."""
        if self.master.status(address) is LinkStatus.OFFLINE or not self._open:
            raise DartLineError(f"pump {address:#04x} is offline", outcome_unknown=False)
        command = self.master.submit(address, transactions)
        outcome = self._outcomes[command] = _Outcome(trio.Event())
        try:
            await outcome.done.wait()
        finally:
            self._outcomes.pop(command, None)
        if outcome.error is not None:
            raise DartLineError(f"pump {address:#04x}: {outcome.error}", outcome_unknown=True)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll the line until cancelled."""
        task_status.started()
        attempt = 0
        while True:
            try:
                port, stream = open_serial(self.settings, exclusive=self._exclusive)
            except SerialOpenError as exc:
                self._line_down(str(exc))
            else:
                attempt = 0
                try:
                    async with stream:
                        self._open = True
                        await self._poll_forever(stream)
                except _LINK_ERRORS as exc:
                    self._line_down(f"line failed: {exc!r}")
                finally:
                    self._open = False
                    port.close()
            await trio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _poll_forever(self, stream: trio.lowlevel.FdStream) -> None:
        decoder = FrameDecoder()
        while True:
            exchange = self.master.next_exchange()
            dropped = drain_input(stream)  # a late answer to an exchange already given up
            if dropped:
                self.bad_frames += 1
                log.info("dart.stale_input", port=self.settings.port, nbytes=dropped)
            raw = encode(exchange.frame)
            await stream.send_all(raw)
            self.bytes_out += len(raw)
            self.exchanges += 1
            replies = await self._read_reply(stream, decoder) if exchange.expects_reply else []
            for event in self.master.on_reply(replies):
                self._deliver(event)

    async def _read_reply(
        self, stream: trio.lowlevel.FdStream, decoder: FrameDecoder
    ) -> list[Frame | BadFrame]:
        """Bytes until a whole frame, ``silence`` after a partial one, or the timeout."""
        replies: list[Frame | BadFrame] = []
        deadline = trio.current_time() + self.reply_timeout
        while not any(isinstance(r, Frame) for r in replies):
            wait_until = deadline if not decoder.buffered else trio.current_time() + self.silence
            with trio.move_on_at(wait_until):
                data = await stream.receive_some(256)
                if not data:
                    raise trio.BrokenResourceError("end of file on the line")
                self.bytes_in += len(data)
                replies.extend(decoder.feed(data))
                continue
            cut = decoder.silence()  # the wait ran out
            if cut is not None:
                replies.append(cut)
            break
        if not replies:
            self.silent += 1
        self.bad_frames += sum(isinstance(r, BadFrame) for r in replies)
        return replies

    def _deliver(self, event: Event) -> None:
        if isinstance(event, Delivered | Failed):
            outcome = self._outcomes.get(event.command)
            if outcome is not None:
                outcome.error = event.reason if isinstance(event, Failed) else None
                outcome.done.set()
        elif isinstance(event, LineProblem):
            log.info("dart.line_problem", address=hex(event.address), reason=event.reason)
        elif isinstance(event, StatusChanged):
            log.info("dart.pump_link", address=hex(event.address), status=event.status.value)
        for listener in self._listeners.get(event.address, ()):
            listener(event)

    def _line_down(self, reason: str) -> None:
        """The port is closed: every pump is unreachable and queued commands fail."""
        self.last_error = reason
        log.warning("dart.line_down", port=self.settings.port, reason=reason)
        for outcome in self._outcomes.values():
            outcome.error = reason
            outcome.done.set()
        for address in self._addresses:
            for event in self.master.line_down(address):
                self._deliver(event)
