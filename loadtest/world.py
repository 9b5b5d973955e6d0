"""The load test's world: the simulators and the switch, each its own process.

Built from :mod:`switch.demo`'s parts (child processes with a JSON ready line, the simulator
controls, the generated configuration), so the load test starts everything exactly as an
operator would and as the demo does. Differences from the demo: the switch listens on a fixed
port (chosen free at start), so a restart after SIGKILL serves the same URL and the providers'
callbacks for holds made before the kill still arrive; the pump simulator runs its clock
faster (``--speed``) so a sale lasts seconds; processes can be pinned to CPUs.

With ``--target`` nothing is started: :func:`attach` reads the running switch's configuration
file (for the token secret, the stations and the database) and the simulators' control
addresses from the command line.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from switch.config import LoggingSection, StationEntry, SwitchConfig, dump_config, load_config
from switch.demo.procs import READY_TIMEOUT_S, ChildProcess, DemoError
from switch.demo.sims import ProviderControl, PumpControl
from switch.demo.world import build_config, station_id
from switch.server import START_PER_PUMP_S
from switch.store import admin, migrate, open_database

__all__ = [
    "LoadWorld",
    "WorldSpec",
    "attach",
    "create_database",
    "pin",
    "start_world",
    "wait_ready",
]

AUTO_PAY = {"auto_pay": True, "auto_pay_delay_ms": 200}
PROVIDERS = ("wechatpay", "alipay", "unionpay")
PUMP_CONTROL_CONNECTIONS = 4  # control calls are serialized per connection


@dataclass(frozen=True, slots=True)
class WorldSpec:
    home: Path  # $FUELSWITCH_HOME (provider keys live there)
    run_dir: Path
    stations: int
    pumps: int
    postpay: int  # the last ``postpay`` pumps of each station are stand-alone
    speed: float
    seed: int
    log_level: str = "info"
    switch_cpus: frozenset[int] | None = None
    load_cpus: frozenset[int] | None = None
    idle_poll_s: float | None = None  # the stations' idle poll interval; None: the switch's


def switch_idle_poll_s() -> float:
    """The switch's own idle poll interval: a station's ``idle_poll_s`` when not set."""
    default = next(f.default for f in dataclasses.fields(StationEntry) if f.name == "idle_poll_s")
    assert isinstance(default, float)
    return default


def pin(pid: int, cpus: frozenset[int] | None) -> None:
    """Restrict ``pid`` (0: this process) to ``cpus``; nothing without a set."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def create_database(server_url: str, name: str) -> str:
    url = await admin.create_database(server_url, name)
    async with open_database(url) as db:
        await migrate(db)
    return url


class LoadWorld:
    """What a run talks to; owns the processes it started (none with ``--target``)."""

    def __init__(
        self,
        config: SwitchConfig | None,
        api_url: str,
        pumps: Sequence[PumpControl],
        providers: Sequence[ProviderControl],
        http: httpx.AsyncClient,
    ) -> None:
        self._config = config
        self.api_url = api_url.rstrip("/")
        self.pumps = list(pumps)
        self.providers = list(providers)
        self.http = http
        self.children: list[ChildProcess] = []
        self.switch: ChildProcess | None = None
        self.switch_cpus: frozenset[int] | None = None
        self.switch_pid_hint: int | None = None  # --switch-pid with --target

    @property
    def config(self) -> SwitchConfig:
        if self._config is None:
            raise DemoError("the switch is not configured yet")
        return self._config

    @config.setter
    def config(self, config: SwitchConfig) -> None:
        self._config = config

    @property
    def switch_pid(self) -> int | None:
        if self.switch is not None and self.switch.process is not None:
            return self.switch.process.pid
        return self.switch_pid_hint

    async def kill_switch(self) -> None:
        """SIGKILL: no shutdown path runs, as in a crash or an OOM kill."""
        if self.switch is None or self.switch.process is None:
            raise DemoError("--kill-switch-at needs a switch this run started")
        process = self.switch.process
        process.send_signal(signal.SIGKILL)
        await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
        self.switch.process = None

    async def restart_switch(self) -> dict[str, Any]:
        assert self.switch is not None
        assert self.config is not None
        ready = await self.switch.start(switch_ready_s(sum(s.pumps for s in self.config.stations)))
        pin(self.switch.process.pid if self.switch.process else 0, self.switch_cpus)
        return ready

    async def aclose(self) -> None:
        for control in self.pumps:
            await control.aclose()
        for child in reversed(self.children):
            await child.stop()


def switch_ready_s(pumps: int) -> float:
    """How long a switch may take to be ready: every pump recovers at start, one after
    another (the switch bounds its own start the same way)."""
    return READY_TIMEOUT_S + START_PER_PUMP_S * pumps


async def _child(
    world: LoadWorld,
    spec: WorldSpec,
    name: str,
    *args: str,
    ready_s: float = READY_TIMEOUT_S,
    **env: str,
) -> Any:
    child = ChildProcess(name, args, spec.run_dir, {"FUELSWITCH_HOME": str(spec.home), **env})
    world.children.append(child)
    ready = await child.start(ready_s)
    assert child.process is not None
    return child, ready


