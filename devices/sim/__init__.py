"""Dispenser simulators. ``FuellingPoint`` is the pure, deterministic model of one GFD-1
fuelling point (one Modbus unit id); the Modbus server around it owns clock and I/O."""

from .dispenser import MAP_VERSION, FuellingPoint
from .faults import Faults
from .fuelling_point import PointCore
from .persistence import StationFile
from .physics import FlowCurve, amount_fen, volume_for_amount
from .records import (
    Customer,
    NozzleSpec,
    PointSnapshot,
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
    "PointSnapshot",
    "PointSpec",
    "Sale",
    "SimSettings",
    "StationFile",
    "amount_fen",
    "random_customer",
    "volume_for_amount",
]
