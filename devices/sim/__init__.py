"""Dispenser simulators. ``FuellingPoint`` is the pure, deterministic model of one GFD-1
fuelling point (one Modbus unit id); the Modbus server around it owns clock and I/O.

The server side is imported by module, not from here (it pulls in pymodbus and trio):
``register_map`` (a point as Modbus registers), ``framing`` (server-side MBAP and RTU
codecs), ``simulation`` (all points, faults, customers, ledger), ``control`` (the JSON-lines
control API), all sans-IO; ``gateway``, ``rtu_server`` and ``service`` are the trio
adapters and ``cli`` is ``fuelswitch sim pumps``."""

from .dispenser import MAP_VERSION, FuellingPoint
from .faults import Faults
from .fuelling_point import PointCore
from .persistence import StationFile
from .physics import FlowCurve, amount_fen, volume_for_amount
from .records import (
    Customer,
    NozzleSpec,
    PointSpec,
    Sale,
    SimSettings,
    random_customer,
)

__all__ = [
    "MAP_VERSION",
    "Customer",
    "Faults",
    "FlowCurve",
    "FuellingPoint",
    "NozzleSpec",
    "PointCore",
    "PointSpec",
    "Sale",
    "SimSettings",
    "StationFile",
    "amount_fen",
    "random_customer",
    "volume_for_amount",
]
