"""A channel's fee contract, in exact integer arithmetic.

The router scores channels by what a payment will cost under each one's contract, and the
reconciliation checks the fee on every bill row against the same contract: one definition, so
that the price the router assumed is the price the books expect. Fees are milli-fen (WeChat's
bill has five decimals of yuan, which is exactly a milli-fen); amounts are fen. No floats: the
percentage is parts per million and every division rounds by the contract's own rule.

Refunds give back part of the fee. The fixtures show how: WeChat returns the refunded share of
the payment's fee to the milli-fen (1.20 yuan on 200.00, 37.50 refunded: 0.22500 back), Alipay
rounds the same share to the fen (1.80 on 300.00, 43.20 refunded: 0.2592 → 0.26 back).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["FeeContract", "RefundFee", "Rounding", "divide"]

MFEN_PER_FEN = 1000
PPM = 1_000_000


class Rounding(enum.Enum):
    HALF_UP = "half_up"  # 0.5 away from zero: what the providers' bills show
    HALF_EVEN = "half_even"
    DOWN = "down"  # towards zero
    UP = "up"  # away from zero


class RefundFee(enum.Enum):
    """What a refund does to the fee already charged on its payment."""

    PROPORTIONAL = "proportional"  # the refunded share of the payment's fee comes back
    KEPT = "kept"  # nothing comes back


def divide(numerator: int, denominator: int, rounding: Rounding) -> int:
    """``numerator / denominator`` rounded to an integer by ``rounding``, exactly.

    Symmetric around zero (a negative share rounds like its positive), so a returned fee is
    the negative of the same fee charged.
    """
    if denominator <= 0:
        raise ValueError("the denominator must be positive")
    sign = -1 if numerator < 0 else 1
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder:
        if rounding is Rounding.UP:
            quotient += 1
        elif rounding is not Rounding.DOWN:
            twice = 2 * remainder
            if twice > denominator or (
                twice == denominator and (rounding is Rounding.HALF_UP or quotient % 2 == 1)
            ):
                quotient += 1
    return sign * quotient


@dataclass(frozen=True, slots=True)
class FeeContract:
    """``fee = clamp(round(amount * rate_ppm / 10**6 + fixed), min, max)`` in milli-fen, rounded to
    ``quantum_mfen`` (1000: whole fen). ``refund_quantum_mfen`` rounds the fee a refund gives
    back (1 for WeChat, which keeps milli-fen there)."""

    rate_ppm: int
    fixed_mfen: int = 0
    min_mfen: int = 0
    max_mfen: int | None = None
    rounding: Rounding = Rounding.HALF_UP
    quantum_mfen: int = MFEN_PER_FEN
    refund: RefundFee = RefundFee.PROPORTIONAL
    refund_quantum_mfen: int = MFEN_PER_FEN

    def __post_init__(self) -> None:
        ints = (
            self.rate_ppm,
            self.fixed_mfen,
            self.min_mfen,
            self.quantum_mfen,
            self.refund_quantum_mfen,
        )
        if any(isinstance(v, bool) or not isinstance(v, int) for v in ints):
            raise TypeError("fee contract figures are integers (ppm, milli-fen)")
        if not 0 <= self.rate_ppm <= PPM:
            raise ValueError("rate_ppm must be within 0..1,000,000")
        if self.fixed_mfen < 0 or self.min_mfen < 0:
            raise ValueError("fixed and minimum fees cannot be negative")
        if self.quantum_mfen < 1 or self.refund_quantum_mfen < 1:
            raise ValueError("rounding quanta must be at least one milli-fen")
        if self.max_mfen is not None and self.max_mfen < self.min_mfen:
            raise ValueError("the fee cap is below the minimum fee")

    def fee_mfen(self, amount_fen: int) -> int:
        """The fee charged on a payment of ``amount_fen`` (0 for a zero amount)."""
        _check_amount(amount_fen)
        if amount_fen == 0:
            return 0
        # amount * rate / 10**6 fen = amount * rate / 10**3 milli-fen; plus the fixed part, as a
        # fraction over 10**3 so that one rounding covers both.
        numerator = amount_fen * self.rate_ppm + self.fixed_mfen * (PPM // MFEN_PER_FEN)
        quanta = divide(numerator, (PPM // MFEN_PER_FEN) * self.quantum_mfen, self.rounding)
        fee = max(self.min_mfen, quanta * self.quantum_mfen)
        return fee if self.max_mfen is None else min(fee, self.max_mfen)

    def refund_fee_mfen(self, refund_fen: int, payment_fen: int, payment_fee_mfen: int) -> int:
        """The fee a refund gives back, as a negative milli-fen figure (as bills show it)."""
        _check_amount(refund_fen)
        _check_amount(payment_fen)
        if refund_fen > payment_fen:
            raise ValueError("a refund cannot exceed its payment")
        if self.refund is RefundFee.KEPT or refund_fen == 0:
            return 0
        quanta = divide(
            payment_fee_mfen * refund_fen,
            payment_fen * self.refund_quantum_mfen,
            self.rounding,
        )
        return -quanta * self.refund_quantum_mfen

    def net_fee_mfen(self, amount_fen: int, refunded_fen: int = 0) -> int:
        """What a payment costs once ``refunded_fen`` of it went back (the router's figure)."""
        fee = self.fee_mfen(amount_fen)
        return fee + self.refund_fee_mfen(refunded_fen, amount_fen, fee)


def _check_amount(fen: int) -> None:
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"amounts are integer fen, got {fen!r}")
    if fen < 0:
        raise ValueError(f"amounts are not negative here, got {fen}")
