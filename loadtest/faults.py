"""``--faults``: the load test's fault scenario, parsed into simulator settings.

The spec reads like an operator would say it (``channel-timeouts=10%,pump-drop=1%``); each key
maps onto one knob of a simulator's control API, so a scenario needs no switch cooperation:
provider settings go to every provider of every provider-simulator process (``PATCH
/faults/<provider>``), pump settings to every simulated pump (the ``faults`` control command).
Pure: parsing only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["FAULT_KEYS", "FaultPlan", "FaultSpecError", "parse_faults"]

# key -> (simulator, setting): "provider" settings are channels.sim.faults.ProviderFaults
# fields, "pump" settings devices.sim.faults.Faults fields.
FAULT_KEYS: Final[Mapping[str, tuple[str, str]]] = {
    "channel-timeouts": ("provider", "timeout_rate"),
    "channel-errors": ("provider", "error_rate"),
    "callback-loss": ("provider", "callback_drop"),
    "callback-dup": ("provider", "callback_duplicate"),
    "callback-reorder": ("provider", "callback_reorder"),
    "pump-drop": ("pump", "drop_reply_probability"),
}
# A timed-out provider request is held back longer than the switch's read timeout (3 s in the
# generated configuration), but not for the simulator's default minute: the switch's query of
# the unknown outcome is what is being exercised, not a minute of open connections.
TIMEOUT_HOLD_S: Final = 5.0


class FaultSpecError(ValueError):
    """A ``--faults`` value that cannot be understood (the message says why)."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    provider: Mapping[str, float] = field(default_factory=dict)  # every provider, every process
    pump: Mapping[str, float] = field(default_factory=dict)  # every pump

    @property
    def empty(self) -> bool:
        return not self.provider and not self.pump

    def provider_settings(self) -> dict[str, float]:
        """The ``PATCH /faults/<provider>`` body (with the hold time of timeouts)."""
        settings = dict(self.provider)
        if settings.get("timeout_rate"):
            settings["timeout_hold_s"] = TIMEOUT_HOLD_S
        return settings

    def to_json(self) -> dict[str, dict[str, float]]:
        return {"provider": dict(self.provider), "pump": dict(self.pump)}


def _fraction(key: str, text: str) -> float:
    raw = text.strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    try:
        value = float(number)
    except ValueError:
        raise FaultSpecError(f"{key}: {text!r} is not a percentage (e.g. 10%)") from None
    if percent:
        value /= 100.0
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise FaultSpecError(f"{key}: {text!r} is not within 0%..100%")
    return value


def parse_faults(spec: str) -> FaultPlan:
    """``"channel-timeouts=10%,callback-loss=0.1"`` -> FaultPlan. A bare number is a fraction,
    a number with ``%`` a percentage. Unknown keys, repeated keys and bad values raise
    FaultSpecError naming the offending item."""
    provider: dict[str, float] = {}
    pump: dict[str, float] = {}
    seen: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise FaultSpecError(f"{item!r}: expected KEY=PERCENT")
        if key not in FAULT_KEYS:
            known = ", ".join(FAULT_KEYS)
            raise FaultSpecError(f"unknown fault {key!r} (known: {known})")
        if key in seen:
            raise FaultSpecError(f"fault {key!r} given twice")
        seen.add(key)
        target, setting = FAULT_KEYS[key]
        (provider if target == "provider" else pump)[setting] = _fraction(key, value)
    return FaultPlan(provider, pump)
