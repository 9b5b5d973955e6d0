"""Instruments of ``fuelswitch bench pumps``: CPU and GC clocks, measuring windows, the
timed driver that probes every poll, and the simulator run as a subprocess.

Split out of :mod:`loadtest.bench_pumps` so that the phases (:mod:`loadtest.pump_phases`)
read as what they measure, not how. The simulator's CPU comes from ``/proc/<pid>/stat``
(psutil is not a dependency).
"""

from __future__ import annotations

import gc
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import trio

from devices.driver import DriverError
from devices.gfd1 import StatusBlock
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import RegisterClient
from loadtest.bench_journal import percentile

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
    ready: dict[str, Any]  # the simulator's ready line


@asynccontextmanager
async def run_simulator(
    stations: int,
    pumps_per_station: int,
    *extra: str,
    timeout: float = 60.0,
) -> AsyncIterator[Simulator]:
    """``fuelswitch sim pumps`` in a subprocess; yields once its gateways listen (its
    JSON ready line); SIGTERM (then SIGKILL) when the block is left."""
    command = [
        sys.executable, "-m", "switch.cli", "sim", "pumps",
        "--stations", str(stations), "--pumps-per-station", str(pumps_per_station),
        "--port-base", "0", *extra,
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
            yield Simulator(process.pid, tuple(s["port"] for s in ready["stations"]), ready)
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
