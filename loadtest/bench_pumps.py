"""``fuelswitch bench pumps``: PumpActors polling simulated pumps over loopback Modbus TCP.

One switch-side process (this one) and the simulator (``fuelswitch sim pumps``, started
here as a subprocess) share the machine; everything below is measured in one run.

1. ``modbus_ratio``: PumpActors polling back to back (both poll intervals 0) through
   :class:`~devices.gfd1_driver.Gfd1Driver` on one :class:`~devices.modbus.ModbusTcpClient`,
   against a bare loop on one trio TCP stream that keeps the same number of FC 04 status
   reads (IR 0-56) in flight, framed by the same pymodbus framer (``MbapCodec``). Both
   count replies over the same fixed window against the same simulator, in alternating
   rounds (best of each), so a noisy neighbour hurts both sides alike. Whichever process
   is the bottleneck sets a side's throughput, and on a two-core box the raw loop is
   usually held back by the simulator, not by itself; so both sides' CPU per transaction
   is reported too, and ``cpu_ratio`` (raw ÷ actors, per transaction) is the switch-side
   overhead whatever the simulator manages.
2. ``max_pumps_1hz_half_core``: stepping pump counts, each step a fresh simulator with
   stations of at most 247 units (one Modbus unit id per pump) and one client per station
   gateway; every pump polled by its PumpActor at ``idle_poll_s`` = 1 s. After a warm-up,
   this process's CPU (``time.process_time()``) over a window of several seconds, divided
   by the window's wall time, must stay under half a core, and the polls counted in the
   window must reach the nominal rate (within ``min_rate``). The largest passing count
   is the figure; stepping stops at the first step that fails.
3. ``poll_p50_ms`` / ``poll_p99_ms``: the latency of ``Gfd1Driver.status()`` at that step
   (from the call to the decoded status block, the wait for a pipeline slot included),
   measured by a driver subclass, so the PumpActor runs unmodified.

The simulator's CPU comes from ``/proc/<pid>/stat`` over the same windows (psutil is not a
dependency), so the table shows when the simulator, not the switch, was the limit.
"""

from __future__ import annotations

import gc
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import trio
from rich.console import Console
from rich.table import Table

from actors import ROOT, ActorSystem, ChildSpec, DynamicSupervisor, open_system
from devices.driver import DriverError
from devices.gfd1 import STATUS_COUNT, STATUS_START, StatusBlock
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import MbapCodec, ModbusTcpClient, RegisterClient, Request
from devices.modbus.mbap import MbapReply
from devices.pump import PumpActor
from loadtest.bench_journal import percentile
from switch.store import migrate, open_database
from switch.store.admin import create_database, drop_database
from switch.store.journal import Journal, journal_writer_spec

TARGETS: dict[str, tuple[str, float]] = {
    "modbus_ratio": (">=", 0.7),
    "max_pumps_1hz_half_core": (">=", 5000.0),
}

HOST = "127.0.0.1"
MAX_UNITS = 247  # Modbus unit ids per gateway
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class PumpBenchConfig:
    depth: int = 4  # requests in flight per connection: the client's default max_in_flight
    step_depth: int = 32  # in the stepping phase: a tick's polls of a station in one write
    ratio_pumps: int = 200  # PumpActors sharing the one connection of the ratio phase
    ratio_warmup_s: float = 1.0
    ratio_window_s: float = 2.0
    ratio_rounds: int = 5
    steps: tuple[int, ...] = (1000, 2000, 3000, 4000, 5000, 7000, 10_000)
    pumps_per_station: int = 200
    idle_poll_s: float = 1.0
    start_rate: float = 1000.0  # actor starts per second, paced so that poll phases spread
    warmup_s: float = 3.0
    window_s: float = 10.0
    cpu_limit: float = 0.5  # of one core
    min_rate: float = 0.95  # of the nominal poll rate, for a step to count as "at 1 Hz"

    def __post_init__(self) -> None:
        if not 1 <= self.pumps_per_station <= MAX_UNITS or not 1 <= self.ratio_pumps <= MAX_UNITS:
            raise ValueError(f"a station has 1..{MAX_UNITS} pumps (Modbus unit ids)")
        if not self.steps or list(self.steps) != sorted(self.steps):
            raise ValueError("steps must be pump counts in increasing order")

    @classmethod
    def quick(cls) -> PumpBenchConfig:
        return cls(
            ratio_pumps=20,
            ratio_warmup_s=0.3,
            ratio_window_s=0.7,
            ratio_rounds=1,
            steps=(20, 60),
            pumps_per_station=25,
            start_rate=200.0,
            warmup_s=1.0,
            window_s=2.0,
        )


