"""The whole switch as an operator runs it, for end-to-end and crash tests.

A :class:`World` is one pump simulator (a station of four pumps, fast fuelling), two provider
simulator processes ("main" and "backup": the simulators inject faults per provider, so two
WeChat channels can only fail independently if each has a process of its own), a switch.toml
written with :func:`switch.config.dump_config`, and a :class:`SwitchProc` that runs
``fuelswitch serve`` on the test module's database and can be SIGKILLed and started again.

Everything here is synchronous so that module-scoped fixtures can build it (pytest-trio runs
each test in a trio run of its own); the async helpers the tests use live in
:mod:`tests.switch.e2e.client`. The HTTP port is chosen once per world and kept across
restarts, because the providers keep the notify URL they were given with the hold: a switch
that came back on another port would never hear the callbacks of holds sent before a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from switch.config import (
    AuthSection,
    ChannelEntry,
    Grade,
    HttpSection,
    OrdersSection,
    RoutingSection,
    ShutdownSection,
    StationEntry,
    SwitchConfig,
    dump_config,
)
from switch.demo.world import ChannelPlan, channel_entry, channel_plans
from tests.channels.provider_sim import ProviderSimProcess
from tests.devices.sim_support import SimProcess

__all__ = [
    "PAYERS",
    "PRICES",
    "STATION",
    "ChannelPlan",
    "SwitchProc",
    "World",
    "build_config",
]

ROOT: Final = Path(__file__).resolve().parents[3]
STATION: Final = "s001"
PUMPS: Final = 4
GRADES: Final = ("92", "95")
PRICES: Final = {"92": 789_000, "95": 842_000}  # milli-fen per litre
READY_TIMEOUT_S: Final = 90.0  # a bound for a start on a busy machine, never a measurement
STOP_TIMEOUT_S: Final = 30.0
# SIGTERM drains within this grace: well inside STOP_TIMEOUT_S, so stop() never needs SIGKILL.
GRACE_S: Final = 10.0
PAYERS: Final = {
    "wechatpay": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    "alipay": "2088000000000001",
    "unionpay": "",
}


CHANNELS: Final = channel_plans()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_config(
    *,
    home: Path,
    database_url: str,
    redis_url: str,
    http_port: int,
    gateway_port: int,
    providers: Mapping[str, Mapping[str, Any]],
    grace_s: float = GRACE_S,
) -> SwitchConfig:
    """One station on the pump simulator's gateway; the four channels of :data:`CHANNELS`.
    No exploration: a test must know which channel an order goes to."""
    station = StationEntry(
        id=STATION,
        name="E2E station",
        address="1 Renmin Avenue, Shanghai",
        lat_e6=31_230_416,
        lon_e6=121_473_701,
        timezone="Asia/Shanghai",
        opening_hours={},
        gateway_host="127.0.0.1",
        gateway_port=gateway_port,
        pumps=PUMPS,
        nozzles=GRADES,
        prices=dict(PRICES),
        active_poll_s=0.1,
        idle_poll_s=0.25,
    )
    return SwitchConfig(
        home=home,
        database_url=database_url,
        redis_url=redis_url,
        http=HttpSection(host="127.0.0.1", port=http_port),
        auth=AuthSection(secret=secrets.token_hex(24).encode(), token_ttl_s=3600),
        orders=OrdersSection(
            customer_pay_timeout_s=60.0, unknown_budget_s=20.0, passivate_after_s=30.0
        ),
        routing=RoutingSection(exploration_permille=0, seed=1),
        grades=(Grade("92", "92#", "gasoline"), Grade("95", "95#", "gasoline")),
        stations=(station,),
        channels=tuple(channel_entry(p, providers[p.process]) for p in CHANNELS),
        shutdown=ShutdownSection(grace_s=grace_s),
    )


class SwitchProc:
    """``python -m switch.cli serve --config FILE`` as a child process.

    stderr goes to a log file (kept for the failure message); ``ready`` is the JSON ready
    line. :meth:`start` may arm crash points (``FUELSWITCH_CRASH_POINTS``); the process then
    SIGKILLs itself at the first armed point and :meth:`wait_exit` sees status -9."""

    def __init__(self, config_path: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.config_path = config_path
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.starts = 0

    @property
    def url(self) -> str:
        url: str = self.ready["http"]
        return url

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, crash_points: Sequence[str] = ()) -> dict[str, Any]:
        assert not self.running, "the switch is already running"
        self.starts += 1
        env = {**os.environ, **self.env, "FUELSWITCH_CRASH_POINTS": ",".join(crash_points)}
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts} crash_points={list(crash_points)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "switch.cli", "serve", "--config", str(self.config_path)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            ready = selector.select(READY_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.kill()
            raise RuntimeError(f"the switch did not start:\n{self.log_tail()}")
        self.ready = json.loads(line)
        return self.ready

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after ``timeout`` seconds."""
        assert self.proc is not None
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._close()
        return status

    def signal(self, signum: int) -> None:
        """Send ``signum`` and return at once (:meth:`wait_exit` gets the status)."""
        assert self.proc is not None, "the switch is not running"
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: nothing gets written on the way out."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            self._close()

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL if it does not stop in time); the exit status."""
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            status: int | None = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._close()
        return status

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _close(self) -> None:
        assert self.proc is not None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


class World:
    """The simulators, the config and the switch of one test module."""

    def __init__(self, database_url: str, redis_url: str, *, speed: float = 4.0) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.speed = speed
        self.dir = Path(tempfile.mkdtemp(prefix="fs-e2e-"))
        self.pumps = SimProcess(
            "--stations",
            "1",
            "--pumps-per-station",
            str(PUMPS),
            "--speed",
            str(speed),
            "--control-port",
            "0",
        )
        self.providers: dict[str, ProviderSimProcess] = {}
        self.config: SwitchConfig | None = None
        self.switch: SwitchProc | None = None

    def start(self) -> World:
        try:
            self._start()
        except Exception:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.pumps.start()
        keys_home = self.dir / "providers"
        keys_home.mkdir()
        # keys once, before either process starts, so the two never race to write them
        ProviderSimProcess("--merchants", "2", home=keys_home).keys_command("--merchants", "2")
        for name in ("main", "backup"):
            process = ProviderSimProcess("--merchants", "2", home=keys_home)
            self.providers[name] = process
            process.start()
        self.config = build_config(
            home=self.dir / "home",
            database_url=self.database_url,
            redis_url=self.redis_url,
            http_port=_free_port(),
            gateway_port=self.pumps.port(0),
            providers={name: p.ready for name, p in self.providers.items()},
        )
        config_path = self.dir / "switch.toml"
        config_path.write_text(dump_config(self.config), encoding="utf-8")
        env = {
            "FUELSWITCH_DATABASE_URL": self.database_url,
            "FUELSWITCH_REDIS_URL": self.redis_url,
            "FUELSWITCH_HOME": str(self.dir / "home"),
        }
        self.switch = SwitchProc(config_path, env, self.dir / "switch.log")

    def set_grace(self, grace_s: float) -> None:
        """Rewrite switch.toml with this ``[shutdown] grace_s``, for the next start."""
        assert self.config is not None and self.switch is not None
        self.config = dataclasses.replace(self.config, shutdown=ShutdownSection(grace_s=grace_s))
        self.switch.config_path.write_text(dump_config(self.config), encoding="utf-8")

    @property
    def secret(self) -> bytes:
        assert self.config is not None
        return self.config.auth.secret

    def channel(self, name: str) -> ChannelEntry:
        assert self.config is not None
        return next(c for c in self.config.channels if c.config.name == name)

    def process_of(self, channel: str) -> ProviderSimProcess:
        plan = next(p for p in CHANNELS if p.name == channel)
        return self.providers[plan.process]

    def channels(self) -> dict[str, tuple[str, str]]:
        """Channel name -> (provider, merchant id), as the invariant checker takes them."""
        assert self.config is not None
        return {
            c.config.name: (c.config.provider.value, c.config.merchant_id)
            for c in self.config.channels
        }

    def close(self) -> None:
        if self.switch is not None:
            self.switch.stop()
        for process in self.providers.values():
            if process.proc is not None:
                process.kill()
        if self.pumps.proc is not None:
            self.pumps.kill()
        if not os.environ.get("FUELSWITCH_E2E_KEEP"):  # set it to read the logs afterwards
            shutil.rmtree(self.dir, ignore_errors=True)
