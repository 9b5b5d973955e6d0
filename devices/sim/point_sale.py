"""The fuelling point's RAM records: the sale in progress and the scripted customer at the
nozzle, with the state sets and helpers the model shares.

Split out of :mod:`devices.sim.fuelling_point` so that the point's mechanics
(:mod:`devices.sim.point_mechanics`), its event loop (:mod:`devices.sim.fuelling_point`)
and the host's side (:mod:`devices.sim.dispenser`) share one definition of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.gfd1.states import FPState, PresetType

from .physics import FlowCurve

IN_SALE = frozenset({FPState.AUTHORIZED, FPState.FUELLING, FPState.SUSPENDED_FUELLING})
AT_REST = frozenset({FPState.IDLE, FPState.CALLING, FPState.COMPLETED})
FLOWED = frozenset({FPState.FUELLING, FPState.SUSPENDED_FUELLING})
NEVER = 1 << 62


@dataclass(slots=True)
class LiveSale:
    """The sale in progress, from the authorization to its end (RAM)."""

    seq: int
    token: int
    nozzle_mask: int  # the nozzles the authorization allows
    preset_type: PresetType
    preset_value: int
    authorized_ms: int
    nozzle: int = 0  # the authorized nozzle that is out; fixed at first flow
    flowed: bool = False
    unit_price: int = 0
    price_set_id: int = 0
    start_volume_total_ml: int = 0
    start_amount_total_fen: int = 0
    volume_ml: int = 0
    amount_fen: int = 0
    preset_limit_ml: int | None = None
    curve: FlowCurve | None = None
    segment_start_ms: int = 0  # the current flow segment (first flow, or the last RESUME)
    segment_base_ml: int = 0


@dataclass(slots=True)
class PresentCustomer:
    """The scripted customer now holding a nozzle."""

    nozzle: int
    hang_up_ml: int | None
    hang_up_at_ms: int | None
    give_up_at_ms: int | None  # gives up unless the nozzle flows by then (then None)


def lowest_nozzle(mask: int) -> int:
    """The lowest nozzle number in a bit mask (bit 0 = nozzle 1); 0 for an empty mask."""
    return (mask & -mask).bit_length()
