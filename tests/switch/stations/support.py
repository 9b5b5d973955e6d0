"""A small chain for the station tests: three stations around People's Square, Shanghai."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from switch.config import AuthSection, Grade, HttpSection, StationEntry, SwitchConfig

GRADES = (
    Grade("92", "92#", "gasoline"),
    Grade("95", "95#", "gasoline"),
    Grade("0", "0# diesel", "diesel"),
)


def station(
    station_id: str,
    lat_e6: int,
    lon_e6: int,
    *,
    pumps: int = 2,
    nozzles: tuple[str, ...] = ("92", "95"),
    prices: Mapping[str, int] | None = None,
    hours: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
) -> StationEntry:
    return StationEntry(
        id=station_id,
        name=f"Station {station_id}",
        address=f"{station_id} Road",
        lat_e6=lat_e6,
        lon_e6=lon_e6,
        timezone="Asia/Shanghai",
        opening_hours=MappingProxyType(dict(hours or {})),
        gateway_host="127.0.0.1",
        gateway_port=5020,
        pumps=pumps,
        nozzles=nozzles,
        prices=MappingProxyType(dict(prices or {"92": 789_000, "95": 841_000})),
    )


def chain(*stations: StationEntry) -> SwitchConfig:
    return SwitchConfig(
        home=Path("var"),
        database_url=None,
        redis_url=None,
        http=HttpSection(),
        auth=AuthSection(secret=b"s" * 32),
        grades=GRADES,
        stations=stations,
    )