# -- measuring -----------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far (Linux ``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def latency_ms(samples: list[float], q: float) -> float:
    return percentile(samples, q) * 1000 if samples else math.nan


class PollProbe:
    """Counts and times status reads for every driver of a run (mutable, shared)."""

    __slots__ = ("errors", "latencies", "polls", "recording")

    def __init__(self) -> None:
        self.polls = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.recording = False


class TimedGfd1Driver(Gfd1Driver):
    """The GFD-1 driver with its status read timed: the PumpActor's poll is exactly one
    ``status()`` call, so this is the poll latency as the actor sees it, client queueing
    and decoding included, without touching the actor."""

    def __init__(
        self, client: RegisterClient, unit: int, probe: PollProbe, *, nozzles: int = 2
    ) -> None:
        super().__init__(client, unit, nozzles=nozzles)
        self.probe = probe

    async def status(self) -> StatusBlock:
        probe = self.probe
        t0 = time.perf_counter()
        try:
            status = await super().status()
        except DriverError:
            probe.errors += 1
            raise
        probe.polls += 1
        if probe.recording:
            probe.latencies.append(time.perf_counter() - t0)
        return status


@dataclass(frozen=True, slots=True)
class Window:
    """What one measuring window saw: wall time, transactions, CPU on both sides."""

    wall_s: float
    transactions: int
    cpu_s: float
    sim_cpu_s: float
    gc_s: float  # in the cyclic collector (part of cpu_s)
    gc_longest_s: float

    @property
    def per_s(self) -> float:
        return self.transactions / self.wall_s

    @property
    def cpu_us_per_tx(self) -> float:
        return self.cpu_s / max(1, self.transactions) * 1e6

    @property
    def sim_cpu(self) -> float:
        return self.sim_cpu_s / self.wall_s


class GcClock:
    """Time spent in CPython's cyclic collector (a ``gc.callbacks`` entry): with thousands
    of long-lived actors, a full collection is a pause every poll in flight waits out."""

    def __init__(self) -> None:
        self.total_s = self.longest_s = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.total_s += took
        self.longest_s = max(self.longest_s, took)
        self.collections += 1


class Meter:
    """Wall clock, this process's CPU (and its GC time) and the simulator's CPU, from
    ``start`` to ``stop``."""

    def __init__(self, sim_pid: int) -> None:
        self.sim_pid = sim_pid
        self.t0 = self.c0 = self.s0 = 0.0
        self.gc = GcClock()

    def start(self) -> None:
        gc.callbacks.append(self.gc)
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.s0 = process_cpu_s(self.sim_pid)

    def stop(self, transactions: int) -> Window:
        wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        gc.callbacks.remove(self.gc)
        sim_cpu = process_cpu_s(self.sim_pid) - self.s0
        return Window(wall, transactions, cpu, sim_cpu, self.gc.total_s, self.gc.longest_s)


# -- the simulator -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulator:
    pid: int
    ports: tuple[int, ...]


@asynccontextmanager
async def run_simulator(
    stations: int, pumps_per_station: int, *, timeout: float = 60.0
) -> AsyncIterator[Simulator]:
    """``fuelswitch sim pumps`` in a subprocess; yields once its gateways listen (its
    JSON ready line); SIGTERM (then SIGKILL) when the block is left."""
    command = [
        sys.executable, "-m", "switch.cli", "sim", "pumps",
        "--stations", str(stations), "--pumps-per-station", str(pumps_per_station),
        "--port-base", "0",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:  # stderr: a file never blocks the way a pipe can
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
        )
        try:
            assert process.stdout is not None
            line = b""
            with trio.move_on_after(timeout):
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(1 << 16)
                    if not chunk:
                        break
                    line += chunk
            if not line.endswith(b"\n"):
                log.seek(0)
                error = log.read().decode(errors="replace").strip()
                raise RuntimeError(f"the simulator did not start: {error or 'no ready line'}")
            ready = orjson.loads(line)
            yield Simulator(process.pid, tuple(s["port"] for s in ready["stations"]))
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process)


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
    if process.stdout is not None:
        await process.stdout.aclose()


