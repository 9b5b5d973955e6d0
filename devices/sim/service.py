"""The simulator process: gateways, an RTU line, the clock, the state file, the control API.

:class:`SimulatorService` wires the sans-IO parts (``Simulation``, ``Control``) to trio:

* one :class:`~devices.sim.gateway.Gateway` per TCP station, listening on
  ``port_base + station`` (``port_base`` 0: a free port each, reported when ready);
* optionally one :class:`~devices.sim.rtu_server.RtuLine`, which serves an extra station,
  the next index, so ``--stations 2 --rtu PTY`` gives TCP stations 0 and 1 and RTU
  station 2;
* optionally one DART line (:class:`~devices.dart.sim.line_server.DartLineServer`), one
  more station after those, of ``dart_pumps`` pumps (pump n at address 0x50 + n - 1):
  ``--stations 2 --rtu PTY --dart PTY2`` makes it station 3, without ``--rtu`` station 2;
* a clock task that advances every point every ``tick_s`` of trio time (servers also
  advance the point they serve just before they answer, so reads are always current);
  model time is seconds of trio time since the service started, times ``speed`` (a
  faster clock makes a sale shorter for tests; fault delays stay in real seconds);
* a persistence task that writes the state file every ``persist_every_s`` (only when it
  changed) and once more when the service stops, however it stops short of SIGKILL;
* the control API (``devices.sim.control``) on a TCP port, one JSON object per line.

On start the points are restored from the state file, each with a power-up (BOOT_COUNT
+ 1); points the file lacks are created fresh, points it has beyond the configured
stations and pumps are left out (and gone from the file at the next write).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import structlog
import trio

from devices.dart.sim import DEFAULT_DECIMALS
from devices.dart.sim.line_server import DartLineServer
from devices.dart.sim.station import DartStation
from devices.dart.transactions import Decimals
from devices.modbus.rtu_codec import SerialSettings

from .control import MAX_LINE, Control, Response
from .gateway import LINK_ERRORS, Gateway
from .persistence import StationFile
from .rtu_server import RtuLine
from .simulation import SimConfig, Simulation

log = structlog.get_logger("devices.sim")

TOO_LONG: Final = Response({"ok": False, "id": None, "error": "line too long"})


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    sim: SimConfig  # ``stations`` counts the TCP stations only
    host: str = "127.0.0.1"
    port_base: int = 0
    control_port: int | None = None  # None: no control API; 0: a free port
    rtu: SerialSettings | None = None
    dart: SerialSettings | None = None
    dart_pumps: int = 4  # pump numbers 1..N on the DART line (N <= 32)
    dart_decimals: Decimals = DEFAULT_DECIMALS  # shared with the switch's DART driver
    dart_turnaround_s: float = 0.0  # the pump's think time before it answers
    state: Path | None = None
    tick_s: float = 0.05
    persist_every_s: float = 1.0
    speed: float = 1.0  # model seconds per second of trio time

    def __post_init__(self) -> None:
        if not self.tick_s > 0 or not self.persist_every_s > 0 or not 0 < self.speed <= 1000:
            raise ValueError("tick and persistence periods must be positive, speed 0..1000")
        if not 1 <= self.dart_pumps <= 32 or not self.dart_turnaround_s >= 0:
            raise ValueError("a DART line has 1..32 pumps; turnaround must not be negative")

    @property
    def dart_station(self) -> int | None:
        """The DART line's station index: after the TCP stations and the RTU line."""
        if self.dart is None:
            return None
        return self.sim.stations + (self.rtu is not None)


