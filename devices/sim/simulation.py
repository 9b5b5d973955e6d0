"""All the simulated fuelling points of one simulator process, without I/O.

A :class:`Simulation` holds every point by (station index, unit id), each with its
register map, its ledger and random generators of its own, and answers three kinds of
caller, all of which pass the model time in (seconds since the process started; the
trio service reads its clock, tests pass numbers):

* the Modbus servers: :meth:`Simulation.serve` turns a request into an :class:`Answer`,
  the reply plus what the transport faults of that point make of it (dropped, delayed,
  CRC-corrupted, or exception 06 instead of executing);
* a DART line (``devices.dart.sim.station``), which puts a DART pump in front of each
  point of its station (``SimPoint.dart``) and uses the point's transport random
  generator and fault counters the same way;
* the clock: :meth:`Simulation.tick` advances every point, lets random customers arrive
  and moves ended sales into the ledger;
* the control API (``devices.sim.control``), through :meth:`Simulation.point`.

Randomness is seeded per point and per purpose from the simulator's seed, so what one
point does never shifts another point's draws: the model's flow rates, the transport
faults and the random customers each have a ``random.Random`` of their own. The seeds
include the BOOT_COUNT a point comes up with, so a restarted simulator does not replay
the customers and flow rates of its previous run.

The ledger holds every sale that ended since the process started, lost ones included
(``state`` NONE), in the order they ended: load tests reconcile the switch's books
against it. It is RAM: a restarted simulator starts a new one (totals and the payable
buffer are what persist).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from devices.gfd1.states import Mode
from devices.modbus.errors import ExceptionCode
from devices.modbus.pdu import Reply, Request

from .dispenser import FuellingPoint
from .records import NozzleSpec, PointSpec, Sale, SimSettings, random_customer
from .register_map import RegisterMap

if TYPE_CHECKING:
    from devices.dart.sim.pump_side import DartPumpSide

log = structlog.get_logger("devices.sim")

GRADES: Final = (92, 95, 98, 10, 92, 95, 98, 10)  # petrol 92/95/98, diesel (grade code 10)
PRICES: Final = (789_000, 842_000, 935_000, 771_000) * 2  # milli-fen per litre
MAX_QUEUE: Final = 2  # random customers at one point: one fuelling, one waiting


@dataclass(frozen=True, slots=True)
class SimConfig:
    stations: int
    pumps_per_station: int
    nozzles: int = 2
    seed: int = 0
    customers_per_minute: float = 0.0  # per pump; 0 = no random customers
    patience_s: float = 120.0  # a random customer left unauthorized gives up after this
    mode: Mode = Mode.HOST_CONTROLLED  # of points created fresh (restored ones keep theirs)
    station_pumps: tuple[tuple[int, int], ...] = ()  # (station, pumps): overrides the above

    def __post_init__(self) -> None:
        if not 1 <= self.stations <= 10_000 or not 1 <= self.pumps_per_station <= 247:
            raise ValueError("1..10000 stations of 1..247 pumps")
        if any(not 1 <= pumps <= 247 for _, pumps in self.station_pumps):
            raise ValueError("a station has 1..247 pumps")
        if not 1 <= self.nozzles <= 8:
            raise ValueError("1..8 nozzles per pump")
        if not 0 <= self.customers_per_minute <= 600 or not self.patience_s > 0:
            raise ValueError("customers per minute must be 0..600 and patience positive")

    def pumps_at(self, station: int) -> int:
        return dict(self.station_pumps).get(station, self.pumps_per_station)


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send for one request: ``reply`` None means say nothing."""

    reply: Reply | None
    delay_s: float = 0.0
    corrupt_crc: bool = False


def _saved_boot(data: Any) -> int:
    """BOOT_COUNT in a saved point (0 if none; ``from_dict`` validates it properly)."""
    boot = data.get("boot_count", 0) if isinstance(data, Mapping) else 0
    return boot if type(boot) is int else 0