# -- the raw baseline ----------------------------------------------------------------------


async def raw_window(
    sim: Simulator, units: int, depth: int, warmup_s: float, window_s: float
) -> Window:
    """The bare loop: one stream, ``depth`` status reads in flight, a new one per reply.

    Frames are built and split by :class:`~devices.modbus.MbapCodec` (pymodbus's socket
    framer and PDU classes); no transaction table, no timeouts, no tasks but this one.
    Unit ids cycle over the station as the actors' do.
    """
    codec = MbapCodec()
    requests = [Request.read_input(u, STATUS_START, STATUS_COUNT) for u in range(1, units + 1)]
    sent = 0

    def frames(n: int) -> bytes:
        nonlocal sent
        out = []
        for _ in range(n):
            sent += 1
            out.append(codec.encode(sent % 0xFFFF + 1, requests[sent % units]))
        return b"".join(out)

    meter = Meter(sim.pid)
    stream = await trio.open_tcp_stream(HOST, sim.ports[0])
    async with stream:
        await stream.send_all(frames(depth))
        warm_until = time.perf_counter() + warmup_s
        stop_at = math.inf
        replies = 0
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                raise RuntimeError("the simulator closed the raw connection")
            events = codec.feed(data)
            for event in events:
                if not isinstance(event, MbapReply) or event.reply.exception_code is not None:
                    raise RuntimeError(f"raw loop: unexpected reply {event!r}")
            now = time.perf_counter()
            if now >= stop_at:
                return meter.stop(replies)
            if stop_at < math.inf:
                replies += len(events)
            elif now >= warm_until:
                meter.start()
                stop_at = now + window_s
            await stream.send_all(frames(len(events)))


# -- PumpActors ----------------------------------------------------------------------------


def pump_spec(
    client: RegisterClient,
    unit: int,
    journal: Journal,
    probe: PollProbe,
    stream_id: str,
    poll_s: float,
) -> ChildSpec:
    driver = TimedGfd1Driver(client, unit, probe)
    return ChildSpec(
        f"p{unit}",
        lambda: PumpActor(
            driver, journal, stream_id=stream_id, active_poll_s=poll_s, idle_poll_s=poll_s
        ),
    )


async def start_station(system: ActorSystem, name: str) -> str:
    spec = ChildSpec(name, lambda: DynamicSupervisor(intensity=10, period=5.0), shutdown=math.inf)
    await system.start_child(spec)
    return name


async def actor_window(
    system: ActorSystem,
    journal: Journal,
    sim: Simulator,
    client: ModbusTcpClient,
    config: PumpBenchConfig,
    round_no: int,
    run_id: str,
) -> Window:
    """``ratio_pumps`` PumpActors polling back to back on one client, counted by the
    client's own statistics (replies matched) over the window."""
    probe = PollProbe()
    station = await start_station(system, f"ratio{round_no}")
    try:
        async with trio.open_nursery() as nursery:
            for unit in range(1, config.ratio_pumps + 1):
                stream_id = f"pumpbench:{run_id}.ratio.p{unit}"
                spec = pump_spec(client, unit, journal, probe, stream_id, 0.0)
                nursery.start_soon(partial(system.start_child, spec, supervisor=station))
        await trio.sleep(config.ratio_warmup_s)
        meter = Meter(sim.pid)
        before = client.statistics().responses
        meter.start()
        await trio.sleep(config.ratio_window_s)
        window = meter.stop(client.statistics().responses - before)
    finally:
        with trio.CancelScope(shield=True):
            await system.terminate_child(ROOT, station)
    if probe.errors:
        raise RuntimeError(f"{probe.errors} status reads failed while polling flat out")
    return window


