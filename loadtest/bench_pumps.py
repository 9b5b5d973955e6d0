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

The instruments (CPU clocks, windows, the timed driver, the simulator subprocess) are in
:mod:`loadtest.pump_meter`, the two phases and :class:`PumpBenchConfig` in
:mod:`loadtest.pump_phases`; this module runs them and reports.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from actors import open_system
from loadtest.pump_phases import PumpBenchConfig, Step, measure_ratio, measure_step
from switch.store import migrate, open_database
from switch.store.admin import create_database, drop_database
from switch.store.journal import Journal, journal_writer_spec

__all__ = ["TARGETS", "PumpBenchConfig", "print_steps", "run_pump_bench", "summarize"]

TARGETS: dict[str, tuple[str, float]] = {
    "modbus_ratio": (">=", 0.7),
    "max_pumps_1hz_half_core": (">=", 5000.0),
}


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