async def start_world(
    spec: WorldSpec, database_url: str, redis_url: str, http: httpx.AsyncClient
) -> LoadWorld:
    """Keys, pump simulator, two provider simulators, then the switch; the caller closes
    the world (also when this raises: the processes started so far are in it)."""
    everywhere = frozenset(os.sched_getaffinity(0))
    pin(0, spec.load_cpus)  # the simulators inherit it
    keys = await trio.run_process(
        [sys.executable, "-m", "switch.cli", "sim", "providers", "keys", "--merchants", "2"],
        env={**os.environ, "FUELSWITCH_HOME": str(spec.home)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    if keys.returncode != 0:
        raise DemoError(f"generating provider keys failed: {keys.stderr.decode()[-500:]}")
    world = LoadWorld(None, "", [], [], http)
    _, pumps_ready = await _child(
        world,
        spec,
        "pumps",
        *("sim", "pumps", "--stations", str(spec.stations)),
        *("--pumps-per-station", str(spec.pumps), "--control-port", "0"),
        *("--speed", str(spec.speed), "--seed", str(spec.seed)),
    )
    providers: dict[str, Any] = {}
    for i, name in enumerate(("main", "backup")):
        _, providers[name] = await _child(
            world,
            spec,
            f"providers-{name}",
            *("sim", "providers", "--control-port", "0", "--merchants", "2"),
            *("--seed", str(spec.seed + i)),
        )
    numbers = {s["station"]: station_id(i) for i, s in enumerate(pumps_ready["stations"])}
    port = int(pumps_ready["control_port"])
    world.pumps = [PumpControl(port, numbers) for _ in range(PUMP_CONTROL_CONNECTIONS)]
    world.providers = [ProviderControl(r["control"], http) for r in providers.values()]
    for control in world.providers:
        for provider in PROVIDERS:
            await control.put_faults(provider, **AUTO_PAY)
    await configure_pumps(world.pumps, list(numbers.values()), spec.pumps, spec.postpay)
    host = pumps_ready.get("host", "127.0.0.1")
    config = build_config(
        home=spec.run_dir,
        database_url=database_url,
        redis_url=redis_url,
        secret=secrets.token_urlsafe(48).encode(),
        gateways=[(host, s["port"]) for s in pumps_ready["stations"]],
        pumps=spec.pumps,
        providers=providers,
        seed=spec.seed,
    ).with_http(port=free_port())
    # Ten requests in flight per gateway connection: the simulator answers them in parallel,
    # and 5,000 pumps polled one request at a time cost the switch far more CPU when idle.
    stations = tuple(
        dataclasses.replace(
            s,
            max_in_flight=10,
            idle_poll_s=s.idle_poll_s if spec.idle_poll_s is None else spec.idle_poll_s,
        )
        for s in config.stations
    )
    world.config = config = dataclasses.replace(
        config, logging=LoggingSection(level=spec.log_level), stations=stations
    )
    config_path = spec.run_dir / "switch.toml"
    config_path.write_text(dump_config(config), encoding="utf-8")
    world.switch, serve = await _child(
        world,
        spec,
        "switch",
        *("serve", "--config", str(config_path)),
        ready_s=switch_ready_s(spec.stations * spec.pumps),
        FUELSWITCH_DATABASE_URL=database_url,
        FUELSWITCH_REDIS_URL=redis_url,
    )
    # The switch is this process's child too: without --switch-cpus it gets back every CPU
    # it would have had, not the load side's.
    world.switch_cpus = spec.switch_cpus or everywhere
    pin(world.switch_pid or 0, world.switch_cpus)
    world.api_url = str(serve["http"]).rstrip("/")
    return world


async def wait_ready(http: httpx.AsyncClient, api_url: str, timeout: float = 120.0) -> None:
    """Until the switch's ``/readyz`` says so; DemoError after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            try:
                if (await http.get(api_url + "/readyz", timeout=5.0)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.2)
    raise DemoError(f"the switch at {api_url} did not become ready")


async def configure_pumps(
    controls: Sequence[PumpControl], stations: Sequence[str], pumps: int, postpay: int
) -> None:
    """Post-pay pumps stand-alone, the rest host-controlled; a short authorization timeout
    (model seconds) so an abandoned authorization does not hold a pump for minutes."""

    async def station(control: PumpControl, sid: str) -> None:
        for pump in range(1, pumps + 1):
            mode = 1 if pump > pumps - postpay else 0
            await control.call("configure", station=sid, pump=pump, mode=mode, auth_timeout_s=60)

    async with trio.open_nursery() as nursery:
        for i, sid in enumerate(stations):
            nursery.start_soon(station, controls[i % len(controls)], sid)


async def attach(
    target: str,
    config_path: Path,
    pump_control: int,
    provider_controls: Sequence[str],
    http: httpx.AsyncClient,
) -> LoadWorld:
    """A world of processes started by someone else: the switch at ``target`` with the
    configuration ``config_path``; simulator station i is the configuration's station i."""
    config = load_config(config_path)
    numbers = {i: s.id for i, s in enumerate(config.stations)}
    pumps = [PumpControl(pump_control, numbers) for _ in range(PUMP_CONTROL_CONNECTIONS)]
    providers = [ProviderControl(url, http) for url in provider_controls]
    return LoadWorld(config, target, pumps, providers, http)
