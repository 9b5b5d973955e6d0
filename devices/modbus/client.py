"""What the TCP and RTU clients share: the register API, the link states, the statistics.

A PumpActor is written against :class:`RegisterClient`, so the same actor drives a pump
behind a station gateway (TCP) or on an RS-485 line (RTU).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ModbusException, ModbusFrameError
from .pdu import Reply, Request, check_reply


class LinkState(enum.Enum):
    """The client's link to its peer. Requests fail fast unless it is CONNECTED."""

    CONNECTING = "connecting"  # a connect attempt is under way: requests wait for its result
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # lost or never made; TCP retries after a backoff
    CLOSED = "closed"  # the client was closed (or not yet entered)


@dataclass(frozen=True, slots=True)
class ModbusStatistics:
    """A snapshot of a client's counters; all counts are since the client was created."""

    state: LinkState
    requests: int  # requests issued on a live link (TCP: queued to send; RTU: written)
    responses: int  # replies matched to a waiting request, exception replies included
    timeouts: int
    exceptions: int  # Modbus exception replies
    frame_errors: int  # garbage runs, bad CRCs, undecodable or mismatched replies
    connection_errors: int  # requests failed with ModbusConnectionError
    reconnects: int  # links re-established after a loss
    in_flight: int  # requests written and not yet answered, timed out or failed
    late_responses: int  # replies to requests that had already timed out
    unknown_responses: int  # well-formed replies that match no request
    dropped_bytes: int  # bytes discarded while resynchronising or flushing a line
    last_rtt: float | None  # seconds from write to reply, of the last matched reply
    last_error: str | None  # why the link last went down or failed to come up


class Counters:
    """The mutable counters behind :class:`ModbusStatistics` (one per client)."""

    __slots__ = (
        "connection_errors",
        "dropped_bytes",
        "exceptions",
        "frame_errors",
        "last_error",
        "last_rtt",
        "late_responses",
        "reconnects",
        "requests",
        "responses",
        "timeouts",
        "unknown_responses",
    )

    def __init__(self) -> None:
        self.requests = self.responses = self.timeouts = self.exceptions = 0
        self.frame_errors = self.connection_errors = self.reconnects = 0
        self.late_responses = self.unknown_responses = self.dropped_bytes = 0
        self.last_rtt: float | None = None
        self.last_error: str | None = None

    def settle(self, request: Request, reply: Reply, rtt: float) -> tuple[int, ...]:
        """Count a reply matched to ``request`` and turn it into registers or an error."""
        self.responses += 1
        self.last_rtt = rtt
        try:
            return check_reply(request, reply)
        except ModbusException:
            self.exceptions += 1
            raise
        except ModbusFrameError:
            self.frame_errors += 1
            raise

    def snapshot(self, state: LinkState, in_flight: int) -> ModbusStatistics:
        return ModbusStatistics(
            state=state,
            requests=self.requests,
            responses=self.responses,
            timeouts=self.timeouts,
            exceptions=self.exceptions,
            frame_errors=self.frame_errors,
            connection_errors=self.connection_errors,
            reconnects=self.reconnects,
            in_flight=in_flight,
            late_responses=self.late_responses,
            unknown_responses=self.unknown_responses,
            dropped_bytes=self.dropped_bytes,
            last_rtt=self.last_rtt,
            last_error=self.last_error,
        )


def check_timeout(timeout: float) -> float:
    # Written as a positive check so that NaN fails it too; inf means "no limit".
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
    return timeout


class RegisterClient(abc.ABC):
    """The register API over :meth:`execute`.

    Every method raises only :class:`~devices.modbus.errors.ModbusError` subclasses for
    anything the link or the device does, and ``ValueError`` for a malformed request.
    ``timeout`` overrides the client's default for one call (``math.inf`` waits forever).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = check_timeout(timeout)
        self._counters = Counters()

    def _timeout_for(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else check_timeout(timeout)

    async def read_input_registers(
        self, unit: int, address: int, count: int, *, timeout: float | None = None
    ) -> list[int]:
        """FC 04."""
        return list(await self.execute(Request.read_input(unit, address, count), timeout=timeout))

    async def read_holding_registers(
        self, unit: int, address: int, count: int, *, timeout: float | None = None
    ) -> list[int]:
        """FC 03."""
        request = Request.read_holding(unit, address, count)
        return list(await self.execute(request, timeout=timeout))

    async def write_registers(
        self, unit: int, address: int, values: Sequence[int], *, timeout: float | None = None
    ) -> None:
        """FC 16: the device applies the block atomically (GFD-1's command block relies on it)."""
        await self.execute(Request.write_multiple(unit, address, tuple(values)), timeout=timeout)

    async def write_register(
        self, unit: int, address: int, value: int, *, timeout: float | None = None
    ) -> None:
        """FC 06."""
        await self.execute(Request.write_single(unit, address, value), timeout=timeout)

    @abc.abstractmethod
    async def execute(self, request: Request, *, timeout: float | None = None) -> tuple[int, ...]:
        """Send one request and wait for its reply: the registers read, or () for a write."""

    @abc.abstractmethod
    def statistics(self) -> ModbusStatistics:
        """A cheap synchronous snapshot of the counters."""
