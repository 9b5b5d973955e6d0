"""Fault injection for one simulated fuelling point.

Two kinds live side by side. Transport faults (dropped or delayed replies, RTU CRC
errors, exception 06 "device busy" replies) belong to the Modbus server: it consults
them, with its own ``random.Random``, for every request it answers for this point; the
model never reads them. Device faults are the model's:
:class:`~devices.sim.dispenser.FuellingPoint` reads them as it runs, and the one-shot
ones (``pulser_error_at_ml``, ``power_loss_at_ml``) reset themselves to ``None`` when
they fire. Tests and the simulator's control API mutate the fields in place.

The busy reply (exception 06, the request not executed) is not the model's BUSY command
result (``busy_commands``: the command block is accepted and CMD_RESULT says BUSY).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Faults:
    # -- transport side: consulted by the server, never by the model --------------------
    drop_reply_probability: float = 0.0  # answer nothing
    delay_reply_probability: float = 0.0  # answer after delay_reply_s
    delay_reply_s: float = 0.0
    crc_error_probability: float = 0.0  # RTU: corrupt the CRC of the reply
    busy_reply_probability: float = 0.0  # answer exception 06 (device busy), do nothing

    # -- device side: implemented by the model -------------------------------------------
    busy_commands: int = 0  # the next k commands are answered BUSY (and not executed)
    stuck_flow: bool = False  # hanging the nozzle up does not stop the flow; STOP does
    pulser_error_at_ml: int | None = None  # when the sale reaches this volume: pulser error
    power_loss_at_ml: int | None = None  # when the sale reaches this volume: power cycle
    power_loss_loses_sale: bool = False  # ... losing the sale (True) or completing it

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if self.delay_reply_s < 0 or self.busy_commands < 0:
            raise ValueError("delay and busy count must not be negative")

    # Helpers for the server; each draws from the server's rng only if the fault is armed,
    # so an unfaulted run consumes no randomness.

    def drop_reply(self, rng: random.Random) -> bool:
        return self.drop_reply_probability > 0 and rng.random() < self.drop_reply_probability

    def reply_delay_s(self, rng: random.Random) -> float:
        if self.delay_reply_probability > 0 and rng.random() < self.delay_reply_probability:
            return self.delay_reply_s
        return 0.0

    def corrupt_crc(self, rng: random.Random) -> bool:
        return self.crc_error_probability > 0 and rng.random() < self.crc_error_probability

    def busy_reply(self, rng: random.Random) -> bool:
        return self.busy_reply_probability > 0 and rng.random() < self.busy_reply_probability


PROBABILITIES = (
    "drop_reply_probability",
    "delay_reply_probability",
    "crc_error_probability",
    "busy_reply_probability",
)
