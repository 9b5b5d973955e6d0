"""Contract-shaped results of the switch's admin commands, served by canned handlers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ops.admin import Caller, Command, Param
from tests.ops.support import Recorder

STATUS = {
    "pid": 4242,
    "uptime_s": 3725.5,
    "draining": False,
    "in_flight_orders": 3,
    "actors": 120,
    "http": "http://127.0.0.1:8080",
    "version": "0.1.0",
}
PUMPS = [
    {
        "address": f"stations/s001/p{n:02d}",
        "station": "s001",
        "pump": n,
        "state": "idle" if n % 2 else "fuelling",
        "admin": "open",
        "open_sale": None,
        "open_sale_state": None,
        "payable": [n * 10],
        "last_error": None,
        "poll_latency_ms": {
            "last_ms": 3.0,
            "p50_ms": 3.5,
            "p99_ms": 9.25,
            "polls": 40,
            "errors": 0,
        },
        "polls": 1000 + n,
        "alerts": 0,
        "price_set_id": 17,
    }
    for n in range(1, 6)
]
CHANNELS = {
    "channels": [
        {
            "name": "wechatpay-main",
            "provider": "wechatpay",
            "enabled": True,
            "disabled_reason": None,
            "eligible": True,
            "health": "up",
            "error_rate": 0.125,
            "approval_rate": 0.98,
            "routing_share": 0.75,
            "decisions": 40,
            "fees_fen": 12_345,
            "in_flight": 2,
            "waiting": 0,
            "last_error": None,
        }
    ]
}
ORDERS = {
    "orders": [
        {
            "order_id": "ord-0001",
            "station": "s001",
            "pump": 3,
            "flow": "prepay",
            "state": "fuelling",
            "channel": "wechatpay-main",
            "amount_fen": 20_000,
            "created_at": "2025-01-01T08:00:00+00:00",
            "age_s": 75.0,
        }
    ],
    "total": 1,
}
ALERTS = {
    "alerts": [
        {
            "at": "2025-01-01T08:00:00+00:00",
            "source": "pump",
            "kind": "comms_lost",
            "severity": "warning",
            "subject": "stations/s001/p02",
            "detail": "no answer for 3 polls",
        }
    ]
}


def canned(recorder: Recorder) -> list[Command]:
    async def pumps(args: Mapping[str, Any], caller: Caller) -> Any:
        recorder.calls.append(("pumps", dict(args), caller))
        offset = args["offset"]
        page = PUMPS[offset : offset + 2]  # small pages: the CLI must walk them
        following = offset + 2 if offset + 2 < len(PUMPS) else None
        return {"pumps": page, "total": len(PUMPS), "offset": offset, "next_offset": following}

    pump = (
        Param("station", str, required=True),
        Param("pump", int, required=True),
        Param("reason", str, default="operator"),
    )
    channel = (Param("name", str, required=True), Param("reason", str, default="operator"))
    return [
        Command("status", recorder.handler("status", STATUS)),
        Command(
            "pumps",
            pumps,
            (
                Param("station", str, default=""),
                Param("offset", int, default=0),
                Param("limit", int, default=500),
            ),
        ),
        Command("channels", recorder.handler("channels", CHANNELS)),
        Command(
            "orders",
            recorder.handler("orders", ORDERS),
            (Param("limit", int, default=100), Param("station", str, default="")),
        ),
        Command("alerts", recorder.handler("alerts", ALERTS), (Param("limit", int, default=100),)),
        *(
            Command(
                f"pump.{a}",
                recorder.handler(f"pump.{a}", {"address": "stations/s001/p03", "done": True}),
                pump,
                action=True,
            )
            for a in ("close", "open", "stop")
        ),
        Command(
            "prices.set",
            recorder.handler(
                "prices.set",
                {
                    "station": "s001",
                    "price_set_id": 18,
                    "effective_at": "2025-01-02T00:00:00+00:00",
                },
            ),
            (
                Param("station", str, required=True),
                Param("prices", dict, required=True),
                Param("at", str, default=""),
            ),
            action=True,
        ),
        *(
            Command(
                f"channel.{a}",
                recorder.handler(
                    f"channel.{a}", {"name": "wechatpay-main", "enabled": a == "enable"}
                ),
                channel,
                action=True,
            )
            for a in ("enable", "disable")
        ),
        Command(
            "drain",
            recorder.handler("drain", {"draining": False, "in_flight_orders": 0}),
            (Param("on", bool, default=True),),
            action=True,
        ),
        Command(
            "log_level",
            recorder.handler("log_level", {"level": "debug"}),
            (Param("level", str, required=True), Param("logger", str, default="")),
            action=True,
        ),
    ]