def make_spec(config: SimConfig, station: int, unit: int) -> PointSpec:
    nozzles = tuple(NozzleSpec(GRADES[i], PRICES[i]) for i in range(config.nozzles))
    return PointSpec(nozzles, identity=f"GFD1-S{station:03d}-P{unit:03d}")


class SimPoint:
    """One point with everything the simulator keeps around it."""

    def __init__(
        self,
        station: int,
        unit: int,
        point: FuellingPoint,
        seed: str,  # this point's own: the simulator's seed, station, unit, boot
        journal: list[tuple[int, int, Sale]],
    ) -> None:
        self.station, self.unit, self.point = station, unit, point
        self._journal = journal  # the simulation's ledger, shared by every point
        self.registers = RegisterMap(point)
        self.transport_rng = random.Random(f"{seed}:transport")
        self.customer_rng = random.Random(f"{seed}:customers")
        self.ledger: list[Sale] = []
        self.next_arrival_s: float | None = None
        self.due_s = point.next_event_s()
        self.dropped = self.delayed = self.corrupted = self.busy = 0
        self.restored = False  # rebuilt from the state file (with a power-up)
        self.dart: DartPumpSide | None = None  # set when the point is a DART pump

    def collect(self) -> None:
        """Move the sales that ended into this point's and the simulation's ledgers, and
        note when the point next acts on its own. Call it after acting on the model."""
        for sale in self.point.drain_ended():
            self.ledger.append(sale)
            self._journal.append((self.station, self.unit, sale))
        self.due_s = self.point.next_event_s()

    def advance(self, now_s: float) -> None:
        self.point.advance(max(now_s, self.point.now_s))
        self.collect()

    def snapshot(self) -> dict[str, Any]:
        """Cheap counters of this point's transport and register map."""
        stats = self.registers.statistics()
        snapshot: dict[str, Any] = {
            "requests": stats.requests,
            "commands": stats.commands,
            "exceptions": {str(k): v for k, v in stats.exceptions.items()},
            "dropped": self.dropped,
            "delayed": self.delayed,
            "corrupted": self.corrupted,
            "busy": self.busy,
            "ended_sales": len(self.ledger),
        }
        if self.dart is not None:
            snapshot["dart"] = self.dart.snapshot()
        return snapshot


