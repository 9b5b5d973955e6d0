"""Simulated DART pumps: the GFD-1 simulator's fuelling points behind the DART protocol.

The physics, payable buffer, totals, prices, faults and ledger are the simulator's own
:class:`~devices.sim.dispenser.FuellingPoint`; this package only speaks DART for it, so
DART pumps are scripted through the same control API as the Modbus ones.

Sans-IO, exported here: :class:`DartPumpModel` (the application layer: DART status,
CD transactions carried out, what to report on a poll) and :class:`DartPumpSide` (the
link layer: one address, block numbers, acknowledgements, repeats). Imported by module,
like ``devices.sim``'s servers: ``station`` (the pumps of one simulated station as one
line, with transport faults; it needs ``devices.sim.simulation``) and ``line_server``
(the trio adapter on a tty).
"""

from .pump_model import AUTH_TOKEN, DEFAULT_DECIMALS, DartPumpModel
from .pump_side import MAX_PUMPS, DartPumpSide, PumpSideStatistics, pump_address

__all__ = [
    "AUTH_TOKEN",
    "DEFAULT_DECIMALS",
    "MAX_PUMPS",
    "DartPumpModel",
    "DartPumpSide",
    "PumpSideStatistics",
    "pump_address",
]
