"""The switch's configuration: ``switch.toml``, with a few environment overrides.

``load_config`` reads the file (tomllib), checks every value and refuses unknown keys, each
error a :class:`ConfigError` naming the key path, so that a bad deployment fails at start-up
with one precise line instead of later with a confusing one. Money and volume must be
integers (fen, mL, milli-fen per litre); coordinates are decimal strings turned into exact
micro-degrees. Relative paths (``switch.home``, ``channels[].keys_dir``) are relative to the
config file's directory, so a config and its keys can move together; environment values are
relative to the working directory, as ``Settings.from_env`` has them.

Environment overrides (a set, non-empty variable wins over the file): ``FUELSWITCH_HOME``,
``FUELSWITCH_DATABASE_URL``, ``FUELSWITCH_REDIS_URL``, ``FUELSWITCH_HTTP_HOST``,
``FUELSWITCH_HTTP_PORT``, ``FUELSWITCH_PUBLIC_URL``, ``FUELSWITCH_AUTH_SECRET``,
``FUELSWITCH_ADMIN_SOCKET``, ``FUELSWITCH_LOG_FORMAT``, ``FUELSWITCH_LOG_LEVEL``,
``FUELSWITCH_ORDERS_MAX_OPEN``, ``FUELSWITCH_ORDERS_MAX_CREATING``,
``FUELSWITCH_ORDERS_MAX_LAG_MS``.

:class:`Settings` (environment only) stays for the commands that need no config file
(``fuelswitch db``, the simulators, the test fixtures).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config_dump import dump_config
from .config_reader import ConfigError

if TYPE_CHECKING:  # kept out of the import: Settings users (db, sims) need none of it
    from channels.config import ChannelConfig
    from devices.station import StationConfig

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "AdminSection",
    "AuthSection",
    "ChannelEntry",
    "ConfigError",
    "Grade",
    "HttpSection",
    "LoggingSection",
    "OrdersSection",
    "RoutingSection",
    "Settings",
    "ShutdownSection",
    "StationEntry",
    "SwitchConfig",
    "default_notify_url",
    "dump_config",
    "load_config",
]

FUELS = ("gasoline", "diesel", "lpg", "cng", "other")
MIN_SECRET_BYTES = 32
LOG_FORMATS = ("auto", "json", "console")  # auto: JSON lines unless stderr is a terminal
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str | None
    redis_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            home=Path(env.get("FUELSWITCH_HOME") or "var").resolve(),
            database_url=env.get("FUELSWITCH_DATABASE_URL") or None,
            redis_url=env.get("FUELSWITCH_REDIS_URL") or None,
        )


@dataclass(frozen=True, slots=True)
class HttpSection:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port
    public_url: str = ""  # "" = http://host:port

    @property
    def base_url(self) -> str:
        """Where providers and customers reach the switch (no trailing slash)."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AuthSection:
    secret: bytes  # at least 32 bytes: the UTF-8 of the configured string
    token_ttl_s: int = 3600


@dataclass(frozen=True, slots=True)
class OrdersSection:
    customer_pay_timeout_s: float = 120.0  # a hold the customer never pays is closed after this
    unknown_budget_s: float = 30.0  # query/close/reroute must fit in this at the pump
    sale_deadline_s: float = 1800.0  # authorized but never completed: release, alert
    passivate_after_s: float = 30.0
    # Admission control (switch.api.admission): new orders are refused with 503 overloaded
    # while this many orders are live, this many creates are under way, while the event
    # loop runs this late, or while a database call takes this long (both smoothed);
    # 0 disables a bound. A prepay order per pump plus post-pay ones: well above a busy
    # chain's live orders, low enough that a flood cannot pile up orders the switch cannot move.
    max_open: int = 2000
    max_creating: int = 16  # creates admitted and not answered yet
    max_lag_ms: int = 500
    max_store_ms: int = 250


@dataclass(frozen=True, slots=True)
class RoutingSection:
    exploration_permille: int = 50
    seed: int = 0  # 0: random


@dataclass(frozen=True, slots=True)
class AdminSection:
    """The admin socket ``fuelswitch ops`` talks to."""

    socket: Path | None = None  # None: <home>/admin.sock
    allowed_uids: tuple[int, ...] = ()  # besides the switch's own uid, always allowed
    audit_log: Path | None = None  # None: <home>/audit.log (JSON lines, one per action)


@dataclass(frozen=True, slots=True)
class LoggingSection:
    format: str = "auto"  # one of LOG_FORMATS
    level: str = "info"  # one of LOG_LEVELS


@dataclass(frozen=True, slots=True)
class ShutdownSection:
    grace_s: float = 30.0  # SIGTERM: in-flight orders get this long to finish or park