class Simulation:
    """Every point of the process; see the module docstring."""

    def __init__(self, config: SimConfig, saved: Mapping[tuple[int, int], Any] | None = None):
        self.config = config
        self.points: dict[tuple[int, int], SimPoint] = {}
        self.restored = 0
        self._ledger: list[tuple[int, int, Sale]] = []
        saved = saved or {}
        for station in range(config.stations):
            for unit in range(1, config.pumps_at(station) + 1):
                data = saved.get((station, unit))
                # A restart draws afresh: seeded with the BOOT_COUNT the point comes up with.
                seed = f"{config.seed}:{station}:{unit}:{_saved_boot(data) + 1}"
                model_rng = random.Random(f"{seed}:model")
                if data is not None:
                    point = FuellingPoint.from_dict(data, model_rng, power_up=True)
                    self.restored += 1
                else:
                    spec = make_spec(config, station, unit)
                    point = FuellingPoint(spec, model_rng, settings=SimSettings(mode=config.mode))
                sim = SimPoint(station, unit, point, seed, self._ledger)
                sim.restored = data is not None
                self.points[station, unit] = sim

    def point(self, station: int, unit: int) -> SimPoint:
        try:
            return self.points[station, unit]
        except KeyError:
            raise KeyError(f"no pump {unit} at station {station}") from None

    def points_by_key(self) -> dict[tuple[int, int], FuellingPoint]:
        """The models by (station, unit), for the state file."""
        return {key: sim.point for key, sim in self.points.items()}

    def units(self, station: int) -> list[int]:
        return [u for (s, u) in self.points if s == station]

    # -- the Modbus servers -------------------------------------------------------------

    def serve(self, station: int, request: Request, now_s: float, *, rtu: bool) -> Answer | None:
        """Answer ``request`` at model time ``now_s``; None when no such unit exists."""
        sim = self.points.get((station, request.unit))
        if sim is None:
            return None
        faults, rng = sim.point.faults, sim.transport_rng
        if faults.busy_reply(rng):
            sim.busy += 1
            reply = sim.registers.refuse(request, ExceptionCode.DEVICE_BUSY)
        else:
            try:
                reply = sim.registers.handle(request, now_s)
            except Exception:  # a model bug: the device fails, not the whole simulator
                log.exception("sim.device_failure", station=station, unit=request.unit)
                reply = sim.registers.refuse(request, ExceptionCode.DEVICE_FAILURE)
            sim.collect()
        return self._deliver(sim, reply, rtu=rtu)

    def refuse(
        self, station: int, unit: int, function: int, code: ExceptionCode, *, rtu: bool
    ) -> Answer | None:
        """A sound frame the decoder refused (unknown function, bad quantity)."""
        sim = self.points.get((station, unit))
        if sim is None:
            return None
        return self._deliver(sim, Reply(unit, function, exception_code=code), rtu=rtu)

    def _deliver(self, sim: SimPoint, reply: Reply, *, rtu: bool) -> Answer:
        faults, rng = sim.point.faults, sim.transport_rng
        if faults.drop_reply(rng):
            sim.dropped += 1
            return Answer(None)
        delay = faults.reply_delay_s(rng)
        sim.delayed += delay > 0
        corrupt = rtu and faults.corrupt_crc(rng)
        sim.corrupted += corrupt
        return Answer(reply, delay, corrupt)

    # -- the clock ----------------------------------------------------------------------

    def tick(self, now_s: float) -> None:
        """Let random customers arrive and advance each point that has something to do by
        ``now_s``. The others keep their model time: a read advances its point first, and
        :meth:`advance_all` brings all up to date for a snapshot. With thousands of idle
        points, advancing every one every tick would cost most of a CPU."""
        rate = self.config.customers_per_minute / 60.0
        for sim in self.points.values():
            if rate and (sim.next_arrival_s is None or sim.next_arrival_s <= now_s):
                self._arrivals(sim, now_s, rate)
            if sim.due_s is not None and sim.due_s <= now_s:
                sim.advance(now_s)

    def advance_all(self, now_s: float) -> None:
        """Advance every point to ``now_s`` (before persisting, or listing the ledger)."""
        for sim in self.points.values():
            sim.advance(now_s)

    def _arrivals(self, sim: SimPoint, now_s: float, rate: float) -> None:
        rng = sim.customer_rng
        if sim.next_arrival_s is None:
            sim.next_arrival_s = now_s + rng.expovariate(rate)
        while sim.next_arrival_s <= now_s:
            at = max(sim.next_arrival_s, sim.point.now_s)
            sim.advance(at)
            if sim.point.customers < MAX_QUEUE:  # else the customer drives on
                nozzles = sim.point.spec.nozzle_count
                patience = self.config.patience_s
                customer = random_customer(rng, nozzles, at_s=at, patience_s=patience)
                sim.point.add_customer(customer)
                sim.collect()
            sim.next_arrival_s += rng.expovariate(rate)

    # -- the ledger ---------------------------------------------------------------------

    def ledger(self) -> list[tuple[int, int, Sale]]:
        """Every sale ended since the process started, in the order they ended."""
        return list(self._ledger)

    def statistics(self) -> dict[str, Any]:
        totals = {"requests": 0, "dropped": 0, "delayed": 0, "corrupted": 0, "busy": 0}
        for sim in self.points.values():
            snap = sim.snapshot()
            for key in totals:
                totals[key] += snap[key]
        return {"points": len(self.points), "ended_sales": len(self._ledger), **totals}