async def measure_ratio(
    system: ActorSystem, journal: Journal, config: PumpBenchConfig, run_id: str
) -> dict[str, Any]:
    raw: list[Window] = []
    actor: list[Window] = []
    async with (
        run_simulator(1, config.ratio_pumps) as sim,
        ModbusTcpClient(HOST, sim.ports[0], max_in_flight=config.depth) as client,
    ):
        for round_no in range(config.ratio_rounds):
            raw.append(
                await raw_window(
                    sim,
                    config.ratio_pumps,
                    config.depth,
                    config.ratio_warmup_s,
                    config.ratio_window_s,
                )
            )
            actor.append(await actor_window(system, journal, sim, client, config, round_no, run_id))
    best_raw = max(raw, key=lambda w: w.per_s)
    best_actor = max(actor, key=lambda w: w.per_s)
    return {
        "modbus_ratio": best_actor.per_s / best_raw.per_s,
        "actor_tx_per_s": best_actor.per_s,
        "raw_tx_per_s": best_raw.per_s,
        "actor_cpu_us_per_tx": best_actor.cpu_us_per_tx,
        "raw_cpu_us_per_tx": best_raw.cpu_us_per_tx,
        "cpu_ratio": best_raw.cpu_us_per_tx / best_actor.cpu_us_per_tx,
        "actor_cpu": best_actor.cpu_s / best_actor.wall_s,
        "raw_cpu": best_raw.cpu_s / best_raw.wall_s,
        "actor_sim_cpu": best_actor.sim_cpu,
        "raw_sim_cpu": best_raw.sim_cpu,
        "ratio_pumps": config.ratio_pumps,
        "depth": config.depth,
    }


# -- stepping pump counts at 1 Hz ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    pumps: int
    stations: int
    start_s: float  # to start every PumpActor (journal load, status, totals, contact)
    cpu: float  # this process, fraction of one core over the window
    sim_cpu: float  # the simulator's
    polls_per_s: float
    tx_per_s: float  # Modbus transactions, from the clients' statistics
    cpu_us_per_poll: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    gc_share: float  # of the window, in the cyclic collector
    gc_longest_ms: float
    errors: int
    passed: bool
    limit: str  # what failed: "cpu", "rate", "cpu+rate", or ""


async def measure_step(
    system: ActorSystem, journal: Journal, config: PumpBenchConfig, pumps: int, run_id: str
) -> Step:
    stations = math.ceil(pumps / config.pumps_per_station)
    probe = PollProbe()
    names: list[str] = []
    async with run_simulator(stations, config.pumps_per_station) as sim, AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                ModbusTcpClient(HOST, port, max_in_flight=config.step_depth)
            )
            for port in sim.ports
        ]
        try:
            for s in range(stations):
                name = await start_station(system, f"n{pumps}s{s}")
                names.append(name)  # started: terminated on the way out, whatever happens
            start_s = await _start_paced(
                system, journal, config, pumps, clients, names, probe, run_id
            )
            await trio.sleep(config.warmup_s)
            meter = Meter(sim.pid)
            polls0, errors0 = probe.polls, probe.errors
            tx0 = sum(c.statistics().responses for c in clients)
            probe.recording = True
            meter.start()
            await trio.sleep(config.window_s)
            window = meter.stop(sum(c.statistics().responses for c in clients) - tx0)
            probe.recording = False
            polls, errors = probe.polls - polls0, probe.errors - errors0
        finally:
            with trio.CancelScope(shield=True):
                for name in names:
                    await system.terminate_child(ROOT, name)
    cpu = window.cpu_s / window.wall_s
    polls_per_s = polls / window.wall_s
    cpu_ok = cpu < config.cpu_limit
    rate_ok = polls_per_s >= config.min_rate * pumps / config.idle_poll_s
    limit = "+".join(what for what, ok in (("cpu", cpu_ok), ("rate", rate_ok)) if not ok)
    latencies = probe.latencies
    return Step(
        pumps=pumps,
        stations=stations,
        start_s=start_s,
        cpu=cpu,
        sim_cpu=window.sim_cpu,
        polls_per_s=polls_per_s,
        tx_per_s=window.per_s,
        cpu_us_per_poll=window.cpu_s / max(1, polls) * 1e6,
        p50_ms=latency_ms(latencies, 0.50),
        p99_ms=latency_ms(latencies, 0.99),
        max_ms=max(latencies, default=math.nan) * 1000,
        gc_share=window.gc_s / window.wall_s,
        gc_longest_ms=window.gc_longest_s * 1000,
        errors=errors,
        passed=cpu_ok and rate_ok,
        limit=limit,
    )


