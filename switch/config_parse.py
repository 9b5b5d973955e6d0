"""From TOML text to a checked :class:`switch.config.SwitchConfig` (see that module).

One function per section, each reading its table through :class:`Table` so that every
error names its key path and unknown keys are refused. Environment overrides are applied
between the sections that depend on them: channels' default notify URLs are derived from the
HTTP section *after* ``FUELSWITCH_HTTP_*`` / ``FUELSWITCH_PUBLIC_URL`` were applied.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from channels.config import ChannelConfig
from channels.model import Provider
from channels.transport import HttpLimits

from .config import (
    FUELS,
    LOG_FORMATS,
    LOG_LEVELS,
    MIN_SECRET_BYTES,
    AdminSection,
    AuthSection,
    ChannelEntry,
    Grade,
    HttpSection,
    LoggingSection,
    OrdersSection,
    RoutingSection,
    ShutdownSection,
    StationEntry,
    SwitchConfig,
    default_notify_url,
)
from .config_reader import ConfigError, Table, key_path
from .pricing import Promotion
from .stations.hours import check_timezone, parse_opening_hours

__all__ = ["parse_config"]

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_LIMIT_FIELDS = {f: type(getattr(HttpLimits(), f)) for f in HttpLimits.__dataclass_fields__}


def parse_config(text: str, base_dir: Path, env: Mapping[str, str], source: str) -> SwitchConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    root = Table(raw, "")
    switch = root.table("switch", {})
    home = base_dir / switch.text("home", "var", empty=False)
    switch.done()
    database_url = _url(root, "database")
    redis_url = _url(root, "redis")
    http = _http(root.table("http", {}), env)
    auth = _auth(root.table("auth", {}), env)
    orders = _orders(root.table("orders", {}), env)
    routing = _routing(root.table("routing", {}))
    grades = _grades(root.tables("grades"))
    codes = {g.code for g in grades}
    stations = _stations(root.tables("stations"), codes)
    channels = _channels(root.tables("channels"), base_dir, http)
    promotions = _promotions(root.tables("promotions"), codes)
    admin = _admin(root.table("admin", {}), base_dir, env)
    logging = _logging(root.table("logging", {}), env)
    shutdown = ShutdownSection(grace_s=(t := root.table("shutdown", {})).seconds("grace_s", 30.0))
    t.done()
    root.done()
    if env.get("FUELSWITCH_HOME"):
        home = Path(env["FUELSWITCH_HOME"]).resolve()
    return SwitchConfig(
        home=home,
        database_url=env.get("FUELSWITCH_DATABASE_URL") or database_url,
        redis_url=env.get("FUELSWITCH_REDIS_URL") or redis_url,
        http=http,
        auth=auth,
        orders=orders,
        routing=routing,
        grades=grades,
        stations=stations,
        channels=channels,
        promotions=promotions,
        admin=admin,
        logging=logging,
        shutdown=shutdown,
    )


def _url(root: Table, section: str) -> str | None:
    table = root.table(section, {})
    url = table.text("url", "")
    table.done()
    return url or None


def _public_url(value: str, where: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _http(table: Table, env: Mapping[str, str]) -> HttpSection:
    host = table.text("host", "127.0.0.1", empty=False)
    host = env.get("FUELSWITCH_HTTP_HOST") or host
    port = table.integer("port", 8080, minimum=0, maximum=65535)
    if env.get("FUELSWITCH_HTTP_PORT"):
        text = env["FUELSWITCH_HTTP_PORT"]
        if not (text.isascii() and text.isdigit() and int(text) <= 65535):
            raise ConfigError(f"FUELSWITCH_HTTP_PORT: expected a port 0..65535, got {text!r}")
        port = int(text)
    public_url = _public_url(table.text("public_url", ""), table.at("public_url"))
    if env.get("FUELSWITCH_PUBLIC_URL"):
        public_url = _public_url(env["FUELSWITCH_PUBLIC_URL"], "FUELSWITCH_PUBLIC_URL")
    table.done()
    return HttpSection(host=host, port=port, public_url=public_url)


def _auth(table: Table, env: Mapping[str, str]) -> AuthSection:
    where, secret = table.at("secret"), table.text("secret", "")
    if env.get("FUELSWITCH_AUTH_SECRET"):
        where, secret = "FUELSWITCH_AUTH_SECRET", env["FUELSWITCH_AUTH_SECRET"]
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        got = "missing" if not size else f"{size} bytes"
        raise ConfigError(f"{where}: must be at least {MIN_SECRET_BYTES} bytes, got {got}")
    ttl = table.integer("token_ttl_s", 3600, minimum=1, what="whole seconds")
    table.done()
    return AuthSection(secret=secret.encode(), token_ttl_s=ttl)


_ORDER_BOUNDS = {
    "max_open": "FUELSWITCH_ORDERS_MAX_OPEN",
    "max_creating": "FUELSWITCH_ORDERS_MAX_CREATING",
    "max_lag_ms": "FUELSWITCH_ORDERS_MAX_LAG_MS",
    "max_store_ms": "FUELSWITCH_ORDERS_MAX_STORE_MS",
}


def _orders(table: Table, env: Mapping[str, str]) -> OrdersSection:
    defaults = OrdersSection()
    values: dict[str, Any] = {
        name: table.seconds(name, getattr(defaults, name))
        for name in OrdersSection.__dataclass_fields__
        if name not in _ORDER_BOUNDS
    }
    for name, variable in _ORDER_BOUNDS.items():
        values[name] = table.integer(name, getattr(defaults, name), minimum=0)
        if env.get(variable):
            text = env[variable]
            if not (text.isascii() and text.isdigit()):
                raise ConfigError(
                    f"{variable}: expected an integer >= 0 (0: no bound), got {text!r}"
                )
            values[name] = int(text)
    table.done()
    return OrdersSection(**values)


def _routing(table: Table) -> RoutingSection:
    routing = RoutingSection(
        exploration_permille=table.integer("exploration_permille", 50, minimum=0, maximum=1000),
        seed=table.integer("seed", 0, minimum=0),
    )
    table.done()
    return routing


def _admin(table: Table, base_dir: Path, env: Mapping[str, str]) -> AdminSection:
    text = table.text("socket", "")
    socket = base_dir / text if text else None
    if env.get("FUELSWITCH_ADMIN_SOCKET"):
        socket = Path(env["FUELSWITCH_ADMIN_SOCKET"]).resolve()
    value = table.value("allowed_uids", [])
    if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
        raise ConfigError(f"{table.at('allowed_uids')}: expected a list of uids (integers >= 0)")
    audit = table.text("audit_log", "")
    table.done()
    return AdminSection(
        socket=socket,
        allowed_uids=tuple(value),
        audit_log=base_dir / audit if audit else None,
    )


def _choice(where: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _logging(table: Table, env: Mapping[str, str]) -> LoggingSection:
    where, fmt = table.at("format"), table.text("format", "auto")
    if env.get("FUELSWITCH_LOG_FORMAT"):
        where, fmt = "FUELSWITCH_LOG_FORMAT", env["FUELSWITCH_LOG_FORMAT"]
    fmt = _choice(where, fmt, LOG_FORMATS)
    where, level = table.at("level"), table.text("level", "info")
    if env.get("FUELSWITCH_LOG_LEVEL"):
        where, level = "FUELSWITCH_LOG_LEVEL", env["FUELSWITCH_LOG_LEVEL"]
    level = _choice(where, level.lower(), LOG_LEVELS)
    table.done()
    return LoggingSection(format=fmt, level=level)


def _grades(tables: list[Table]) -> tuple[Grade, ...]:
    grades: dict[str, Grade] = {}
    for table in tables:
        code = table.text("code", empty=False)
        if code in grades:
            raise ConfigError(f"{table.at('code')}: grade {code!r} is configured twice")
        fuel = table.text("fuel", empty=False)
        if fuel not in FUELS:
            raise ConfigError(f"{table.at('fuel')}: {fuel!r} is not one of {', '.join(FUELS)}")
        grades[code] = Grade(code=code, name=table.text("name", empty=False), fuel=fuel)
        table.done()
    return tuple(grades.values())


def _stations(tables: list[Table], grades: set[str]) -> tuple[StationEntry, ...]:
    stations: dict[str, StationEntry] = {}
    for table in tables:
        station = _station(table, grades)
        if station.id in stations:
            raise ConfigError(f"{table.at('id')}: station {station.id!r} is configured twice")
        stations[station.id] = station
    return tuple(stations.values())


def _station(table: Table, grades: set[str]) -> StationEntry:
    station_id = table.text("id", empty=False)
    if not _ID.fullmatch(station_id):
        raise ConfigError(f"{table.at('id')}: {station_id!r} must be 1-32 of A-Z a-z 0-9 _ -")
    try:
        timezone = check_timezone(table.value("timezone", "Asia/Shanghai"), table.at("timezone"))
        hours = parse_opening_hours(table.value("opening_hours", {}), table.at("opening_hours"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    host, port = _gateway(table)
    nozzles = table.texts("nozzles")
    if not 1 <= len(nozzles) <= 8:
        raise ConfigError(f"{table.at('nozzles')}: a pump has 1 to 8 nozzles, not {len(nozzles)}")
    for i, grade in enumerate(nozzles):
        if grade not in grades:
            raise ConfigError(f"{table.at('nozzles')}[{i}]: unknown grade {grade!r}")
    prices_table = table.table("prices")
    prices: dict[str, int] = {}
    for grade in prices_table.raw:
        if grade not in nozzles:
            raise ConfigError(f"{prices_table.at(grade)}: no nozzle of this station sells it")
        prices[grade] = prices_table.integer(
            grade, minimum=1, what="an integer (milli-fen per litre)"
        )
    for i, grade in enumerate(nozzles):
        if grade not in prices:
            raise ConfigError(
                f"{table.at('prices')}: no price for grade {grade!r} (nozzle {i + 1})"
            )
    station = StationEntry(
        id=station_id,
        name=table.text("name", empty=False),
        address=table.text("address", ""),
        lat_e6=table.e6("lat", 90),
        lon_e6=table.e6("lon", 180),
        timezone=timezone,
        opening_hours=MappingProxyType(hours),
        gateway_host=host,
        gateway_port=port,
        pumps=table.integer("pumps", minimum=1, maximum=99),
        nozzles=nozzles,
        prices=MappingProxyType(prices),
        active_poll_s=table.seconds("active_poll_s", 0.25),
        idle_poll_s=table.seconds("idle_poll_s", 1.0),
        quiet_poll_s=table.seconds("quiet_poll_s", 3.0, positive=False),
        quiet_after_s=table.seconds("quiet_after_s", 30.0),
        max_in_flight=table.integer("max_in_flight", 1, minimum=1),
    )
    table.done()
    return station


def _gateway(table: Table) -> tuple[str, int]:
    text = table.text("gateway", empty=False)
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
        raise ConfigError(f'{table.at("gateway")}: expected "host:port", got {text!r}')
    return host, int(port)


def _channels(tables: list[Table], base_dir: Path, http: HttpSection) -> tuple[ChannelEntry, ...]:
    entries: dict[str, ChannelEntry] = {}
    for table in tables:
        name = table.text("name", empty=False)
        if name in entries:
            raise ConfigError(f"{table.at('name')}: channel {name!r} is configured twice")
        provider_name = table.text("provider", empty=False)
        try:
            provider = Provider(provider_name)
        except ValueError:
            valid = ", ".join(p.value for p in Provider)
            where = table.at("provider")
            raise ConfigError(f"{where}: {provider_name!r} is not one of {valid}") from None
        notify_url = _public_url(table.text("notify_url", ""), table.at("notify_url"))
        config = ChannelConfig(
            name=name,
            provider=provider,
            base_url=table.text("base_url", empty=False),
            merchant_id=table.text("merchant_id", empty=False),
            app_id=table.text("app_id", ""),
            keys_dir=base_dir / table.text("keys_dir", empty=False),
            notify_url=notify_url,
            limits=_limits(table.table("limits", {})),
            max_in_flight=table.integer("max_in_flight", 64, minimum=1),
            certificate_refresh_s=table.seconds("certificate_refresh_s", 6 * 3600.0),
            options=MappingProxyType(_options(table.table("options", {}))),
        )
        if not notify_url:
            config = dataclasses.replace(config, notify_url=default_notify_url(http, config))
        routing = table.table("routing", {})
        entries[name] = ChannelEntry(
            config=config,
            routing=MappingProxyType(dict(routing.raw)),
            notify_url_default=not notify_url,
        )
        table.done()
    return tuple(entries.values())


def _limits(table: Table) -> HttpLimits:
    values: dict[str, Any] = {}
    for name, kind in _LIMIT_FIELDS.items():
        if name in table.raw:
            if kind is int:
                values[name] = table.integer(name, minimum=1)
            else:
                values[name] = table.seconds(name)
    table.done()
    return HttpLimits(**values)


def _options(table: Table) -> dict[str, str]:
    options = {key: table.text(key) for key in table.raw}
    table.done()
    return options


def _promotions(tables: list[Table], grades: set[str]) -> tuple[Mapping[str, Any], ...]:
    codes: set[str] = set()
    promotions = []
    for table in tables:
        try:
            promotion = Promotion.from_mapping(table.raw, table.path)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if promotion.code in codes:
            raise ConfigError(
                f"{table.at('code')}: promotion {promotion.code!r} is configured twice"
            )
        codes.add(promotion.code)
        for i, grade in enumerate(promotion.grades):
            if grade not in grades:
                raise ConfigError(f"{key_path(table.path, 'grades')}[{i}]: unknown grade {grade!r}")
        promotions.append(MappingProxyType(dict(table.raw)))
    return tuple(promotions)
