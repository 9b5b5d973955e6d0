"""Crash safety of the post-pay flow: the driver has fuelled at a stand-alone pump, the sale
waits in its buffer; the switch SIGKILLs itself at a step of paying it (locking the sale,
the capture, clearing the sale in the pump), starts again, and the order still ends
completed: captured once for the sale, the sale cleared from the pump's buffer.
"""

from __future__ import annotations

from typing import Final

import httpx
import pytest

from switch.store import Store

from .client import PumpSim, pump_command
from .crash import METHODS, CrashCase, enable_auto_pay, run_postpay_case
from .harness import World

POINTS: Final = (
    "pump.after_lock_requested",
    "order.after_pump_locksale",
    "order.after_locked",
    "order.after_hold_requested",
    "order.after_hold_result",
    "order.after_capture_requested",
    "order.after_capture_sent",
    "order.after_captured",
    "order.after_collect_requested",
    "pump.after_collect_requested",
    "order.after_pump_collectsale",
)
CASES: Final = [
    CrashCase(point, METHODS[i % len(METHODS)], pump=1 + i % 4, volume_ml=600)
    for i, point in enumerate(POINTS)
]
STAND_ALONE: Final = 1


@pytest.fixture(scope="module")
def stand_alone(world: World) -> World:
    """Every pump in stand-alone mode (before any switch connects), holds paid at once."""
    for pump in range(1, 5):
        pump_command(world.pumps.control_port, "configure", station=0, pump=pump, mode=STAND_ALONE)
    enable_auto_pay(world)
    return world


@pytest.mark.parametrize("case", CASES, ids=[f"{c.point}-{c.method}" for c in CASES])
async def test_postpay_survives_a_crash(
    stand_alone: World, store: Store, pumps: PumpSim, http: httpx.AsyncClient, case: CrashCase
) -> None:
    await run_postpay_case(stand_alone, store.db, pumps, http, case)
