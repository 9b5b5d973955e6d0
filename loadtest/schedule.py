"""Who arrives when, and which pump is free: the open-loop half of the load test.

Arrival times are fixed before the run starts (evenly spaced, or a seeded Poisson process) and
never depend on how fast the switch answers: a slow switch does not slow the arrivals down,
so it cannot hide its slowness (no coordinated omission). Each arrival takes a free pump of its
kind when it comes; when there is none it is counted (``no_free_pump``), never queued, since
a queue would again let the switch's slowness push arrivals back. Pure and seeded.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Arrival", "Flow", "PumpPool", "plan_arrivals", "postpay_pumps"]

METHODS: Final = ("wechatpay", "wechatpay", "alipay", "unionpay")  # WeChat is half the market
LITRES_ML: Final = (2_000, 5_000)  # a short fill: the pump is free again within seconds


class Flow(enum.StrEnum):
    PREPAY = "prepay"
    POSTPAY = "postpay"


@dataclass(frozen=True, slots=True)
class Arrival:
    index: int
    at_s: float  # scheduled time since the start of the run: the sale's clock starts here
    flow: Flow
    method: str
    nozzle_no: int
    litres_ml: int
    preset_fen: int

    @property
    def payer_id(self) -> str:
        if self.method == "wechatpay":
            return f"oLoad{self.index:023d}"
        if self.method == "alipay":
            return f"2088{self.index:012d}"
        return ""


def plan_arrivals(
    rate: float,
    duration_s: float,
    *,
    seed: int,
    postpay_share: float = 0.2,
    poisson: bool = True,
) -> list[Arrival]:
    """Arrivals at ``rate`` per second over ``duration_s``: evenly spaced, or with
    exponential gaps (a Poisson process) drawn from ``seed``."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    rng = random.Random(seed)
    out: list[Arrival] = []
    t = rng.expovariate(rate) if poisson else 0.0
    while t < duration_s:
        flow = Flow.POSTPAY if rng.random() < postpay_share else Flow.PREPAY
        litres = rng.randint(*LITRES_ML)
        out.append(
            Arrival(
                index=len(out),
                at_s=t,
                flow=flow,
                method=rng.choice(METHODS),
                nozzle_no=rng.randint(1, 2),
                litres_ml=litres,
                preset_fen=rng.choice((10_000, 20_000, 30_000)),  # well above the fill
            )
        )
        t = t + rng.expovariate(rate) if poisson else len(out) / rate
    return out


def postpay_pumps(pumps_per_station: int, share: float) -> int:
    """How many of a station's pumps (the last ones) are stand-alone, for post-pay: the
    share rounded up, at least one when the share is not 0, and never every pump."""
    if share <= 0 or pumps_per_station < 2:
        return 0
    return min(pumps_per_station - 1, max(1, math.ceil(pumps_per_station * share)))


class PumpPool:
    """The free pumps of each flow. ``take`` picks one at random (O(1)), ``give`` returns
    it; a pump is held by one customer from arrival to the end of the sale."""

    def __init__(
        self, stations: Sequence[str], pumps_per_station: int, postpay: int, seed: int
    ) -> None:
        self._rng = random.Random(seed)
        self._free: dict[Flow, list[tuple[str, int]]] = {Flow.PREPAY: [], Flow.POSTPAY: []}
        first_postpay = pumps_per_station - postpay + 1
        for sid in stations:
            for pump in range(1, pumps_per_station + 1):
                flow = Flow.POSTPAY if pump >= first_postpay else Flow.PREPAY
                self._free[flow].append((sid, pump))
        self.size = {flow: len(free) for flow, free in self._free.items()}

    def free(self, flow: Flow) -> int:
        return len(self._free[flow])

    def take(self, flow: Flow) -> tuple[str, int] | None:
        free = self._free[flow]
        if not free:
            return None
        i = self._rng.randrange(len(free))
        free[i], free[-1] = free[-1], free[i]
        return free.pop()

    def give(self, flow: Flow, pump: tuple[str, int]) -> None:
        self._free[flow].append(pump)
