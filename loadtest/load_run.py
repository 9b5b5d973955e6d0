"""``fuelswitch loadtest`` end to end: world, arrivals, faults, kill, books, report.

Order of things: a fresh database and the processes (or an attached world); the totalizers
read before any arrival; the fault scenario applied; arrivals at their scheduled times, each
its own task, with the sampler, the live display and (if asked) the killer alongside; then
the customers still in flight finish, the switch settles what is left (no open order), and
the books are checked against the simulators. Any violation fails the run.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from rich.console import Console
from rich.live import Live
from rich.text import Text

from switch.demo.procs import DemoError
from switch.demo.sims import PumpControl
from switch.store import ServerUrls, admin, open_database

from . import books
from .driver import Driver, open_loop, steady_gc
from .faults import FaultPlan
from .http_pool import HttpPool
from .load_finish import KillRecord, RunFacts, finish, read_totals, scrape_poll
from .load_report import print_table, verdicts, write_results
from .processes import Component, affinities
from .sampler import load_components, sample_world
from .schedule import PumpPool, plan_arrivals, postpay_pumps
from .stats import Recorder
from .world import (
    LoadWorld,
    WorldSpec,
    attach,
    create_database,
    pin,
    start_world,
    switch_idle_poll_s,
    wait_ready,
)

__all__ = ["LoadOptions", "run_loadtest"]

RECOVERY_LIMIT_S = 60.0
HTTP_CONNECTIONS = 1000  # to the switch's API, kept alive
HTTP_TIMEOUT_S = 30.0  # a busy switch is slow, not gone: no retry before this


@dataclass(frozen=True, slots=True)
class LoadOptions:
    home: Path
    stations: int = 500
    pumps: int = 10
    rate: float = 200.0
    duration_s: float = 60.0
    seed: int = 1
    poisson: bool = True
    postpay_share: float = 0.2
    speed: float = 4.0
    idle_poll_s: float | None = None  # None: the switch's own
    faults: FaultPlan = field(default_factory=FaultPlan)
    kill_at_s: float | None = None
    switch_cpus: frozenset[int] | None = None
    load_cpus: frozenset[int] | None = None
    json: bool = False
    out: Path | None = None
    log_level: str = "info"
    target: str | None = None
    target_config: Path | None = None
    pump_control: int | None = None
    provider_controls: tuple[str, ...] = ()
    switch_pid: int | None = None

    def scenario(self) -> str:
        text = f"{self.stations}x{self.pumps} pumps, {self.rate:g}/s for {self.duration_s:g}s"
        if not self.faults.empty:
            text += f", faults {self.faults.to_json()}"
        if self.kill_at_s is not None:
            text += f", SIGKILL at {self.kill_at_s:g}s"
        return text


async def _apply_faults(world: LoadWorld, plan: FaultPlan, pumps: int) -> None:
    if plan.provider:
        for control in world.providers:
            for provider in ("wechatpay", "alipay", "unionpay"):
                await control.patch_faults(provider, **plan.provider_settings())
    if plan.pump:

        async def station(control: PumpControl, sid: str) -> None:
            for pump in range(1, pumps + 1):
                await control.call("faults", station=sid, pump=pump, **plan.pump)

        async with trio.open_nursery() as nursery:
            for i, sid in enumerate(world.pumps[0].stations.values()):
                nursery.start_soon(station, world.pumps[i % len(world.pumps)], sid)


async def _killer(
    world: LoadWorld, driver: Driver, at_s: float, record: KillRecord, database_url: str
) -> None:
    await trio.sleep_until(driver.trio_t0 + at_s)
    record.buckets = await scrape_poll(world.http, world.api_url)
    async with open_database(database_url, max_size=2) as db:
        in_flight = await books.in_flight_orders(db)
        record.in_flight = len(in_flight)
        killed_wall = datetime.now(UTC)
        record.at_s = driver.now_s()
        await world.kill_switch()
        await world.restart_switch()
        record.ready_s = driver.now_s() - record.at_s
        with trio.move_on_after(RECOVERY_LIMIT_S):
            while await books.unmoved(db, in_flight, killed_wall):  # noqa: ASYNC110 - polling the database
                await trio.sleep(0.1)
            record.recovery_s = round(driver.now_s() - record.at_s, 3)


def _progress(driver: Driver, recorder: Recorder, options: LoadOptions) -> Text:
    now = driver.now_s()
    last = recorder.windows.get(int(now) - 1)
    cpu = recorder.resources[-1].cpu_pct if recorder.resources else 0.0
    text = (
        f"{now:6.1f}s / {options.duration_s:g}s  arrived {recorder.arrived}"
        f"  accepted {recorder.accepted}  shed {recorder.shed}"
        f"  completed {recorder.completed}  in flight {driver.state.in_flight}"
        f"  sales/s {last.completed if last else 0}  errors {sum(recorder.errors.values())}"
        f"  retries {driver.state.retries}  switch CPU {cpu:.0f}%"
    )
    return Text(text, no_wrap=True, overflow="ellipsis")


async def _drive(
    world: LoadWorld,
    options: LoadOptions,
    recorder: Recorder,
    components: Sequence[Component],
    database_url: str,
    err: Console,
    api: HttpPool,
) -> tuple[KillRecord, Driver]:
    postpay = postpay_pumps(options.pumps, options.postpay_share)
    stations = list(world.pumps[0].stations.values())
    arrivals = plan_arrivals(
        options.rate,
        options.duration_s,
        seed=options.seed,
        postpay_share=options.postpay_share if postpay else 0.0,
        poisson=options.poisson,
    )
    pool = PumpPool(stations, options.pumps, postpay, options.seed)
    driver = Driver(
        api,
        world.config.auth.secret,
        world.pumps,
        pool,
        recorder,
        speed=options.speed,
        wall_t0=time.time(),
    )
    driver.trio_t0 = trio.current_time()
    kill = KillRecord()
    with Live(_progress(driver, recorder, options), console=err, transient=False) as live:
        async with trio.open_nursery() as background:
            background.start_soon(sample_world, components, recorder, driver.now_s)
            async with trio.open_nursery() as customers:
                if options.kill_at_s is not None:
                    customers.start_soon(
                        _killer, world, driver, options.kill_at_s, kill, database_url
                    )

                async def refresh() -> None:
                    while True:
                        live.update(_progress(driver, recorder, options))
                        await trio.sleep(0.5)

                background.start_soon(refresh)
                with steady_gc():
                    await open_loop(customers, arrivals, driver.trio_t0, driver.arrive)
            background.cancel_scope.cancel()
        live.update(_progress(driver, recorder, options))
    return kill, driver


def _facts(
    options: LoadOptions, driver: Driver, recorder: Recorder, pinned: dict[str, list[int]]
) -> RunFacts:
    """The run's own figures beside the recorder's: retries, requests per customer, and
    where each process was allowed to run (the proof that ``--*-cpus`` took effect)."""
    arrived = max(1, recorder.arrived)
    extra: dict[str, Any] = {
        "retries": driver.state.retries,
        "requests_per_arrival": round(driver.state.requests / arrived, 2),
        "cpu_affinity": pinned,
        "idle_poll_s": options.idle_poll_s or switch_idle_poll_s(),
    }
    if options.load_cpus:
        extra["load_cpus_pinned"] = set(os.sched_getaffinity(0)) == set(options.load_cpus)
    return RunFacts(
        scenario=options.scenario(),
        stations=options.stations,
        pumps=options.pumps,
        rate=options.rate,
        duration_s=options.duration_s,
        faults=options.faults.to_json(),
        kill_asked=options.kill_at_s is not None,
        extra=extra,
    )


async def run_loadtest(options: LoadOptions, urls: ServerUrls | None) -> int:
    out, err = Console(), Console(stderr=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = options.out or options.home / "loadtest" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    db_name: str | None = None
    world: LoadWorld | None = None
    violations: list[Any] = []
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:  # the simulators
        try:
            if options.target is not None:
                assert options.target_config is not None and options.pump_control is not None
                world = await attach(
                    options.target,
                    options.target_config,
                    options.pump_control,
                    options.provider_controls,
                    http,
                )
                world.switch_pid_hint = options.switch_pid
                pin(0, options.load_cpus)
                database_url = world.config.database_url or ""
                redis_url = world.config.redis_url
                if not database_url:
                    raise DemoError("--config must name the switch's database_url")
            else:
                assert urls is not None
                db_name = f"load_{stamp.replace('-', '_')}_{secrets.token_hex(3)}"
                database_url = await create_database(urls.database_url, db_name)
                redis_url = urls.redis_url
                spec = WorldSpec(
                    home=options.home,
                    run_dir=run_dir,
                    stations=options.stations,
                    pumps=options.pumps,
                    postpay=postpay_pumps(options.pumps, options.postpay_share),
                    speed=options.speed,
                    idle_poll_s=options.idle_poll_s,
                    seed=options.seed,
                    log_level=options.log_level,
                    switch_cpus=options.switch_cpus,
                    load_cpus=options.load_cpus,
                )
                err.print(f"[bold]fuelswitch loadtest[/] in {run_dir}: starting the world")
                world = await start_world(spec, database_url, redis_url, http)
            await wait_ready(http, world.api_url)
            before = await read_totals(world.pumps, options.pumps)
            await _apply_faults(world, options.faults, options.pumps)
            err.print(f"switch at {world.api_url}; {options.scenario()}")
            recorder = Recorder()
            controls = (options.pump_control, options.provider_controls)
            components = load_components(world, database_url, redis_url, controls)
            pinned = affinities(components)
            api = HttpPool(world.api_url, size=HTTP_CONNECTIONS, timeout_s=HTTP_TIMEOUT_S)
            try:
                kill, driver = await _drive(
                    world, options, recorder, components, database_url, err, api
                )
            finally:
                with trio.CancelScope(shield=True):
                    await api.aclose()
            facts = _facts(options, driver, recorder, pinned)
            result, series = await finish(world, facts, recorder, kill, database_url, before, err)
            violations = result.pop("_violations")
            result["run_dir"] = str(run_dir)
            ok = verdicts(result)
            result["targets_met"] = ok
            json_path, chart = write_results(run_dir, result, series, violations)
            print_table(err, result, ok)
            err.print(f"results: {json_path}  chart: {chart}")
            for v in violations[:20]:
                err.print(f"[red]violation[/] {v.kind.value} {v.subject}: {v.detail}")
            if options.json:
                out.file.write(orjson.dumps(result).decode() + "\n")
                out.file.flush()
        finally:
            if world is not None:
                with trio.CancelScope(shield=True):
                    await world.aclose()
            if db_name is not None and urls is not None and not violations:
                with trio.CancelScope(shield=True):
                    await admin.drop_database(urls.database_url, db_name)
    return 1 if violations else 0
