"""The admin socket's actions: pumps, prices, channels, drain, log level, restarts.

Each action is done through the same path the rest of the switch uses (the pump actor's own
calls, the price-set transaction the staff API uses, the channel actor's Enable/Disable), so
an operator can never put the switch in a state its own code would not. What changes the
chain's books or its routing is also written to the database's ``audit_log`` with the
operator's uid (the socket's audit file has every action; the table keeps those that matter
after the file is rotated). A channel switched off by an operator stays off across restarts:
:func:`reapply_channel_switches` replays the latest switch per channel at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson
import structlog

from actors import ActorError
from channels.actor_messages import Disable, Enable
from devices.pump_messages import Stop
from ops.admin import AdminError, Caller
from ops.logs import set_level
from switch.config import LOG_LEVELS
from switch.orders import pump_address
from switch.service import PriceItem, ServiceError
from switch.stations.audit import audit

from .context import AdminContext, operator

__all__ = ["ACTION_TIMEOUT_S", "reapply_channel_switches"]

log = structlog.get_logger("switch.admin")

ACTION_TIMEOUT_S: Final = 10.0
_SERVICE_CODES: Final = {404: "not_found", 409: "conflict", 422: "bad_args", 503: "unavailable"}


def _refused(exc: ServiceError) -> AdminError:
    return AdminError(_SERVICE_CODES.get(exc.status, "failed"), exc.detail)


async def _pump_call(ctx: AdminContext, station: str, pump: int, msg: Any) -> Any:
    address = pump_address(station, pump)
    try:
        return await ctx.system.call(address, msg, timeout=ACTION_TIMEOUT_S)
    except ActorError as exc:
        code = "not_found" if address not in ctx.system.registry else "failed"
        raise AdminError(code, str(exc)) from None


async def _pump_open(
    ctx: AdminContext, args: Mapping[str, Any], caller: Caller, open: bool
) -> dict[str, Any]:
    """The staff API's path: the pump row (and its audit entry), then the pump actor."""
    station, pump = args["station"], args["pump"]
    try:
        view = await ctx.service.set_pump_open("", station, pump, open, actor=operator(caller.uid))
    except ServiceError as exc:
        raise _refused(exc) from None
    return {
        "address": pump_address(station, pump),
        "done": True,
        "open": view.open,
        "state": view.state,
    }


async def pump_close(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    return await _pump_open(ctx, args, caller, False)


async def pump_open(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    return await _pump_open(ctx, args, caller, True)


async def pump_stop(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    """STOP the sale in progress; it settles through the usual completion path."""
    station, pump = args["station"], args["pump"]
    address = pump_address(station, pump)
    try:
        sale = ctx.system.snapshot(address).state.get("open_sale")
    except ActorError:
        raise AdminError("not_found", f"no pump actor at {address}") from None
    await _pump_call(ctx, station, pump, Stop())
    async with ctx.db.transaction() as tx:
        details = {"sale_id": sale, "reason": args["reason"]}
        await audit(tx, operator(caller.uid), "pump.stop", address, details)
    return {"address": address, "done": True, "sale_id": sale}


async def prices_set(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    prices = args["prices"]
    if not prices:
        raise AdminError("bad_args", "prices: give at least one grade")
    items = []
    for grade, price in prices.items():
        if not isinstance(grade, str) or type(price) is not int:
            raise AdminError(
                "bad_args", "prices: expected {grade: milli-fen per litre as an integer}"
            )
        items.append(PriceItem(grade, price))
    at: datetime | None = None
    if args["at"]:
        try:
            at = datetime.fromisoformat(args["at"])
        except ValueError:
            raise AdminError("bad_args", f"at: not an ISO 8601 time: {args['at']!r}") from None
    try:
        view = await ctx.service.set_prices(
            "", args["station"], items, at, actor=operator(caller.uid)
        )
    except ServiceError as exc:
        raise _refused(exc) from None
    return {
        "station": view.station_id,
        "price_set_id": view.id,
        "status": view.status,
        "effective_at": view.effective_at.isoformat() if view.effective_at else None,
        "prices": {i.grade: i.unit_price_mfen_per_l for i in view.items},
    }


async def _switch_channel(
    ctx: AdminContext, name: str, enabled: bool, reason: str, who: str
) -> None:
    if name not in ctx.policies:
        raise AdminError("not_found", f"no channel {name!r} (configured: {sorted(ctx.policies)})")
    msg = Enable() if enabled else Disable(reason)
    try:
        await ctx.system.call(f"channels/{name}", msg, timeout=ACTION_TIMEOUT_S)
    except ActorError as exc:
        raise AdminError("unavailable", f"channel {name}: {exc}") from None
    ctx.router.invalidate()
    async with ctx.db.transaction() as tx:
        action = "channel.enable" if enabled else "channel.disable"
        await audit(tx, who, action, name, {"reason": reason})


async def channel_enable(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    await _switch_channel(ctx, args["name"], True, args["reason"], operator(caller.uid))
    return {"name": args["name"], "enabled": True}


async def channel_disable(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    await _switch_channel(ctx, args["name"], False, args["reason"], operator(caller.uid))
    return {"name": args["name"], "enabled": False}


async def reapply_channel_switches(ctx: AdminContext) -> list[str]:
    """Disable again, at start-up, every channel whose latest operator switch was a disable."""
    rows = await ctx.db.fetch(
        "SELECT DISTINCT ON (target) target, action, details FROM audit_log"
        " WHERE action IN ('channel.enable', 'channel.disable') ORDER BY target, id DESC"
    )
    disabled = []
    for row in rows:
        if row["action"] == "channel.disable" and row["target"] in ctx.policies:
            reason = str(_details(row["details"]).get("reason") or "operator")
            await ctx.system.call(f"channels/{row['target']}", Disable(reason), timeout=10.0)
            disabled.append(row["target"])
    if disabled:
        ctx.router.invalidate()
        log.warning("admin.channels_kept_disabled", channels=disabled)
    return disabled


def _details(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        loaded = orjson.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return value if isinstance(value, Mapping) else {}


async def drain(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    ctx.process.drain(args["on"])
    log.warning("admin.drain", on=args["on"], uid=caller.uid)
    return {"draining": ctx.process.draining, "in_flight_orders": ctx.process.in_flight_orders()}


async def log_level(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> Any:
    level = str(args["level"]).lower()
    if level not in LOG_LEVELS:
        raise AdminError("bad_args", f"level: expected one of {', '.join(LOG_LEVELS)}")
    return {"level": set_level(level, args["logger"]), "logger": args["logger"] or None}
