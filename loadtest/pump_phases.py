"""The phases of ``fuelswitch bench pumps`` and their configuration: the Modbus ratio
(PumpActors against a bare loop on one connection) and the stepping of pump counts at
1 Hz. :mod:`loadtest.bench_pumps` runs them and summarizes; the instruments they read
are in :mod:`loadtest.pump_meter`. Split out to keep each module to one concern.
"""

from __future__ import annotations

import math
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from actors import ROOT, ActorSystem, ChildSpec, DynamicSupervisor
from devices.gfd1 import STATUS_COUNT, STATUS_START
from devices.modbus import MbapCodec, ModbusTcpClient, RegisterClient, Request
from devices.modbus.mbap import MbapReply
from devices.pump import PumpActor
from loadtest.pump_meter import (
    HOST,
    Meter,
    PollProbe,
    Simulator,
    TimedGfd1Driver,
    Window,
    latency_ms,
    run_simulator,
)
from switch.store.journal import Journal

MAX_UNITS = 247  # Modbus unit ids per gateway


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
