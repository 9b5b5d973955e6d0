"""The admin socket's read commands: status, pumps, channels, orders, alerts.

Everything here is read from the actors' synchronous snapshots (cheap, and what the actors
themselves believe now) or from the database (what survives a restart: orders, alerts).
Lists that grow with the chain (5,000 pumps) are paged, and a command that walks many actors
yields to the scheduler every :data:`BATCH` of them, so an operator's ``ops pumps`` never
stalls the pumps it is looking at.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import trio

from actors import ActorError
from ops.admin import AdminError, Caller
from switch.store.alerts import list_alerts

from .context import AdminContext

__all__ = ["BATCH", "alerts", "channels", "orders", "pump_addresses", "pumps", "status"]

BATCH: Final = 200  # actors read between two checkpoints
_PUMP: Final = re.compile(r"stations/[^/]+/p\d+")  # not the station's gateway actor


def pump_addresses(ctx: AdminContext, station: str = "") -> list[str]:
    """``stations/<sid>/pNN`` of every running pump actor (of one station), sorted."""
    prefix = f"stations/{station}" if station else "stations"
    return [a for a in ctx.system.registry.addresses(prefix) if _PUMP.fullmatch(a)]


async def status(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    return {
        "pid": ctx.pid,
        "uptime_s": round(time.monotonic() - ctx.started_at, 3),
        "draining": ctx.process.draining,
        "in_flight_orders": ctx.process.in_flight_orders(),
        "actors": len(ctx.system.registry),
        "http": ctx.http_url,
        "stations": len(ctx.config.stations),
        "channels": sorted(ctx.policies),
        "database": {
            **ctx.db.statistics(),
            "calls_in_flight": ctx.db.calls_in_flight(),
            "latency_ms": round(ctx.db.latency_s() * 1000, 1),
        },
        "version": "0.1.0",
    }


def _pump_row(address: str, state: Mapping[str, Any]) -> dict[str, Any]:
    _, station, pump = address.split("/")
    return {
        "address": address,
        "station": station,
        "pump": int(pump[1:]),
        "state": state.get("state"),
        "admin": state.get("admin"),
        "open_sale": state.get("open_sale"),
        "open_sale_state": state.get("open_sale_state"),
        "payable": list(state.get("payable", ())),
        "last_error": state.get("last_error"),
        "poll_latency_ms": state.get("poll_latency"),
        "polls": state.get("polls", 0),
        "alerts": state.get("alert_count", 0),
        "price_set_id": state.get("price_set_id"),
    }


async def pumps(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    offset, limit = args["offset"], args["limit"]
    if offset < 0 or not 1 <= limit <= 1000:
        raise AdminError("bad_args", "offset must be >= 0 and limit within 1..1000")
    addresses = pump_addresses(ctx, args["station"])
    if args["station"] and not addresses:
        raise AdminError("not_found", f"no pumps running at station {args['station']!r}")
    page = addresses[offset : offset + limit]
    rows = []
    for i, address in enumerate(page):
        try:
            rows.append(_pump_row(address, ctx.system.snapshot(address).state))
        except ActorError:  # stopped between the listing and now
            continue
        if i % BATCH == BATCH - 1:
            await trio.lowlevel.checkpoint()
    end = offset + len(page)
    return {
        "pumps": rows,
        "total": len(addresses),
        "offset": offset,
        "next_offset": end if end < len(addresses) else None,
    }


async def _fees_today(ctx: AdminContext) -> dict[str, tuple[int, int, int]]:
    """channel -> (captures, captured fen, fees in milli-fen) since midnight UTC, from the
    orders as booked and each channel's fee contract (what the router scores with)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await ctx.db.fetch(
        "SELECT channel, captured_fen FROM orders"
        " WHERE captured_fen > 0 AND channel IS NOT NULL AND updated_at >= $1",
        midnight,
    )
    out: dict[str, tuple[int, int, int]] = {}
    for row in rows:
        name, fen = row["channel"], int(row["captured_fen"])
        policy = ctx.policies.get(name)
        fee = policy.fee.fee_mfen(fen) if policy is not None else 0
        n, total, fees = out.get(name, (0, 0, 0))
        out[name] = (n + 1, total + fen, fees + fee)
    return out


