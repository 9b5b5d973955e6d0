"""``fuelswitch demo`` end to end: start the world, drive the customers, check the books.

The order of things matters. The database is created and migrated first (a fresh one per run,
so a run's books contain that run only); provider keys are generated once, before either
provider-simulator process starts, so the two never race to write them; the pump simulator's
post-pay pumps are switched to stand-alone and its totalizers read before the switch connects,
so the totals' movement covers exactly this run. Everything started is stopped in reverse
order, whatever happens, with SIGTERM and then SIGKILL after a grace period.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from switch.config import SwitchConfig, dump_config
from switch.invariants import Violation, check_books
from switch.routing import ChannelPolicy
from switch.store import ServerUrls, admin, migrate, open_database, open_store

from .client import SwitchClient
from .customers import Outcome, Progress, plan_customers, play
from .procs import ChildProcess, DemoError
from .report import print_summary, summarize
from .sims import (
    ProviderControl,
    PumpControl,
    fetch_provider_ledgers,
    fetch_pump_ledger,
    pump_totals,
    totals_moved,
)
from .world import build_config, station_id

__all__ = ["DemoOptions", "run_demo"]

FAULTY = ("main", "wechatpay")  # the channel that breaks mid-run: wechatpay-main
FAULTS: Mapping[str, Any] = {"error_rate": 0.7, "timeout_rate": 0.1, "timeout_hold_s": 6.0}
AUTO_PAY: Mapping[str, Any] = {"auto_pay": True, "auto_pay_delay_ms": 300}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    home: Path
    customers: int = 36
    stations: int = 3
    pumps: int = 4
    seed: int = 1
    json: bool = False
    keep: bool = False

    @property
    def spread_s(self) -> float:
        """Arrivals spread over 20-40 s: a queue at every pump, not a single burst."""
        return min(40.0, max(20.0, self.customers * 0.8))


class World:
    """What the demo started, for stopping it in reverse order."""

    def __init__(self, run_dir: Path, home: Path) -> None:
        self.run_dir = run_dir
        self.home = home
        self.children: list[ChildProcess] = []

    async def start(self, name: str, *args: str, **env: str) -> dict[str, Any]:
        child = ChildProcess(name, args, self.run_dir, {"FUELSWITCH_HOME": str(self.home), **env})
        self.children.append(child)
        return await child.start()

    async def stop(self) -> None:
        for child in reversed(self.children):
            await child.stop()


async def _create_database(server_url: str, name: str) -> str:
    url = await admin.create_database(server_url, name)
    async with open_database(url) as db:
        await migrate(db)
    return url


async def _generate_keys(home: Path, run_dir: Path) -> None:
    """``fuelswitch sim providers keys --merchants 2``: slow once (RSA), instant afterwards."""
    import os
    import sys

    with (run_dir / "keys.log").open("ab") as log:
        done = await trio.run_process(
            [sys.executable, "-m", "switch.cli", "sim", "providers", "keys", "--merchants", "2"],
            env={**os.environ, "FUELSWITCH_HOME": str(home)},
            stdout=log,
            stderr=log,
            check=False,
        )
    if done.returncode != 0:
        raise DemoError(f"generating provider keys failed; see {run_dir / 'keys.log'}")


def _progress_table(progress: Progress, started: float) -> Group:
    """One status line and the latest customers' results, each cut to the terminal width."""
    p = progress
    head = (
        f"[bold]{trio.current_time() - started:5.1f}s[/]  customers {p.done} done /"
        f" {p.arrived} arrived / {p.total}  sales {p.sales}  {p.litres_ml // 1000} L"
        f"  failovers {len(p.failovers)}  errors {p.errors}  {p.fault}"
    )
    lines = [Text.from_markup(head, overflow="ellipsis")]
    lines += [Text("  " + line, overflow="ellipsis", style="dim") for line in p.events]
    for line in lines:
        line.no_wrap = True
    return Group(*lines)


async def _inject_faults(
    control: ProviderControl, provider: str, spread_s: float, progress: Progress
) -> None:
    """Break the channel from 40 % to 80 % of the arrivals, so failover shows and then the
    channel's recovery (exploration brings traffic back)."""
    await trio.sleep(spread_s * 0.4)
    await control.patch_faults(provider, **FAULTS)
    progress.fault = "[red]wechatpay-main failing (5xx, timeouts)[/]"
    progress.note(f"fault: {provider} main answers 5xx / times out")
    await trio.sleep(spread_s * 0.4)
    await control.patch_faults(provider, error_rate=0.0, timeout_rate=0.0)
    progress.fault = "[green]wechatpay-main recovered[/]"
    progress.note(f"fault cleared: {provider} main")


async def _drive(
    config: SwitchConfig,
    api_url: str,
    pumps: PumpControl,
    faulty: ProviderControl,
    options: DemoOptions,
    console: Console,
) -> list[Outcome]:
    from switch.api.auth import TokenSigner

    stations = [s.id for s in config.stations]
    plans = plan_customers(
        options.customers, stations, options.pumps, options.seed, options.spread_s
    )
    signer = TokenSigner(config.auth.secret)
    locks = {(s, p): trio.Lock() for s in stations for p in range(1, options.pumps + 1)}
    paid: dict[tuple[str, int], set[int]] = {key: set() for key in locks}
    progress = Progress(total=len(plans))
    outcomes: list[Outcome] = []
    started = trio.current_time()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits) as http:

        async def customer(index: int) -> None:
            plan = plans[index]
            await trio.sleep_until(started + plan.arrive_s)
            token = signer.issue(f"demo-{plan.index}", "customer", ttl_s=3600, now=time.time())
            api = SwitchClient(api_url, http, token)
            key = (plan.station_id, plan.pump_no)
            outcomes.append(await play(plan, api, pumps, locks[key], paid[key], progress))

        with Live(_progress_table(progress, started), console=console, transient=False) as live:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_inject_faults, faulty, FAULTY[1], options.spread_s, progress)
                async with trio.open_nursery() as customers:
                    for i in range(len(plans)):
                        customers.start_soon(customer, i)
                    while progress.done < len(plans):
                        live.update(_progress_table(progress, started))
                        await trio.sleep(0.25)
                nursery.cancel_scope.cancel()
            live.update(_progress_table(progress, started))
    for o in outcomes:  # relative to the start of the arrivals
        o.started_at, o.finished_at = o.started_at - started, o.finished_at - started
    return sorted(outcomes, key=lambda o: o.plan.index)


