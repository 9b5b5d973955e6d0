"""``fuelswitch loadtest`` end to end: world, arrivals, faults, kill, books, report.

Order of things: a fresh database and the processes (or an attached world); the totalizers
read before any arrival; the fault scenario applied; arrivals at their scheduled times, each
its own task, with the sampler, the live display and (if asked) the killer alongside; then
the customers still in flight finish, the switch settles what is left (no open order), and
the books are checked against the simulators. Any violation fails the run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
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
from .driver import Driver, open_loop
from .faults import FaultPlan
from .load_report import figures, print_table, verdicts, write_results
from .sampler import sample_switch
from .schedule import PumpPool, plan_arrivals, postpay_pumps
from .scrape import POLL_METRIC, add_buckets, bucket_quantile, parse_buckets
from .stats import Recorder
from .world import LoadWorld, WorldSpec, attach, create_database, pin, start_world

__all__ = ["LoadOptions", "run_loadtest"]

SETTLE_S = 120.0  # after the last customer: the switch closes what is still open
RECOVERY_LIMIT_S = 60.0


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


@dataclass(slots=True)
class KillRecord:
    at_s: float | None = None
    ready_s: float | None = None
    recovery_s: float | None = None
    in_flight: int = 0
    buckets: dict[float, float] = field(default_factory=dict)  # poll histogram before the kill


async def _totals(controls: Sequence[PumpControl], pumps: int) -> dict[tuple[str, int, int], int]:
    out: dict[tuple[str, int, int], int] = {}
    stations = list(controls[0].stations.values())

    async def read(control: PumpControl, part: Sequence[str]) -> None:
        for sid in part:
            for pump in range(1, pumps + 1):
                snap = await control.call("snapshot", station=sid, pump=pump)
                for nozzle, totals in enumerate(snap["totals"], start=1):
                    out[(sid, pump, nozzle)] = int(totals["volume_ml"])

    async with trio.open_nursery() as nursery:
        for i, control in enumerate(controls):
            nursery.start_soon(read, control, stations[i :: len(controls)])
    return out


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


async def _wait_ready(http: httpx.AsyncClient, api_url: str, timeout: float = 120.0) -> None:
    with trio.move_on_after(timeout):
        while True:
            try:
                if (await http.get(api_url + "/readyz", timeout=5.0)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.2)
    raise DemoError(f"the switch at {api_url} did not become ready")


async def _scrape(http: httpx.AsyncClient, api_url: str) -> dict[float, float]:
    try:
        reply = await http.get(api_url + "/metrics", timeout=10.0)
    except httpx.HTTPError:
        return {}
    return parse_buckets(reply.text, POLL_METRIC) if reply.status_code == 200 else {}


async def _killer(
    world: LoadWorld, driver: Driver, at_s: float, record: KillRecord, database_url: str
) -> None:
    await trio.sleep_until(driver.trio_t0 + at_s)
    record.buckets = await _scrape(world.http, world.api_url)
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
        f"  completed {recorder.completed}  in flight {driver.state.in_flight}"
        f"  sales/s {last.completed if last else 0}  errors {sum(recorder.errors.values())}"
        f"  retries {driver.state.retries}  switch CPU {cpu:.0f}%"
    )
    return Text(text, no_wrap=True, overflow="ellipsis")


async def _drive(
    world: LoadWorld, options: LoadOptions, recorder: Recorder, database_url: str, err: Console
) -> KillRecord:
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
        world.api_url,
        world.http,
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
            background.start_soon(sample_switch, lambda: world.switch_pid, recorder, driver.now_s)
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
                await open_loop(customers, arrivals, driver.trio_t0, driver.arrive)
            background.cancel_scope.cancel()
        live.update(_progress(driver, recorder, options))
    return kill


async def run_loadtest(options: LoadOptions, urls: ServerUrls | None) -> int:
    out, err = Console(), Console(stderr=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = options.out or options.home / "loadtest" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    db_name: str | None = None
    world: LoadWorld | None = None
    violations: list[Any] = []
    async with httpx.AsyncClient(limits=limits) as http:
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
                if not database_url:
                    raise DemoError("--config must name the switch's database_url")
            else:
                assert urls is not None
                db_name = f"load_{stamp.replace('-', '_')}_{secrets.token_hex(3)}"
                database_url = await create_database(urls.database_url, db_name)
                spec = WorldSpec(
                    home=options.home,
                    run_dir=run_dir,
                    stations=options.stations,
                    pumps=options.pumps,
                    postpay=postpay_pumps(options.pumps, options.postpay_share),
                    speed=options.speed,
                    seed=options.seed,
                    log_level=options.log_level,
                    switch_cpus=options.switch_cpus,
                    load_cpus=options.load_cpus,
                )
                err.print(f"[bold]fuelswitch loadtest[/] in {run_dir}: starting the world")
                world = await start_world(spec, database_url, urls.redis_url, http)
            await _wait_ready(http, world.api_url)
            before = await _totals(world.pumps, options.pumps)
            await _apply_faults(world, options.faults, options.pumps)
            err.print(f"switch at {world.api_url}; {options.scenario()}")
            recorder = Recorder()
            kill = await _drive(world, options, recorder, database_url, err)
            result, series = await _finish(
                world, options, recorder, kill, database_url, before, err
            )
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


async def _finish(
    world: LoadWorld,
    options: LoadOptions,
    recorder: Recorder,
    kill: KillRecord,
    database_url: str,
    before: Mapping[tuple[str, int, int], int],
    err: Console,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    buckets = add_buckets(kill.buckets, await _scrape(world.http, world.api_url))
    poll = {"p50": _ms(bucket_quantile(buckets, 0.5)), "p99": _ms(bucket_quantile(buckets, 0.99))}
    async with open_database(database_url, max_size=2) as db:
        with trio.move_on_after(SETTLE_S):
            while await books.open_orders(db):  # noqa: ASYNC110 - polling the database
                await trio.sleep(0.5)
        still_open = await books.open_orders(db)
        err.print(f"settled; {still_open} orders still open; checking the books")
        after = await _totals(world.pumps, options.pumps)
        moved = {key: after[key] - before.get(key, 0) for key in after}
        violations = await books.audit_books(
            db, world.config, world.pumps[0], world.providers, moved
        )
        callbacks = await books.callback_latencies(db)
    extra: dict[str, Any] = {
        "scenario": options.scenario(),
        "stations": options.stations,
        "pumps": options.stations * options.pumps,
        "faults": options.faults.to_json(),
        "authorized_before_callback": callbacks.authorized_first,
        "authorized_without_callback": callbacks.no_callback,
        "orders_open_at_end": still_open,
    }
    if options.kill_at_s is not None:
        extra |= {
            "kill_at_s": kill.at_s,
            "restart_ready_s": None if kill.ready_s is None else round(kill.ready_s, 3),
            "recovery_s": kill.recovery_s,
            "in_flight_at_kill": kill.in_flight,
        }
    result = figures(
        recorder,
        rate=options.rate,
        duration_s=options.duration_s,
        callback_s=callbacks.seconds,
        poll_ms=poll,
        violations=violations,
        extra=extra,
    )
    result["_violations"] = violations
    return result, recorder.series(max(1, round(options.duration_s)))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