async def channels(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    decisions = ctx.router.statistics().decisions
    counts = {name: sum(by.values()) for name, by in decisions.items()}
    all_decisions = sum(counts.values())
    fees = await _fees_today(ctx)
    rows = []
    for name in sorted(ctx.policies):
        try:
            stats = ctx.system.snapshot(f"channels/{name}").state
        except ActorError:
            stats = {}
        health = stats.get("health") or {}
        technical = health.get("technical_failures", 0) + health.get("technical_successes", 0)
        captures, captured, fee_mfen = fees.get(name, (0, 0, 0))
        rows.append(
            {
                "name": name,
                "provider": ctx.policies[name].provider.value,
                "running": bool(stats),
                "enabled": stats.get("enabled"),
                "disabled_reason": stats.get("disabled_reason"),
                "eligible": stats.get("eligible"),
                "health": health.get("level"),
                "health_score": health.get("score"),
                "error_rate": health.get("technical_failures", 0) / technical if technical else 0.0,
                "approval_rate": health.get("approval_rate"),
                "routing_share": counts.get(name, 0) / all_decisions if all_decisions else 0.0,
                "decisions": counts.get(name, 0),
                "captures_today": captures,
                "captured_fen_today": captured,
                "fees_mfen": fee_mfen,
                "fees_fen": (fee_mfen + 500) // 1000,
                "in_flight": stats.get("in_flight", 0),
                "waiting": stats.get("waiting", 0),
                "last_error": stats.get("last_error"),
            }
        )
    return {"channels": rows, "decisions": all_decisions}


async def orders(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    limit, station = args["limit"], args["station"] or None
    if not 1 <= limit <= 10_000:
        raise AdminError("bad_args", "limit must be within 1..10000")
    where = "NOT terminal AND ($1::text IS NULL OR station_id = $1)"
    total = await ctx.db.fetchval(f"SELECT count(*) FROM orders WHERE {where}", station)
    rows = await ctx.db.fetch(
        "SELECT id, station_id, pump_no, flow, state, channel, held_fen, preset_kind,"
        f" preset_value, created_at FROM orders WHERE {where} ORDER BY created_at LIMIT $2",
        station,
        limit,
    )
    now = datetime.now(UTC)
    return {
        "orders": [
            {
                "order_id": r["id"],
                "station": r["station_id"],
                "pump": r["pump_no"],
                "flow": r["flow"],
                "state": r["state"],
                "channel": r["channel"],
                "amount_fen": int(r["held_fen"])
                or (int(r["preset_value"]) if r["preset_kind"] == "amount" else 0),
                "created_at": r["created_at"].isoformat(),
                "age_s": round((now - r["created_at"]).total_seconds(), 3),
            }
            for r in rows
        ],
        "total": int(total or 0),
    }


async def alerts(ctx: AdminContext, args: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    """The switch's alerts (orders, callbacks: the ``alerts`` table) and the pumps' own
    (orphan sales, totals gaps: kept by each pump actor from its journal), newest first."""
    limit = args["limit"]
    if not 1 <= limit <= 10_000:
        raise AdminError("bad_args", "limit must be within 1..10000")
    out: list[dict[str, Any]] = [
        {
            "at": a.at.isoformat(),
            "source": "switch",
            "kind": a.kind,
            "severity": a.severity,
            "subject": a.subject,
            "detail": a.details.get("detail") or a.details.get("message") or a.details,
        }
        for a in await list_alerts(ctx.db, newest=limit)
    ]
    for i, address in enumerate(pump_addresses(ctx)):
        try:
            state = ctx.system.snapshot(address).state
        except ActorError:
            continue
        out.extend(
            {
                "at": alert.get("at"),
                "source": "pump",
                "kind": alert.get("kind"),
                "severity": "warning",
                "subject": address,
                "detail": alert.get("detail"),
            }
            for alert in state.get("alerts", ())
        )
        if i % BATCH == BATCH - 1:
            await trio.lowlevel.checkpoint()
    out.sort(key=lambda a: str(a["at"] or ""), reverse=True)
    return {"alerts": out[:limit], "total": len(out)}