@dataclass(frozen=True, slots=True)
class Grade:
    code: str
    name: str
    fuel: str  # one of FUELS


@dataclass(frozen=True, slots=True)
class StationEntry:
    id: str
    name: str
    address: str
    lat_e6: int
    lon_e6: int
    timezone: str
    opening_hours: Mapping[str, tuple[tuple[str, str], ...]]  # {} = always open
    gateway_host: str
    gateway_port: int
    pumps: int  # pumps 1..N, Modbus unit id = pump number
    nozzles: tuple[str, ...]  # grade code of nozzle 1, 2, ...
    prices: Mapping[str, int]  # grade -> milli-fen per litre (the initial price set)
    active_poll_s: float = 0.25
    idle_poll_s: float = 1.0
    quiet_poll_s: float = 3.0  # a pump at rest for quiet_after_s; 0: always idle_poll_s
    quiet_after_s: float = 30.0
    max_in_flight: int = 1  # requests outstanding on the gateway connection

    @property
    def gateway(self) -> str:
        host = f"[{self.gateway_host}]" if ":" in self.gateway_host else self.gateway_host
        return f"{host}:{self.gateway_port}"

    def station_config(self) -> StationConfig:
        from devices.station import StationConfig

        return StationConfig(
            station_id=self.id,
            host=self.gateway_host,
            port=self.gateway_port,
            units=tuple(range(1, self.pumps + 1)),
            nozzles=len(self.nozzles),
            max_in_flight=self.max_in_flight,
            active_poll_s=self.active_poll_s,
            idle_poll_s=self.idle_poll_s,
            quiet_poll_s=self.quiet_poll_s or None,
            quiet_after_s=self.quiet_after_s,
        )


@dataclass(frozen=True, slots=True)
class ChannelEntry:
    config: ChannelConfig
    routing: Mapping[str, Any]  # raw [channels.routing]; ChannelPolicy.from_mapping parses it
    # notify_url was left empty and derived from the public URL (kept so a dump says so too)
    notify_url_default: bool = False


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    home: Path
    database_url: str | None  # None: embedded PostgreSQL under home
    redis_url: str | None  # None: embedded Valkey under home
    http: HttpSection
    auth: AuthSection
    orders: OrdersSection = OrdersSection()
    routing: RoutingSection = RoutingSection()
    grades: tuple[Grade, ...] = ()
    stations: tuple[StationEntry, ...] = ()
    channels: tuple[ChannelEntry, ...] = ()
    promotions: tuple[Mapping[str, Any], ...] = ()  # raw; switch.pricing parses them
    admin: AdminSection = AdminSection()
    logging: LoggingSection = LoggingSection()
    shutdown: ShutdownSection = ShutdownSection()

    @property
    def admin_socket(self) -> Path:
        return self.admin.socket if self.admin.socket is not None else self.home / "admin.sock"

    @property
    def audit_log(self) -> Path:
        return self.admin.audit_log if self.admin.audit_log is not None else self.home / "audit.log"

    def settings(self) -> Settings:
        return Settings(self.home, self.database_url, self.redis_url)

    def station(self, station_id: str) -> StationEntry:
        for entry in self.stations:
            if entry.id == station_id:
                return entry
        raise KeyError(station_id)

    def with_http(
        self, *, host: str | None = None, port: int | None = None, public_url: str | None = None
    ) -> SwitchConfig:
        """The same config served elsewhere (e.g. once port 0 got its real port): derived
        notify URLs follow the new public URL; configured ones stay."""
        http = dataclasses.replace(
            self.http,
            host=self.http.host if host is None else host,
            port=self.http.port if port is None else port,
            public_url=self.http.public_url if public_url is None else public_url.rstrip("/"),
        )
        channels = tuple(
            dataclasses.replace(
                c,
                config=dataclasses.replace(c.config, notify_url=default_notify_url(http, c.config)),
            )
            if c.notify_url_default
            else c
            for c in self.channels
        )
        return dataclasses.replace(self, http=http, channels=channels)


def default_notify_url(http: HttpSection, channel: ChannelConfig) -> str:
    """``<public_url>/callbacks/<provider>``: where switch.http receives provider callbacks."""
    return f"{http.base_url}/callbacks/{channel.provider.value}"


def load_config(path: Path, env: Mapping[str, str] | None = None) -> SwitchConfig:
    """Read and check ``path``; ``env`` defaults to ``os.environ`` (pass {} to ignore it)."""
    from .config_parse import parse_config  # here: it builds the types defined above

    env = os.environ if env is None else env
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from None
    return parse_config(text, path.resolve().parent, env, source=str(path))
