"""Fee schedules in exact integers, and the ``[channels.routing]`` table's parsing and errors."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from channels.fees import FeeContract, RefundFee, Rounding
from channels.model import Provider
from switch.routing import ChannelPolicy, FeeSchedule, Outage, RoutingConfigError, Tier
from switch.service import Flow

CST = timezone(timedelta(hours=8))

# -- fee schedules -------------------------------------------------------------------------------


def test_the_wechat_fixture_fee_is_reproduced() -> None:
    # The fixture bill: 0.60 % of 200.00 yuan is 1.20 yuan = 120,000 milli-fen.
    wechat = ChannelPolicy.from_mapping("wechatpay-main", Provider.WECHATPAY, None)
    assert wechat.fee.fee_mfen(20000) == 120_000
    assert wechat.fee.fee_mfen(8888) == 53_000  # 0.53328 yuan, rounded to the fen
    # WeChat gives refunded fees back to the milli-fen: 37.50 of 200.00 returns 0.22500 yuan.
    assert wechat.fee.contract.refund_fee_mfen(3750, 20000, 120_000) == -22_500


@pytest.mark.parametrize(
    ("amount_fen", "rate_ppm", "fee_mfen"),
    [
        (0, 6000, 0),
        (49_999, 6000, 300_000),  # 299.994 fen -> 300 fen
        (50_000, 5000, 250_000),  # the tier starts at its from_fen
        (99_999, 5000, 500_000),  # 499.995 fen -> 500 fen (half up)
        (100_000, 4000, 400_000),  # the highest tier that applies wins
        (10_000_000, 4000, 40_000_000),
    ],
)
def test_the_highest_tier_at_or_below_the_amount_sets_the_rate(
    amount_fen: int, rate_ppm: int, fee_mfen: int
) -> None:
    schedule = FeeSchedule(FeeContract(6000), (Tier(50_000, 5000), Tier(100_000, 4000)))
    assert schedule.rate_ppm(amount_fen) == rate_ppm
    assert schedule.fee_mfen(amount_fen) == fee_mfen


def test_caps_minimum_and_fixed_part_stay_the_contracts() -> None:
    contract = FeeContract(6000, fixed_mfen=500, min_mfen=100_000, max_mfen=1_000_000)
    schedule = FeeSchedule(contract, (Tier(200_000, 5000),))
    assert schedule.fee_mfen(1000) == 100_000  # 6 fen + 0.5 fen is below the 1-yuan minimum
    assert schedule.fee_mfen(50_000) == 301_000  # 300 fen + 0.5 fen -> 301 fen (half up)
    assert schedule.fee_mfen(500_000) == 1_000_000  # 2500.5 fen, capped at 10 yuan
    assert schedule.contract_for(500_000).max_mfen == 1_000_000


def test_rounding_is_the_contracts_rule() -> None:
    up = FeeSchedule(FeeContract(6000, fixed_mfen=500))
    down = FeeSchedule(FeeContract(6000, fixed_mfen=500, rounding=Rounding.DOWN))
    milli = FeeSchedule(FeeContract(6000, quantum_mfen=1))
    assert up.fee_mfen(10_001) == 61_000  # 60.006 + 0.5 = 60.506 fen
    assert down.fee_mfen(10_001) == 60_000
    assert milli.fee_mfen(10_001) == 60_006


@pytest.mark.parametrize(
    "tiers",
    [(Tier(100, 5000), Tier(50, 4000)), (Tier(100, 5000), Tier(100, 4000))],
)
def test_tiers_must_increase(tiers: tuple[Tier, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        FeeSchedule(FeeContract(6000), tiers)


def test_a_tier_refuses_floats_and_out_of_range_rates() -> None:
    with pytest.raises(ValueError, match="rate_ppm"):
        Tier(0, 1_000_001)
    with pytest.raises(ValueError, match="from_fen"):
        Tier(0.5, 5000)  # type: ignore[arg-type]


def test_outages_are_aware_and_half_open() -> None:
    start = datetime(2026, 11, 22, 1, tzinfo=CST)
    outage = Outage(start, start + timedelta(hours=2))
    assert not outage.covers(start - timedelta(microseconds=1))
    assert outage.covers(start)
    assert outage.covers(datetime(2026, 11, 21, 18, 30, tzinfo=UTC))  # 02:30 in Shanghai
    assert not outage.covers(start + timedelta(hours=2))
    with pytest.raises(ValueError, match="UTC offset"):
        Outage(datetime(2026, 11, 22, 1), datetime(2026, 11, 22, 3))
    with pytest.raises(ValueError, match="after it starts"):
        Outage(start, start)


# -- parsing -------------------------------------------------------------------------------------

# The brief's table, one key a line (TOML has no ";" separator).
BRIEF_TABLE = """
methods = ["wechatpay"]
flows = ["prepay", "postpay"]
stations = ["*"]
fee = { rate_ppm = 6000, fixed_mfen = 0, min_mfen = 0, max_mfen = 0 }
tiers = [ { from_fen = 50000, rate_ppm = 5000 } ]
outages = [ { start = "2026-11-22T01:00:00+08:00", end = "2026-11-22T03:00:00+08:00" } ]
"""


def test_defaults() -> None:
    policy = ChannelPolicy.from_mapping("alipay-main", Provider.ALIPAY, {})
    assert policy.methods == {"alipay"}
    assert policy.flows == {Flow.PREPAY, Flow.POSTPAY}
    assert policy.stations == {"*"}
    assert policy.serves_station("s042")
    assert policy.fee == FeeSchedule(FeeContract(6000))  # Alipay refunds fees to the fen
    assert policy.outages == ()
    assert policy.promotion_mfen == 0


def test_the_briefs_table_parses() -> None:
    table = tomllib.loads(BRIEF_TABLE)
    policy = ChannelPolicy.from_mapping("wechatpay-main", Provider.WECHATPAY, table)
    assert policy.fee.contract == FeeContract(6000, max_mfen=None, refund_quantum_mfen=1)
    assert policy.fee.tiers == (Tier(50_000, 5000),)
    assert policy.fee.fee_mfen(60_000) == 300_000
    start = datetime(2026, 11, 22, 1, tzinfo=CST)
    assert policy.outages == (Outage(start, start + timedelta(hours=2)),)
    assert policy.outage_at(start + timedelta(minutes=5)) == policy.outages[0]
    assert policy.outage_at(start + timedelta(hours=3)) is None


def test_everything_given() -> None:
    table = tomllib.loads(
        """
        methods = ["unionpay", "quickpass"]
        flows = ["prepay"]
        stations = ["s001", "s002"]
        promotion_mfen = 20000
        outages = [{ start = 2026-11-22T01:00:00+08:00, end = 2026-11-22T03:00:00Z }]
        [fee]
        rate_ppm = 3800
        fixed_mfen = 100
        min_mfen = 1000
        max_mfen = 2000000
        rounding = "half_even"
        quantum_mfen = 1
        refund = "kept"
        refund_quantum_mfen = 10
        """
    )
    policy = ChannelPolicy.from_mapping("unionpay-main", Provider.UNIONPAY, table)
    assert policy.methods == {"unionpay", "quickpass"}
    assert policy.flows == {Flow.PREPAY}
    assert policy.serves_station("s002") and not policy.serves_station("s003")
    assert policy.promotion_mfen == 20_000
    assert policy.fee.contract == FeeContract(
        3800, 100, 1000, 2_000_000, Rounding.HALF_EVEN, 1, RefundFee.KEPT, 10
    )
    # TOML's own offset date-times are accepted beside strings.
    assert policy.outages[0].end == datetime(2026, 11, 22, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"fee": {"rate_ppm": 0.006}}, r"fee.rate_ppm: must be an integer 0..1000000 \(a float"),
        ({"fee": {"rate_ppm": 2_000_000}}, "fee.rate_ppm: must be an integer 0..1000000$"),
        ({"fee": {"rate_ppm": True}}, "fee.rate_ppm: must be an integer 0..1000000$"),
        ({"fee": {"fixed_mfen": 0.5}}, "fee.fixed_mfen: must be an integer"),
        ({"fee": {"min_mfen": 100, "max_mfen": 10}}, "fee.max_mfen: must be 0 .no cap."),
        ({"fee": {"rate": 6000}}, "fee.rate: unknown key"),
        ({"fee": {"rounding": "bankers"}}, "fee.rounding: must be one of half_up"),
        ({"fee": {"quantum_mfen": 0}}, "fee.quantum_mfen: must be an integer 1.."),
        ({"fee": 6000}, "fee: must be a table"),
        ({"method": ["wechatpay"]}, "method: unknown key"),
        ({"methods": []}, "methods: must be a non-empty list"),
        ({"methods": "wechatpay"}, "methods: must be a non-empty list"),
        ({"stations": ["s001", ""]}, "stations: must be a non-empty list"),
        ({"flows": ["prepay", "later"]}, "flows: 'later' is not one of prepay, postpay"),
        ({"tiers": {"from_fen": 1}}, "tiers: must be a list of tables"),
        ({"tiers": [{"from_fen": 50_000}]}, r"tiers\[0\]: needs from_fen and rate_ppm"),
        ({"tiers": [{"from_fen": 500.0, "rate_ppm": 1}]}, r"tiers\[0\]\.from_fen: must be an"),
        ({"tiers": [{"from_fen": 1, "rate_ppm": 1, "to": 2}]}, r"tiers\[0\]\.to: unknown key"),
        (
            {"tiers": [{"from_fen": 9, "rate_ppm": 1}, {"from_fen": 9, "rate_ppm": 2}]},
            r"tiers\[1\]\.from_fen: tiers must be in increasing order",
        ),
        (
            {"outages": [{"start": "2026-11-22T01:00:00", "end": "2026-11-22T03:00:00+08:00"}]},
            r"outages\[0\]\.start: needs a UTC offset",
        ),
        (
            {"outages": [{"start": "2026-11-22T01:00:00+08:00", "end": "tomorrow"}]},
            r"outages\[0\]\.end: not an ISO 8601 date-time",
        ),
        ({"outages": [{"start": "2026-11-22T01:00:00+08:00"}]}, r"outages\[0\]\.end: must be a"),
        (
            {"outages": [{"start": "2026-11-22T03:00:00+08:00", "end": "2026-11-22T01:00+08:00"}]},
            r"outages\[0\]\.end: must be after start",
        ),
        ({"promotion_mfen": -1}, "promotion_mfen: must be an integer 0.."),
    ],
)
def test_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingConfigError, match=f"^{message}"):
        ChannelPolicy.from_mapping("wechatpay-main", Provider.WECHATPAY, table)


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(RoutingConfigError, ValueError)
