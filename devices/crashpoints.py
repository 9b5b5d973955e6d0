"""Named places where a test can have this process SIGKILLed, to prove crash safety by crashing.

``FUELSWITCH_CRASH_POINTS=pump.after_auth_requested,...`` arms points in a child process;
reaching an armed point kills the process at once, with no cleanup, exactly as a power
cut or ``kill -9`` would. Unarmed (always, in production), a point is one set lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Final

ARMED: Final = frozenset(
    p.strip() for p in os.environ.get("FUELSWITCH_CRASH_POINTS", "").split(",") if p.strip()
)

POINTS: Final = frozenset(
    {
        "pump.after_auth_requested",  # journaled, AUTHORIZE not yet written
        "pump.after_authorize",  # the pump acknowledged, ``authorized`` not yet journaled
        "pump.fuelling",  # ``fuelling`` journaled, the nozzle is flowing
        "pump.after_completed",  # ``completed`` journaled, CLEAR_SALE not yet written
        "pump.after_lock_requested",  # ``lock_requested`` journaled, LOCK_SALE not yet written
        "pump.after_collect_requested",  # ``collect_requested`` journaled, CLEAR_SALE not yet
        # the order actor (switch/orders): after a journal append, around provider and pump
        # calls (tests/switch/e2e/test_crash_*.py)
        "order.after_hold_requested",
        "order.before_hold",
        "order.after_hold_sent",
        "order.after_hold_result",
        "order.after_auth_requested",
        "order.before_pump_authorize",
        "order.after_pump_authorize",
        "order.after_authorized",
        "order.after_sale_completed",
        "order.after_capture_requested",
        "order.before_capture",
        "order.after_capture_sent",
        "order.after_captured",
        "order.after_release_requested",
        "order.before_release",
        "order.after_release_sent",
        "order.after_released",
        "order.after_locked",
        "order.after_pump_locksale",
        "order.after_collect_requested",
        "order.after_pump_collectsale",
    }
)


def crash_point(name: str) -> None:
    if name in ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
