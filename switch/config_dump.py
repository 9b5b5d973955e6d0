"""``dump_config``: a :class:`switch.config.SwitchConfig` back to ``switch.toml`` text.

The demo writes its switch.toml with this, so the contract is exact: ``load_config`` of the
dump (with no environment overrides) equals the config. There is no TOML writer among the
dependencies, and the structure is fixed, so a small emitter does: tables and arrays of
tables for the sections, inline values (strings, integers, floats, booleans, dates, lists,
inline tables) for everything inside them, including the raw ``routing`` and ``promotions``
mappings. Paths are written absolute, and derived values (default notify URLs) are written
empty, as they were configured, so a reload derives them again.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .config_reader import ConfigError

if TYPE_CHECKING:
    from .config import StationEntry, SwitchConfig

__all__ = ["dump_config", "toml_key", "toml_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes (\" \\ \n \t \uXXXX ...) are all valid in a TOML basic string; DEL is
    # the one control character JSON leaves alone and TOML does not.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """One inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def _table(header: str, items: Iterable[tuple[str, Any]]) -> list[str]:
    lines = [header]
    lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in items]
    return [*lines, ""]


def dump_config(config: SwitchConfig) -> str:
    try:
        secret = config.auth.secret.decode()
    except UnicodeDecodeError:
        raise ConfigError("auth.secret: not UTF-8, so not writable as a TOML string") from None
    lines: list[str] = []
    lines += _table("[switch]", [("home", str(config.home))])
    lines += _table("[database]", [("url", config.database_url or "")])
    lines += _table("[redis]", [("url", config.redis_url or "")])
    http = config.http
    lines += _table(
        "[http]", [("host", http.host), ("port", http.port), ("public_url", http.public_url)]
    )
    lines += _table("[auth]", [("secret", secret), ("token_ttl_s", config.auth.token_ttl_s)])
    lines += _table("[orders]", _fields_of(config.orders))
    lines += _table("[routing]", _fields_of(config.routing))
    admin = config.admin
    lines += _table(
        "[admin]",
        [
            ("socket", str(admin.socket) if admin.socket else ""),
            ("allowed_uids", list(admin.allowed_uids)),
            ("audit_log", str(admin.audit_log) if admin.audit_log else ""),
        ],
    )
    lines += _table("[logging]", _fields_of(config.logging))
    lines += _table("[shutdown]", _fields_of(config.shutdown))
    for grade in config.grades:
        lines += _table("[[grades]]", _fields_of(grade))
    for station in config.stations:
        lines += _table("[[stations]]", _station_items(station))
    for entry in config.channels:
        channel = entry.config
        items: list[tuple[str, Any]] = [
            ("name", channel.name),
            ("provider", channel.provider.value),
            ("base_url", channel.base_url),
            ("merchant_id", channel.merchant_id),
            ("app_id", channel.app_id),
            ("keys_dir", str(channel.keys_dir)),
            ("notify_url", "" if entry.notify_url_default else channel.notify_url),
            ("max_in_flight", channel.max_in_flight),
            ("certificate_refresh_s", channel.certificate_refresh_s),
            ("options", dict(channel.options)),
            ("limits", dict(_fields_of(channel.limits))),
        ]
        lines += _table("[[channels]]", items)
        if entry.routing:
            lines += _table("[channels.routing]", entry.routing.items())
    for promotion in config.promotions:
        lines += _table("[[promotions]]", promotion.items())
    return "\n".join(lines)


def _fields_of(obj: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(obj, f.name)) for f in fields(obj)]


def _station_items(station: StationEntry) -> list[tuple[str, Any]]:
    hours = {day: [list(r) for r in ranges] for day, ranges in station.opening_hours.items()}
    return [
        ("id", station.id),
        ("name", station.name),
        ("address", station.address),
        ("lat", _decimal_e6(station.lat_e6)),
        ("lon", _decimal_e6(station.lon_e6)),
        ("timezone", station.timezone),
        ("opening_hours", hours),
        ("gateway", station.gateway),
        ("pumps", station.pumps),
        ("nozzles", list(station.nozzles)),
        ("prices", dict(station.prices)),
        ("active_poll_s", station.active_poll_s),
        ("idle_poll_s", station.idle_poll_s),
        ("quiet_poll_s", station.quiet_poll_s),
        ("quiet_after_s", station.quiet_after_s),
        ("max_in_flight", station.max_in_flight),
    ]


def _decimal_e6(value: int) -> str:
    """Micro-degrees as the exact decimal string the config holds ("31.230416")."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"
