"""How far the load generator lags its schedule, and what it costs, with nothing else slow.

``python -m loadtest.gen_probe --rate 200 --duration 20`` starts the stand-in switch
(:mod:`loadtest.standin`) as its own process and drives the same customers as ``fuelswitch
loadtest`` at it (prepay and post-pay, over real sockets), sampling both processes' CPU.
The stand-in answers at once, so the lag and the CPU left are the generator's own; the final
JSON line has ``lag_p99_ms``, the generator's CPU (% of one core, and ms per arrival), HTTP
requests per arrival and the stand-in's CPU. ``--load-cpus`` pins the generator as the load
test does (the stand-in is started first, on every CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import orjson
import trio

from switch.demo.sims import PumpControl
from switch.demo.world import station_id

from .driver import Driver, open_loop, steady_gc
from .http_pool import HttpPool
from .load_cli import parse_cpus
from .load_report import cpu_figures
from .processes import Component, own_process
from .sampler import sample_world
from .schedule import PumpPool, plan_arrivals, postpay_pumps
from .stats import LAG, Recorder, percentiles
from .world import PUMP_CONTROL_CONNECTIONS, pin

__all__ = ["probe"]

SECRET = b"probe-secret-of-at-least-thirty-two-bytes"


async def probe(
    rate: float,
    duration_s: float,
    *,
    stations: int,
    pumps: int,
    sale_s: float,
    speed: float,
    everywhere: frozenset[int],
) -> dict[str, Any]:
    """Drive the stand-in at ``rate`` for ``duration_s``; the figures. The stand-in runs on
    ``everywhere`` (the CPUs this process had before pinning itself)."""
    command = [sys.executable, "-m", "loadtest.standin", "--sale-s", str(sale_s)]
    standin = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    try:
        assert standin.stdout is not None
        pin(standin.pid, everywhere)
        line = b""
        while not line.endswith(b"\n"):
            line += await standin.stdout.receive_some(4096)
        ready = orjson.loads(line)
        numbers = {i: station_id(i) for i in range(stations)}
        port = ready["control_port"]
        controls = [PumpControl(port, numbers) for _ in range(PUMP_CONTROL_CONNECTIONS)]
        postpay = postpay_pumps(pumps, 0.2)
        pool = PumpPool(list(numbers.values()), pumps, postpay, seed=1)
        recorder = Recorder()
        http = HttpPool(ready["http"])
        try:
            driver = Driver(
                http, SECRET, controls, pool, recorder, speed=speed, wall_t0=time.time()
            )
            arrivals = plan_arrivals(rate, duration_s, seed=1, postpay_share=0.2)
            components = [Component("standin", lambda: standin.pid), own_process()]
            driver.trio_t0 = trio.current_time()
            async with trio.open_nursery() as background:
                background.start_soon(sample_world, components, recorder, driver.now_s)
                with steady_gc():
                    async with trio.open_nursery() as customers:
                        await open_loop(customers, arrivals, driver.trio_t0, driver.arrive)
                background.cancel_scope.cancel()
        finally:
            await http.aclose()
        for control in controls:
            await control.aclose()
    finally:
        standin.kill()
        await standin.wait()
    lag = percentiles(recorder.histograms[LAG], scale=1e-3)
    cpu = cpu_figures(recorder)
    own = cpu["cpu_ms_per_sale_by_process"].get("loadgen")
    return {
        "rate": rate,
        "duration_s": duration_s,
        "arrivals": recorder.arrived,
        "completed": recorder.completed,
        "errors": dict(recorder.errors),
        "lag_p50_ms": lag["p50"],
        "lag_p99_ms": lag["p99"],
        "lag_max_ms": lag["max"],
        "loadgen_cpu_pct": cpu["cpu_pct_by_process"].get("loadgen"),
        "loadgen_cpu_ms_per_arrival": None
        if own is None
        else round(own * recorder.completed / max(1, recorder.arrived), 2),
        "standin_cpu_pct": cpu["cpu_pct_by_process"].get("standin"),
        "machine_cpu_pct": cpu["machine_cpu_pct"],
        "requests_per_arrival": round(driver.state.requests / max(1, recorder.arrived), 2),
        "connections_opened": http.opened,
        "load_cpus": sorted(os.sched_getaffinity(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gen_probe", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--pumps-per-station", type=int, default=10)
    parser.add_argument("--sale-s", type=float, default=3.0, help="stand-in sale time")
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--load-cpus", type=parse_cpus)
    args = parser.parse_args()
    everywhere = frozenset(os.sched_getaffinity(0))
    pin(0, args.load_cpus)
    result = trio.run(
        lambda: probe(
            args.rate,
            args.duration,
            stations=args.stations,
            pumps=args.pumps_per_station,
            sale_s=args.sale_s,
            speed=args.speed,
            everywhere=everywhere,
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
