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
    }
)


def crash_point(name: str) -> None:
    if name in ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
