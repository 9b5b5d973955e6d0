"""The switch's admin commands as a table: wire name, handler, parameters, and whether it acts.

The generic actor commands (``tree``, ``actor``, ``restart``) come from :mod:`ops.admin`;
these add what only the switch knows. The table is the single place a command is declared:
the server validates arguments against it, ``help`` lists it, and the audit log takes every
command marked as an action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from ops.admin import Caller, Command, Param, actor_commands

from . import actions, reads
from .context import AdminContext

__all__ = ["switch_commands"]

Handler = Callable[[AdminContext, Mapping[str, Any], Caller], Awaitable[Any]]

_STATION = Param("station", str, required=True, help="station id")
_PUMP = Param("pump", int, required=True, help="pump number")
_REASON = Param("reason", str, default="operator", help="why, for the audit log")

# name, handler, params, action, help
_TABLE: tuple[tuple[str, Handler, tuple[Param, ...], bool, str], ...] = (
    ("status", reads.status, (), False, "the switch: uptime, draining, in-flight orders"),
    (
        "pumps",
        reads.pumps,
        (
            Param("station", str, default="", help="only this station"),
            Param("offset", int, default=0),
            Param("limit", int, default=500),
        ),
        False,
        "pumps: state, sale, last error, poll latency (paged)",
    ),
    ("channels", reads.channels, (), False, "channels: health, approval, share, fees, load"),
    (
        "orders",
        reads.orders,
        (Param("limit", int, default=100), Param("station", str, default="")),
        False,
        "orders not yet finished, oldest first",
    ),
    (
        "alerts",
        reads.alerts,
        (Param("limit", int, default=100),),
        False,
        "alerts of the switch and the pumps, newest first",
    ),
    ("pump.close", actions.pump_close, (_STATION, _PUMP, _REASON), True, "close a pump"),
    ("pump.open", actions.pump_open, (_STATION, _PUMP, _REASON), True, "open a pump"),
    ("pump.stop", actions.pump_stop, (_STATION, _PUMP, _REASON), True, "stop a pump's sale"),
    (
        "prices.set",
        actions.prices_set,
        (
            _STATION,
            Param("prices", dict, required=True, help="grade -> milli-fen per litre"),
            Param("at", str, default="", help="ISO 8601 time it takes effect; now if empty"),
        ),
        True,
        "set a station's prices",
    ),
    (
        "channel.enable",
        actions.channel_enable,
        (Param("name", str, required=True), _REASON),
        True,
        "let a channel take new payments",
    ),
    (
        "channel.disable",
        actions.channel_disable,
        (Param("name", str, required=True), _REASON),
        True,
        "stop routing new payments to a channel",
    ),
    (
        "drain",
        actions.drain,
        (Param("on", bool, default=True),),
        True,
        "accept no new orders (on=false: accept again); in-flight orders finish",
    ),
    (
        "log_level",
        actions.log_level,
        (Param("level", str, required=True), Param("logger", str, default="")),
        True,
        "change the log level",
    ),
)


def switch_commands(ctx: AdminContext) -> list[Command]:
    """Every admin command of the switch, bound to ``ctx``."""
    commands = list(actor_commands(ctx.system))
    for name, handler, params, action, text in _TABLE:
        commands.append(
            Command(name, partial(handler, ctx), params=params, action=action, help=text)
        )
    return commands
