"""The demo's switch configuration, built from what the simulators reported when they started.

Stations point at the pump simulator's Modbus gateways (one per station); channels point at
the provider simulators with the keys they generated. WeChat Pay gets two merchant channels,
each on a provider-simulator process of its own: the simulators inject faults per provider,
so breaking "wechatpay-main" must not break "wechatpay-backup" too, or there would be nothing
to fail over to. The backup costs a little more, so routing prefers the main channel until
its health drops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from channels.config import ChannelConfig
from channels.model import Provider
from channels.transport import HttpLimits
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
)

__all__ = [
    "GRADES",
    "PRICES",
    "PROMOTION",
    "ChannelPlan",
    "build_config",
    "channel_entry",
    "channel_plans",
]

# The pump simulator's nozzles: 92 then 95, at the prices it powers up with.
GRADES: Final = ("92", "95")
PRICES: Final = {"92": 789_000, "95": 842_000}  # milli-fen per litre
PROMOTION: Final = "WELCOME5"
# Near People's Square, Shanghai, a few hundred metres apart.
_LAT_E6, _LON_E6 = 31_230_416, 121_473_701


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    name: str
    provider: Provider
    process: str  # "main" | "backup": which provider-simulator process serves it
    merchant_index: int  # the simulator's n-th merchant of the provider
    fee_ppm: int


def channel_plans() -> tuple[ChannelPlan, ...]:
    return (
        ChannelPlan("wechatpay-main", Provider.WECHATPAY, "main", 0, 6000),
        ChannelPlan("wechatpay-backup", Provider.WECHATPAY, "backup", 1, 6500),
        ChannelPlan("alipay-main", Provider.ALIPAY, "main", 0, 5500),
        ChannelPlan("unionpay-main", Provider.UNIONPAY, "main", 0, 4500),
    )


def channel_entry(plan: ChannelPlan, ready: Mapping[str, Any]) -> ChannelEntry:
    """The channel ``plan`` names, on the provider simulator whose ready line is ``ready``."""
    provider = plan.provider.value
    merchant = ready["merchants"][provider][plan.merchant_index]
    config = ChannelConfig(
        name=plan.name,
        provider=plan.provider,
        base_url=ready[provider],
        merchant_id=merchant["merchant_id"],
        app_id=merchant["app_id"],
        keys_dir=Path(ready["keys"]) / provider / merchant["merchant_id"],
        notify_url="",
        limits=HttpLimits(connect_timeout_s=2.0, read_timeout_s=3.0),
    )
    routing = {
        "methods": [provider],
        "flows": ["prepay", "postpay"],
        "stations": ["*"],
        "fee": {"rate_ppm": plan.fee_ppm, "fixed_mfen": 0, "min_mfen": 0, "max_mfen": 0},
    }
    return ChannelEntry(config, routing, notify_url_default=True)


def build_config(
    *,
    home: Path,
    database_url: str,
    redis_url: str,
    secret: bytes,
    gateways: Sequence[tuple[str, int]],
    pumps: int,
    providers: Mapping[str, Mapping[str, Any]],
    seed: int,
) -> SwitchConfig:
    """``gateways``: (host, port) of station i's Modbus gateway; ``providers``: the ready
    documents of the "main" and "backup" provider-simulator processes."""
    stations = tuple(
        StationEntry(
            id=station_id(i),
            name=f"Demo station {i + 1}",
            address=f"{100 + i} Renmin Avenue, Shanghai",
            lat_e6=_LAT_E6 + 2_000 * i,
            lon_e6=_LON_E6 + 1_500 * i,
            timezone="Asia/Shanghai",
            opening_hours={},
            gateway_host=host,
            gateway_port=port,
            pumps=pumps,
            nozzles=GRADES,
            prices=dict(PRICES),
        )
        for i, (host, port) in enumerate(gateways)
    )
    return SwitchConfig(
        home=home,
        database_url=database_url,
        redis_url=redis_url,
        http=HttpSection(host="127.0.0.1", port=0),
        auth=AuthSection(secret=secret, token_ttl_s=3600),
        orders=OrdersSection(
            customer_pay_timeout_s=60.0, unknown_budget_s=20.0, passivate_after_s=30.0
        ),
        routing=RoutingSection(exploration_permille=50, seed=seed or 1),
        shutdown=ShutdownSection(grace_s=10.0),  # within the demo's stop bound
        grades=(Grade("92", "92#", "gasoline"), Grade("95", "95#", "gasoline")),
        stations=stations,
        channels=tuple(channel_entry(p, providers[p.process]) for p in channel_plans()),
        promotions=(
            {
                "code": PROMOTION,
                "kind": "fixed",
                "value": 500,
                "min_fen": 10000,
                "max_discount_fen": 500,
            },
        ),
    )


def station_id(index: int) -> str:
    return f"s{index + 1:03d}"