async def run_demo(options: DemoOptions, urls: ServerUrls) -> int:
    out, err = Console(), Console(stderr=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = options.home / "demo" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    world = World(run_dir, options.home)
    db_name = f"demo_{stamp.replace('-', '_')}_{secrets.token_hex(3)}"
    database_url = await _create_database(urls.database_url, db_name)
    violations: list[Violation] = []
    sales = 0
    try:
        err.print(f"[bold]fuelswitch demo[/] in {run_dir} (database {db_name})")
        await _generate_keys(options.home, run_dir)
        pumps_ready = await world.start(
            "pumps",
            *("sim", "pumps", "--stations", str(options.stations)),
            *("--pumps-per-station", str(options.pumps), "--control-port", "0"),
            *("--state", str(run_dir / "pumps-state.json"), "--seed", str(options.seed)),
        )
        providers = {
            name: await world.start(
                f"providers-{name}",
                *("sim", "providers", "--control-port", "0", "--merchants", "2"),
                *("--seed", str(options.seed + i)),
            )
            for i, name in enumerate(("main", "backup"))
        }
        numbers = {s["station"]: station_id(i) for i, s in enumerate(pumps_ready["stations"])}
        pumps = PumpControl(pumps_ready["control_port"], numbers)
        async with httpx.AsyncClient() as http:
            controls = {name: ProviderControl(r["control"], http) for name, r in providers.items()}
            for control in controls.values():
                for provider in ("wechatpay", "alipay", "unionpay"):
                    await control.put_faults(provider, **AUTO_PAY)
            for sid in numbers.values():
                for pump in range(1, options.pumps + 1):
                    # A zero sale ends when the authorization times out: 10 s, not the
                    # default 2 min, so the demo's zero sales do not hold up their pump.
                    mode = 1 if pump == options.pumps else 0  # the last pump: post-pay
                    await pumps.call(
                        "configure", station=sid, pump=pump, mode=mode, auth_timeout_s=10
                    )
            totals_before = await pump_totals(pumps, options.pumps)
            host = pumps_ready.get("host", "127.0.0.1")
            config = build_config(
                home=run_dir,
                database_url=database_url,
                redis_url=urls.redis_url,
                secret=secrets.token_urlsafe(48).encode(),
                gateways=[(host, s["port"]) for s in pumps_ready["stations"]],
                pumps=options.pumps,
                providers=providers,
                seed=options.seed,
            )
            config_path = run_dir / "switch.toml"
            config_path.write_text(dump_config(config), encoding="utf-8")
            serve = await world.start(
                "switch",
                *("serve", "--config", str(config_path)),
                FUELSWITCH_DATABASE_URL=database_url,
                FUELSWITCH_REDIS_URL=urls.redis_url,
            )
            api_url = str(serve["http"]).rstrip("/")
            err.print(f"switch listening at {api_url} (docs {api_url}/docs)")
            outcomes = await _drive(config, api_url, pumps, controls[FAULTY[0]], options, err)
            ledgers = await fetch_provider_ledgers(list(controls.values()))
            pump_sales = await fetch_pump_ledger(pumps)
            moved = totals_moved(totals_before, await pump_totals(pumps, options.pumps))
            await pumps.aclose()
        channels = {
            c.config.name: (c.config.provider.value, c.config.merchant_id) for c in config.channels
        }
        policies = {
            c.config.name: ChannelPolicy.from_mapping(c.config.name, c.config.provider, c.routing)
            for c in config.channels
        }
        async with open_store(database_url, urls.redis_url) as store:
            violations = await check_books(
                store.db,
                provider_ledgers=ledgers,
                pump_ledger=pump_sales,
                pump_totals=moved,
                channels=channels,
            )
            summary = await summarize(store.db, outcomes, policies, violations)
        sales = summary.sales
        customers = [o.to_json() for o in outcomes]
        (run_dir / "customers.json").write_bytes(
            orjson.dumps(customers, option=orjson.OPT_INDENT_2)
        )
        (run_dir / "summary.json").write_bytes(
            orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2)
        )
        print_summary(out, summary)
        if options.json:
            line = {**summary.to_json(), "run_dir": str(run_dir), "database": db_name}
            print(orjson.dumps(line).decode(), flush=True)
        if options.keep:
            await _keep(out, api_url, providers, pumps_ready)
    finally:
        await world.stop()
        if not options.keep and not violations:
            with trio.CancelScope(shield=True):
                await admin.drop_database(urls.database_url, db_name)
    return 1 if violations or not sales else 0  # no sale at all: nothing was shown


async def _keep(
    console: Console, api_url: str, providers: Mapping[str, Any], pumps: Mapping[str, Any]
) -> None:
    console.print(f"API      {api_url}/v1   (OpenAPI docs: {api_url}/docs)")
    for name, ready in providers.items():
        console.print(f"provider simulators ({name}) control: {ready['control']}")
    console.print(f"pump simulator control (JSON lines): 127.0.0.1:{pumps['control_port']}")
    console.print("Everything keeps running; Ctrl-C stops it.")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return