async def _start_paced(
    system: ActorSystem,
    journal: Journal,
    config: PumpBenchConfig,
    pumps: int,
    clients: list[ModbusTcpClient],
    stations: list[str],
    probe: PollProbe,
    run_id: str,
) -> float:
    """Start the actors at ``start_rate``, round robin over the stations.

    A PumpActor polls first when it starts, then ``idle_poll_s`` after each poll; starting
    them all at once would make every pump poll in the same instant of every second, a
    burst no real fleet produces. Pacing spreads the phases (the start itself - a journal
    load, two reads and a ``contact`` append per pump - is not what is measured).
    """
    limiter = trio.CapacityLimiter(256)
    t0 = time.perf_counter()
    begin = trio.current_time()

    async def start(i: int) -> None:
        s, unit = i % len(stations), i // len(stations) + 1
        stream_id = f"pumpbench:{run_id}.n{pumps}.s{s}.p{unit}"
        spec = pump_spec(clients[s], unit, journal, probe, stream_id, config.idle_poll_s)
        async with limiter:
            await system.start_child(spec, supervisor=stations[s])

    async with trio.open_nursery() as nursery:
        for i in range(pumps):
            await trio.sleep_until(begin + i / config.start_rate)
            nursery.start_soon(start, i)
    return time.perf_counter() - t0


# -- the whole run -------------------------------------------------------------------------


async def run_pump_bench(server_url: str, config: PumpBenchConfig) -> dict[str, Any]:
    run_id = secrets.token_hex(4)
    name = f"bench_pumps_{run_id}"
    load_before = os.getloadavg()[0]
    url = await create_database(server_url, name)
    steps: list[Step] = []
    try:
        async with open_database(url, max_size=4) as db:
            await migrate(db)
            async with open_system([journal_writer_spec(db)], intensity=10) as system:
                journal = Journal(system, db)
                ratio = await measure_ratio(system, journal, config, run_id)
                for pumps in config.steps:
                    step = await measure_step(system, journal, config, pumps, run_id)
                    steps.append(step)
                    if not step.passed:
                        break
    finally:
        await drop_database(server_url, name)
    # Other work on the machine shows up here: the figures are only as quiet as the box was.
    load = {"loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]}
    return {**ratio, **summarize(steps, config), **load}


def summarize(steps: list[Step], config: PumpBenchConfig) -> dict[str, Any]:
    """The headline figures from the steps: those of the largest passing step (or of the
    first step, when none passed, with ``max_pumps_1hz_half_core`` 0)."""
    passed = [s for s in steps if s.passed]
    best = passed[-1] if passed else steps[0]
    return {
        "max_pumps_1hz_half_core": best.pumps if passed else 0,
        "poll_p50_ms": best.p50_ms,
        "poll_p99_ms": best.p99_ms,
        "poll_max_ms": best.max_ms,
        "cpu_at_max": best.cpu,
        "sim_cpu_at_max": best.sim_cpu,
        "polls_per_s_at_max": best.polls_per_s,
        "tx_per_s_at_max": best.tx_per_s,
        "cpu_us_per_poll": best.cpu_us_per_poll,
        "gc_share_at_max": best.gc_share,
        "gc_longest_ms_at_max": best.gc_longest_ms,
        # A straight line through the origin; fixed costs make the truth a little higher.
        "est_pumps_at_half_core": config.cpu_limit / best.cpu * best.pumps,
        "pumps_tried": [s.pumps for s in steps],
        "stopped_by": steps[-1].limit or "nothing: every step passed",
        "steps": [asdict(s) for s in steps],
        "pumps_per_station": config.pumps_per_station,
        "idle_poll_s": config.idle_poll_s,
        "window_s": config.window_s,
        "cores": os.cpu_count(),
    }


def print_steps(steps: list[dict[str, Any]]) -> None:
    """One row per pump count tried, before the shared summary table."""
    table = Table(title="PumpActors polling at 1 Hz: one row per pump count tried")
    for column in ("pumps", "CPU", "sim CPU", "polls/s", "µs/poll", "p50 ms", "p99 ms", "err", ""):
        table.add_column(column, justify="right")
    for s in steps:
        table.add_row(
            f"{s['pumps']:,}",
            f"{s['cpu']:.0%}",
            f"{s['sim_cpu']:.0%}",
            f"{s['polls_per_s']:,.0f}",
            f"{s['cpu_us_per_poll']:.0f}",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.1f}",
            str(s["errors"]),
            "ok" if s["passed"] else f"MISS {s['limit']}",
        )
    Console(highlight=False).print(table)
