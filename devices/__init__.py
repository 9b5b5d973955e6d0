"""Dispenser protocols: sans-IO codecs, trio transports, pump actors, dispenser simulators.

The PumpActor and its messages are re-exported here, lazily: the simulator and the codecs
import this package too, and must not pay for (or depend on) the actor runtime and the
store that the PumpActor brings with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pump import (
        Authorize,
        Authorized,
        Close,
        CollectSale,
        EmergencyStop,
        LockSale,
        LookupFailed,
        Open,
        PayableSale,
        PayableSales,
        PumpActor,
        PumpBusy,
        PumpClosed,
        PumpEvent,
        PumpInfo,
        PumpInfoReply,
        ResetError,
        Resume,
        SaleFinished,
        SaleNotPayable,
        SalePhase,
        SaleReport,
        SaleStatus,
        SetPrices,
        Stop,
        Subscribe,
        Suspend,
        UnlockSale,
        Unsubscribe,
    )

__all__ = [
    "Authorize",
    "Authorized",
    "Close",
    "CollectSale",
    "EmergencyStop",
    "LockSale",
    "LookupFailed",
    "Open",
    "PayableSale",
    "PayableSales",
    "PumpActor",
    "PumpBusy",
    "PumpClosed",
    "PumpEvent",
    "PumpInfo",
    "PumpInfoReply",
    "ResetError",
    "Resume",
    "SaleFinished",
    "SaleNotPayable",
    "SalePhase",
    "SaleReport",
    "SaleStatus",
    "SetPrices",
    "Stop",
    "Subscribe",
    "Suspend",
    "UnlockSale",
    "Unsubscribe",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".pump", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
