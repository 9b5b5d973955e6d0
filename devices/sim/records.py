"""Plain data of the simulated fuelling point: configuration, settings, sales, snapshots.

Field names of :class:`PointSnapshot` and :class:`Sale` follow the GFD-1 register map as
``devices/gfd1/registers.py`` names it (``cur_volume_ml``, ``last_sale_amount_fen``, ...),
so the Modbus server can hand them to the codec without a renaming table.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from devices.gfd1.states import (
    CommandResult,
    EndReason,
    ErrorCode,
    Flag,
    FPState,
    Mode,
    PresetType,
    SaleState,
)

MAX_NOZZLES = 8
U16 = 0xFFFF
U32 = 0xFFFF_FFFF


def to_ms(seconds: float) -> int:
    """Model time is kept in integer milliseconds."""
    return round(seconds * 1000)


def check_range(name: str, value: int, top: int, bottom: int = 0) -> None:
    if not isinstance(value, int) or not bottom <= value <= top:
        raise ValueError(f"{name}={value!r} is outside {bottom}..{top}")


@dataclass(frozen=True, slots=True)
class NozzleSpec:
    grade: int  # grade code (GRADE_OF_NOZZLE_n)
    price: int  # initial unit price, milli-fen per litre

    def __post_init__(self) -> None:
        check_range("grade", self.grade, U16)
        check_range("price", self.price, U32, 1)


@dataclass(frozen=True, slots=True)
class PointSpec:
    """What a fuelling point is built with: nozzles, identity and its flow physics."""

    nozzles: tuple[NozzleSpec, ...]
    identity: str = "GFD1-SIM"
    price_set_id: int = 1  # prices in force at first power-up
    flow_min_ml_s: int = 500  # each sale draws its rate from [min, max] with the point's rng
    flow_max_ml_s: int = 700
    ramp_ms: int = 1500  # 0 → full rate at once
    flow_delay_ms: int = 500  # nozzle out and authorized → first flow (the customer squeezes)

    def __post_init__(self) -> None:
        if not 1 <= len(self.nozzles) <= MAX_NOZZLES:
            raise ValueError(f"a fuelling point has 1..{MAX_NOZZLES} nozzles")
        if not self.identity.isascii() or len(self.identity) > 16:
            raise ValueError("identity must be at most 16 ASCII characters")
        check_range("price_set_id", self.price_set_id, U16)
        check_range("flow_min_ml_s", self.flow_min_ml_s, 10_000, 1)
        check_range("flow_max_ml_s", self.flow_max_ml_s, 10_000, self.flow_min_ml_s)
        check_range("ramp_ms", self.ramp_ms, 60_000)
        check_range("flow_delay_ms", self.flow_delay_ms, 60_000)

    @property
    def nozzle_count(self) -> int:
        return len(self.nozzles)


@dataclass(slots=True)
class SimSettings:
    """The holding registers 1200-1203; they survive a power cycle."""

    host_watchdog_s: int = 0  # 0 = off
    max_unpaid: int = 3  # 0 = no limit
    auth_timeout_s: int = 120  # 0 = off
    mode: Mode = Mode.HOST_CONTROLLED

    def __post_init__(self) -> None:
        for name in ("host_watchdog_s", "max_unpaid", "auth_timeout_s"):
            check_range(name, getattr(self, name), U16)
        self.mode = Mode(self.mode)


@dataclass(frozen=True, slots=True)
class Sale:
    """One ended sale: an entry of the payable buffer (or a lost one, ``state`` NONE).

    Every accepted authorization ends in exactly one ``Sale``; a zero sale (no flow) has
    volume 0 and equal start and end totals. ``state`` is PAYABLE or LOCKED while in the
    buffer, NONE for a sale lost in a power cycle (reported, never buffered).
    """

    seq: int
    nozzle: int
    end_reason: EndReason
    volume_ml: int
    amount_fen: int
    unit_price: int
    start_volume_total_ml: int
    end_volume_total_ml: int
    start_amount_total_fen: int
    end_amount_total_fen: int
    auth_token: int
    preset_type: PresetType
    preset_value: int
    price_set_id: int
    state: SaleState = SaleState.PAYABLE


@dataclass(frozen=True, slots=True)
class Customer:
    """A scripted customer: lifts ``nozzle`` at ``lift_at_s`` (or as soon as the point is
    free after that), hangs up after ``hang_up_after_ml`` of the sale or ``hang_up_after_s``
    after lifting, whichever comes first, and in any case once the sale has ended.
    Without either limit the customer keeps the nozzle until the sale ends."""

    nozzle: int
    lift_at_s: float = 0.0
    hang_up_after_ml: int | None = None
    hang_up_after_s: float | None = None


def random_customer(rng: random.Random, nozzle_count: int, *, at_s: float) -> Customer:
    """A plausible customer from ``rng``: mostly "fill N litres", sometimes "N seconds"."""
    nozzle = rng.randint(1, nozzle_count)
    if rng.random() < 0.8:
        return Customer(nozzle, at_s, hang_up_after_ml=rng.randint(5_000, 60_000))
    return Customer(nozzle, at_s, hang_up_after_s=rng.uniform(5.0, 90.0))


@dataclass(frozen=True, slots=True)
class PointSnapshot:
    """Every register value of one fuelling point at one instant (unit ids are the server's).

    Status block (IR 0-56) fields carry the names of ``devices.gfd1.registers``; the
    ``last_sale_*`` fields are zero when the payable buffer is empty.
    """

    map_version: int
    fp_state: FPState
    flags: Flag
    active_nozzle: int
    nozzle_out_mask: int
    error_code: ErrorCode
    cur_sale_seq: int
    cur_volume_ml: int
    cur_amount_fen: int
    cur_unit_price: int
    flow_rate_ml_min: int
    cur_auth_token: int
    cmd_ack_seq: int
    cmd_result: CommandResult
    cmd_ack_code: int
    heartbeat: int
    boot_count: int
    unpaid_count: int
    price_set_id: int
    last_sale_seq: int
    last_sale_nozzle: int
    last_sale_end_reason: int  # an EndReason, or 0 when the buffer is empty
    last_sale_volume_ml: int
    last_sale_amount_fen: int
    last_sale_unit_price: int
    last_sale_start_volume_total_ml: int
    last_sale_end_volume_total_ml: int
    last_sale_auth_token: int
    last_sale_preset_type: int
    last_sale_preset_value: int
    last_sale_price_set_id: int
    last_sale_state: int  # a SaleState
    # totals (IR 100+), nozzle 1 first
    nozzle_volume_totals_ml: tuple[int, ...]
    nozzle_amount_totals_fen: tuple[int, ...]
    # configuration (IR 200-217)
    nozzle_count: int
    grades: tuple[int, ...]
    identity: str
    # holding registers the host writes and may read back (HR 1100+, 1200-1203)
    staged_prices: tuple[int, ...]
    host_watchdog_s: int
    max_unpaid: int
    auth_timeout_s: int
    mode: Mode
