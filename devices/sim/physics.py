"""Integer money and flow arithmetic of the simulated dispenser.

Money. Volume is in mL and unit price in milli-fen per litre, so ``volume * price`` is in
milli-fen * mL / L = 10^-6 fen. The spec's "round(volume * price / 1000)" is written for a
price in fen per litre; with the map's milli-fen per litre the divisor is 10^6::

    amount_fen = floor((volume_ml * price + 500_000) / 1_000_000)     # round half up

Only integers are involved, so the switch can recompute the pump's figure exactly. At or
below 10 yuan/L (``price <= 1_000_000``) one more mL adds at most one fen, so every amount
is reachable and an amount preset stops exactly on the preset; above that, it stops at
the last mL that does not exceed it.

Flow. A flow segment (from first flow, or from a RESUME) ramps linearly from 0 to its
rate in ``ramp_ms``, then stays there. Time is integer milliseconds and the dispensed
volume is the floor of the exact integral, so the curve is exact and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

AMOUNT_DIVISOR: Final = 1_000_000  # mL * milli-fen/L → fen
MAX_EXACT_PRICE: Final = AMOUNT_DIVISOR  # milli-fen/L up to which every fen is reachable


def amount_fen(volume_ml: int, unit_price: int) -> int:
    """The amount of ``volume_ml`` at ``unit_price`` (milli-fen/L), rounded half up."""
    if volume_ml < 0 or unit_price < 0:
        raise ValueError("volume and price must not be negative")
    return (volume_ml * unit_price + AMOUNT_DIVISOR // 2) // AMOUNT_DIVISOR


def volume_for_amount(amount: int, unit_price: int) -> int:
    """The largest volume (mL) whose :func:`amount_fen` does not exceed ``amount`` fen.

    ``(v*p + D//2) // D <= a``  <=>  ``v*p + D//2 < (a+1)*D``
    <=>  ``v <= ((a+1)*D - D//2 - 1) // p``  (D = 10^6).
    """
    if amount < 0 or unit_price <= 0:
        raise ValueError("amount must not be negative and price must be positive")
    return ((amount + 1) * AMOUNT_DIVISOR - AMOUNT_DIVISOR // 2 - 1) // unit_price


@dataclass(frozen=True, slots=True)
class FlowCurve:
    """One flow segment: a linear ramp to ``rate_ml_s`` over ``ramp_ms``, then constant."""

    rate_ml_s: int
    ramp_ms: int

    def __post_init__(self) -> None:
        if self.rate_ml_s <= 0 or self.ramp_ms < 0:
            raise ValueError("flow rate must be positive and ramp not negative")

    def volume_ml(self, elapsed_ms: int) -> int:
        """Whole mL dispensed ``elapsed_ms`` into the segment (floor of the integral)."""
        r, ramp = self.rate_ml_s, self.ramp_ms
        if elapsed_ms <= 0:
            return 0
        if ramp == 0:
            return r * elapsed_ms // 1000
        if elapsed_ms < ramp:
            return r * elapsed_ms * elapsed_ms // (2000 * ramp)
        return r * (2 * elapsed_ms - ramp) // 2000

    def rate_ml_min(self, elapsed_ms: int) -> int:
        """Instantaneous flow rate in mL per minute (the FLOW_RATE register)."""
        full = self.rate_ml_s * 60
        if self.ramp_ms == 0 or elapsed_ms >= self.ramp_ms:
            return full
        return full * max(elapsed_ms, 0) // self.ramp_ms

    def elapsed_for(self, volume_ml: int) -> int:
        """The least ``elapsed_ms`` at which :meth:`volume_ml` reaches ``volume_ml``."""
        if volume_ml <= 0:
            return 0
        hi = max(1, self.ramp_ms)
        while self.volume_ml(hi) < volume_ml:
            hi *= 2
        lo = 0  # invariant: volume_ml(lo) < target <= volume_ml(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.volume_ml(mid) >= volume_ml:
                hi = mid
            else:
                lo = mid
        return hi