class SimulatorService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._file = StationFile(config.state) if config.state is not None else None
        saved = self._file.read() if self._file is not None else {}
        stations = config.sim.stations + (config.rtu is not None) + (config.dart is not None)
        dart_station = config.dart_station
        overrides = config.sim.station_pumps
        if dart_station is not None:
            overrides = (*overrides, (dart_station, config.dart_pumps))
        sim_config = replace(config.sim, stations=stations, station_pumps=overrides)
        self.sim = Simulation(sim_config, saved)
        self.control = Control(self.sim, self.statistics)
        self._t0 = 0.0
        self.gateways = [Gateway(self.sim, i, self.now) for i in range(config.sim.stations)]
        self.rtu: RtuLine | None = None
        if config.rtu is not None:
            self.rtu = RtuLine(self.sim, config.sim.stations, config.rtu, self.now)
        self.dart: DartLineServer | None = None
        if config.dart is not None and dart_station is not None:
            station = DartStation(self.sim, dart_station, config.dart_decimals)
            self.dart = DartLineServer(
                station, config.dart, self.now, turnaround_s=config.dart_turnaround_s
            )
        self._persist_lock = trio.Lock()
        self._written: bytes | None = None
        self._writes = self._write_errors = 0
        self._ready = False

    def now(self) -> float:
        """Model time: seconds of trio time since the service started, times ``speed``."""
        return (trio.current_time() - self._t0) * self.config.speed

    async def run(self, *, task_status: trio.TaskStatus[dict[str, Any]]) -> None:
        """Serve until cancelled; reports started with the ready document (ports)."""
        self._t0 = trio.current_time()
        c = self.config
        try:
            async with trio.open_nursery() as nursery:
                stations = []
                for gateway in self.gateways:
                    port = c.port_base + gateway.station if c.port_base else 0
                    listeners = await trio.open_tcp_listeners(port, host=c.host)
                    nursery.start_soon(gateway.serve, listeners)
                    port = listeners[0].socket.getsockname()[1]
                    units = self.sim.units(gateway.station)
                    stations.append({"station": gateway.station, "port": port, "units": units})
                rtu = None
                if self.rtu is not None:
                    await nursery.start(self.rtu.run, self.rtu.open())
                    station = self.rtu.station
                    path, units = self.rtu.settings.port, self.sim.units(station)
                    rtu = {"station": station, "path": path, "units": units}
                dart = None
                if self.dart is not None:
                    await nursery.start(self.dart.run, self.dart.open())
                    line = self.dart.station
                    dart = {
                        "station": line.station,
                        "path": self.dart.peer_path,
                        "units": self.sim.units(line.station),
                        "addresses": line.addresses,
                        "baudrate": self.dart.settings.baudrate,
                        "parity": self.dart.settings.parity.value,
                    }
                control_port = None
                if c.control_port is not None:
                    listeners = await trio.open_tcp_listeners(c.control_port, host=c.host)
                    control_port = listeners[0].socket.getsockname()[1]
                    nursery.start_soon(trio.serve_listeners, self._control_client, listeners)
                nursery.start_soon(self._clock_loop)
                if self._file is not None:
                    nursery.start_soon(self._persist_loop)
                self._ready = True
                task_status.started(
                    {
                        "event": "listening",
                        "pid": os.getpid(),
                        "host": c.host,
                        "stations": stations,
                        "rtu": rtu,
                        "dart": dart,
                        "control_port": control_port,
                        "state": str(c.state) if c.state is not None else None,
                        "restored": self.sim.restored,
                    }
                )
        finally:
            if self._file is not None and self._ready:  # a failed start changes nothing
                with trio.CancelScope(shield=True):
                    await self.persist(force=True)

    # -- clock and state file -------------------------------------------------------------

    async def _clock_loop(self) -> None:
        while True:
            self.sim.tick(self.now())
            await trio.sleep(self.config.tick_s)

    async def _persist_loop(self) -> None:
        while True:
            await trio.sleep(self.config.persist_every_s)
            try:
                await self.persist()
            except OSError as exc:
                self._write_errors += 1
                log.warning("sim.persist_failed", path=str(self.config.state), error=str(exc))

    async def persist(self, *, force: bool = False) -> None:
        """Write the state file (atomically) if it changed since the last write."""
        if self._file is None:
            raise ValueError("the simulator runs without --state")
        async with self._persist_lock:
            self.sim.advance_all(self.now())  # the totals of a sale in progress, too
            payload = self._file.encode(self.sim.points_by_key())
            if payload == self._written and not force:
                return
            await trio.to_thread.run_sync(self._file.write_bytes, payload)
            self._written = payload
            self._writes += 1

    # -- control API --------------------------------------------------------------------

    async def _control_client(self, stream: trio.SocketStream) -> None:
        buffer, discarding = bytearray(), False
        try:
            async with stream:
                while data := await stream.receive_some(65536):
                    buffer += data
                    while (end := buffer.find(b"\n")) >= 0:
                        line = bytes(buffer[:end])
                        del buffer[: end + 1]
                        if discarding:  # the tail of an overlong line
                            discarding = False
                        elif line.strip():
                            await stream.send_all(await self._control_line(line))
                    if len(buffer) > MAX_LINE:
                        buffer.clear()
                        if not discarding:
                            discarding = True
                            await stream.send_all(TOO_LONG.encode())
        except LINK_ERRORS as exc:
            log.info("sim.control_lost", error=repr(exc))

    async def _control_line(self, line: bytes) -> bytes:
        response = self.control.handle_line(line, self.now())
        if response.persist:
            try:
                await self.persist(force=True)
            except (OSError, ValueError) as exc:
                body = {"ok": False, "id": response.body.get("id"), "error": str(exc)}
                return Response(body).encode()
            response = Response({**response.body, "path": str(self.config.state)})
        return response.encode()

    def statistics(self) -> dict[str, Any]:
        """The servers' counters (the control API adds the simulation's and its own)."""
        return {
            "gateways": [g.statistics() for g in self.gateways],
            "rtu": self.rtu.statistics() if self.rtu is not None else None,
            "dart": self.dart.statistics() if self.dart is not None else None,
            "state_writes": self._writes,
            "state_write_errors": self._write_errors,
        }
