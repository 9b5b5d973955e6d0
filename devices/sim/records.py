"""Plain data of the simulated fuelling point: configuration, settings, sales, customers.

The register values themselves are the codec's types (``devices.gfd1.codec``): the model
builds a :class:`~devices.gfd1.codec.StatusBlock` and friends, so the simulator and the
switch share one definition of every field. :class:`Sale` is the model's richer record of
an ended sale (it also keeps the amount totals and lost sales); :meth:`Sale.record` is the
buffer head as the status block carries it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from devices.gfd1.codec import SaleRecord
from devices.gfd1.states import EndReason, Mode, PresetType, SaleState

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

    def record(self) -> SaleRecord:
        """The sale as LAST_SALE_* (IR 32-56) presents it at the head of the buffer."""
        return SaleRecord(
            seq=self.seq,
            nozzle=self.nozzle,
            end_reason=self.end_reason,
            volume_ml=self.volume_ml,
            amount_fen=self.amount_fen,
            unit_price=self.unit_price,
            start_volume_total_ml=self.start_volume_total_ml,
            end_volume_total_ml=self.end_volume_total_ml,
            auth_token=self.auth_token,
            preset_type=self.preset_type,
            preset_value=self.preset_value,
            price_set_id=self.price_set_id,
            state=self.state,
        )


@dataclass(frozen=True, slots=True)
class Customer:
    """A scripted customer: lifts ``nozzle`` at ``lift_at_s`` (or as soon as the point is
    free after that), hangs up after ``hang_up_after_ml`` of the sale or ``hang_up_after_s``
    after lifting, whichever comes first, and in any case once the sale has ended.
    Without either limit the customer keeps the nozzle until the sale ends. With
    ``patience_s``, a customer whose nozzle has not started to flow that long after
    lifting gives up and hangs up (nobody authorized them): without it, an unattended
    point in host-controlled mode would hold a waiting customer for ever."""

    nozzle: int
    lift_at_s: float = 0.0
    hang_up_after_ml: int | None = None
    hang_up_after_s: float | None = None
    patience_s: float | None = None


def random_customer(
    rng: random.Random, nozzle_count: int, *, at_s: float, patience_s: float | None = None
) -> Customer:
    """A plausible customer from ``rng``: mostly "fill N litres", sometimes "N seconds"."""
    nozzle = rng.randint(1, nozzle_count)
    if rng.random() < 0.8:
        volume = rng.randint(5_000, 60_000)
        return Customer(nozzle, at_s, hang_up_after_ml=volume, patience_s=patience_s)
    return Customer(nozzle, at_s, hang_up_after_s=rng.uniform(5.0, 90.0), patience_s=patience_s)
