"""Fee contracts against the fixture bills' figures, and the rounding arithmetic's properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.fees import FeeContract, RefundFee, Rounding, divide

PROPS = settings(max_examples=300, deadline=None)

# The contracts the fixture bills were charged under (see /work/shared/fixtures/bills).
WECHAT = FeeContract(rate_ppm=6000, refund_quantum_mfen=1)
ALIPAY = FeeContract(rate_ppm=6000)


@pytest.mark.parametrize(
    ("amount_fen", "fee_mfen"),
    [(30000, 1_800_00), (20000, 1_200_00), (8888, 530_00)],  # 1.80000, 1.20000, 0.53000 yuan
)
def test_wechat_fixture_payment_fees(amount_fen: int, fee_mfen: int) -> None:
    assert WECHAT.fee_mfen(amount_fen) == fee_mfen


def test_wechat_fixture_refund_returns_the_share_to_the_milli_fen() -> None:
    fee = WECHAT.fee_mfen(20000)
    assert WECHAT.refund_fee_mfen(3750, 20000, fee) == -225_00  # -0.22500 yuan
    assert WECHAT.net_fee_mfen(20000, 3750) == 1_200_00 - 225_00


def test_alipay_fixture_fees_round_to_the_fen() -> None:
    assert ALIPAY.fee_mfen(30000) == 1_800_00
    assert ALIPAY.fee_mfen(25640) == 1_540_00  # 1.5384 → 1.54
    assert ALIPAY.refund_fee_mfen(4320, 30000, 1_800_00) == -260_00  # 0.2592 → 0.26 back
    # The fixture's totals: 1.80 + 1.54 - 0.26 = 3.08 yuan of service fees.
    total = (
        ALIPAY.fee_mfen(30000)
        + ALIPAY.fee_mfen(25640)
        + ALIPAY.refund_fee_mfen(4320, 30000, 1_800_00)
    )
    assert total == 3_080_00


def test_fixed_part_minimum_and_cap() -> None:
    contract = FeeContract(rate_ppm=3800, fixed_mfen=100_000, min_mfen=150_000, max_mfen=2_000_000)
    assert contract.fee_mfen(0) == 0
    assert contract.fee_mfen(100) == 150_000  # 0.38 fen + 1 yuan → the 1.50 minimum
    assert contract.fee_mfen(50_000) == 290_000  # 190 fen + 100 fen = 2.90 yuan
    assert contract.fee_mfen(10_000_000) == 2_000_000  # capped at 20 yuan


def test_kept_fee_returns_nothing() -> None:
    contract = FeeContract(rate_ppm=6000, refund=RefundFee.KEPT)
    assert contract.refund_fee_mfen(100, 1000, contract.fee_mfen(1000)) == 0
    assert contract.net_fee_mfen(1000, 1000) == contract.fee_mfen(1000)


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        (Rounding.HALF_UP, [1, 2, 3, -1, -3]),
        (Rounding.HALF_EVEN, [0, 2, 2, 0, -2]),
        (Rounding.DOWN, [0, 1, 2, 0, -2]),
        (Rounding.UP, [1, 2, 3, -1, -3]),
    ],
)
def test_divide_rounding_table(rounding: Rounding, expected: list[int]) -> None:
    # 0.5, 1.5, 2.5, -0.5, -2.5
    assert [divide(n, 2, rounding) for n in (1, 3, 5, -1, -5)] == expected


@PROPS
@given(st.integers(-(10**15), 10**15), st.integers(1, 10**9), st.sampled_from(list(Rounding)))
def test_divide_is_within_one_of_the_exact_quotient(n: int, d: int, rounding: Rounding) -> None:
    exact = Fraction(n, d)
    q = divide(n, d, rounding)
    assert abs(q - exact) < 1
    if rounding in (Rounding.HALF_UP, Rounding.HALF_EVEN):
        assert abs(q - exact) <= Fraction(1, 2)
    assert divide(-n, d, rounding) == -q  # symmetric: a returned fee mirrors a charged one


@PROPS
@given(
    amount=st.integers(0, 10**9),
    rate=st.integers(0, 50_000),
    fixed=st.integers(0, 10**6),
    quantum=st.sampled_from([1, 10, 1000]),
)
def test_fee_is_the_exact_fee_rounded_to_the_quantum(
    amount: int, rate: int, fixed: int, quantum: int
) -> None:
    contract = FeeContract(rate_ppm=rate, fixed_mfen=fixed, quantum_mfen=quantum)
    fee = contract.fee_mfen(amount)
    assert fee % quantum == 0
    if amount:
        exact = Fraction(amount * rate, 1000) + fixed
        assert abs(fee - exact) <= Fraction(quantum, 2)


@PROPS
@given(payment=st.integers(1, 10**8), data=st.data())
def test_refunds_never_return_more_than_was_charged(payment: int, data: st.DataObject) -> None:
    refund = data.draw(st.integers(0, payment))
    for contract in (WECHAT, ALIPAY):
        fee = contract.fee_mfen(payment)
        back = contract.refund_fee_mfen(refund, payment, fee)
        assert -fee <= back <= 0
        assert contract.refund_fee_mfen(payment, payment, fee) == -fee


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_ppm": -1},
        {"rate_ppm": 1_000_001},
        {"rate_ppm": 10, "min_mfen": 5, "max_mfen": 4},
        {"rate_ppm": 10, "quantum_mfen": 0},
        {"rate_ppm": 10, "fixed_mfen": -1},
    ],
)
def test_contract_rejects_bad_figures(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        FeeContract(**kwargs)  # type: ignore[arg-type]


def test_contract_rejects_non_integers() -> None:
    with pytest.raises(TypeError):
        FeeContract(rate_ppm=0.6)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WECHAT.fee_mfen(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WECHAT.fee_mfen(-1)
    with pytest.raises(ValueError):
        WECHAT.refund_fee_mfen(200, 100, 0)
