"""Crash safety of the prepay flow: ``fuelswitch serve`` SIGKILLs itself at each step of an
order (write-ahead journal appends, provider calls, pump commands, the pump's own steps),
starts again, and the order still ends completed with the dispensed amount captured once and
the rest of the hold released (ARCHITECTURE.md invariants 1-4 and 7).

Providers rotate over the points; pumps 1-3 rotate too, so one broken case leaves the next
with a clean pump.
"""

from __future__ import annotations

from typing import Final

import httpx
import pytest

from devices import crashpoints
from switch.store import Store

from .client import PumpSim
from .crash import METHODS, CrashCase, enable_auto_pay, run_prepay_case
from .harness import World

POINTS: Final = (
    "order.after_hold_requested",
    "order.before_hold",
    "order.after_hold_sent",
    "order.after_hold_result",
    "order.after_auth_requested",
    "order.before_pump_authorize",
    "order.after_pump_authorize",
    "pump.after_auth_requested",
    "pump.after_authorize",
    "order.after_authorized",
    "pump.fuelling",
    "pump.after_completed",
    "order.after_sale_completed",
    "order.after_capture_requested",
    "order.before_capture",
    "order.after_capture_sent",
    "order.after_captured",
    "order.after_release_requested",
    "order.before_release",
    "order.after_release_sent",
    "order.after_released",
)
CASES: Final = [
    CrashCase(
        point,
        METHODS[i % len(METHODS)],
        pump=1 + i % 3,
        may_void=point == "pump.after_auth_requested",
    )
    for i, point in enumerate(POINTS)
]


@pytest.fixture(scope="module")
def auto_pay(world: World) -> World:
    enable_auto_pay(world)
    return world


@pytest.mark.parametrize("case", CASES, ids=[f"{c.point}-{c.method}" for c in CASES])
async def test_prepay_survives_a_crash(
    auto_pay: World, store: Store, pumps: PumpSim, http: httpx.AsyncClient, case: CrashCase
) -> None:
    await run_prepay_case(auto_pay, store.db, pumps, http, case)


def test_every_point_is_registered() -> None:
    from tests.switch.e2e.test_crash_postpay import POINTS as POSTPAY_POINTS

    assert set(POINTS) | set(POSTPAY_POINTS) <= crashpoints.POINTS
