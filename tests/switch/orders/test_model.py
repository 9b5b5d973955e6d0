"""The order journal's fold: every step's event moves the order where the actor expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switch.orders.model import OrderData, OrderState, fold

SENT = "2026-11-22T10:00:00+08:00"
DATA = OrderData(
    id="O0000000000000001",
    customer_id="c1",
    station_id="s001",
    pump_no=1,
    flow="prepay",
    method="alipay",
    payer_id="2088000000000001",
    preset_kind="amount",
    preset_value=5000,
)


def events(*steps: tuple[str, Mapping[str, Any]]) -> list[tuple[int, str, Mapping[str, Any]]]:
    out: list[tuple[int, str, Mapping[str, Any]]] = [(1, "created", {"order": DATA.to_json()})]
    for i, (kind, payload) in enumerate(steps, start=2):
        out.append((i, kind, payload))
    return out


PRICED = ("priced", {"price_set_id": 1, "unit_price": 789000, "grade": None, "hold_fen": 5000})


def hold(n: int, channel: str = "alipay-main") -> tuple[str, Mapping[str, Any]]:
    return (
        "hold_requested",
        {
            "attempt_no": n,
            "key": f"{DATA.id}H{n}",
            "channel": channel,
            "provider": "alipay",
            "amount_fen": 5000,
            "sent_at": SENT,
            "routing": {"channel": channel},
        },
    )


def result(n: int, outcome: str, channel: str = "alipay-main") -> tuple[str, Mapping[str, Any]]:
    return ("hold_result", {"key": f"{DATA.id}H{n}", "outcome": outcome, "channel": channel})


def test_no_created_event_is_no_order() -> None:
    assert fold([]) is None
    assert fold([(1, "priced", PRICED[1])]) is None


def test_the_happy_prepay_path() -> None:
    order = fold(
        events(
            PRICED,
            hold(1),
            result(1, "approved"),
            ("auth_requested", {"sale_id": f"{DATA.id}S"}),
            ("authorized", {"token": 7, "sale_id": f"{DATA.id}S"}),
            ("fuelling", {}),
            (
                "sale_completed",
                {
                    "sale_id": f"{DATA.id}S",
                    "volume_ml": 3000,
                    "amount_fen": 2367,
                    "nozzle_no": 1,
                    "unit_price": 789000,
                    "discount_fen": 100,
                },
            ),
            (
                "capture_requested",
                {"key": f"{DATA.id}S", "attempt_no": 2, "amount_fen": 2267, "sent_at": SENT},
            ),
            ("captured", {"provider_ref": "T1", "amount_fen": 2267}),
            (
                "release_requested",
                {
                    "key": f"{DATA.id}R3",
                    "attempt_no": 3,
                    "amount_fen": 2733,
                    "ending": "completed",
                    "sent_at": SENT,
                },
            ),
            ("released", {}),
            ("ended", {"state": "completed"}),
        )
    )
    assert order is not None
    assert order.state is OrderState.COMPLETED and order.terminal
    assert order.seq == 13
    assert order.net_fen == 2267
    assert order.captured_fen == 2267
    assert order.capture is not None and order.capture.provider_ref == "T1"
    assert order.release is not None and order.release.done
    assert order.next_attempt_no == 4


def test_a_failed_hold_goes_back_to_routing_without_that_channel() -> None:
    order = fold(events(PRICED, hold(1), result(1, "failed")))
    assert order is not None
    assert order.state is OrderState.PRICED
    assert order.excluded == {"alipay-main"}
    assert order.hold is not None and not order.hold.open
    assert order.next_attempt_no == 2


def test_an_unknown_hold_stays_open_and_keeps_the_order_holding() -> None:
    order = fold(events(PRICED, hold(1), result(1, "unknown")))
    assert order is not None
    assert order.state is OrderState.HOLDING
    assert order.hold is not None and order.hold.open
    assert order.approved_hold is None


def test_failover_keeps_every_attempt_and_the_approved_one_is_found() -> None:
    order = fold(
        events(
            PRICED,
            hold(1),
            result(1, "declined"),
            hold(2, "alipay-b"),
            result(2, "approved", "alipay-b"),
        )
    )
    assert order is not None
    assert order.state is OrderState.HELD
    assert [h.key for h in order.holds] == [f"{DATA.id}H1", f"{DATA.id}H2"]
    assert order.approved_hold is not None and order.approved_hold.channel == "alipay-b"


def test_cancel_and_failure_are_remembered() -> None:
    order = fold(
        events(
            PRICED,
            hold(1),
            ("cancel_requested", {"by": "c1"}),
            ("failure", {"failure": "the customer did not pay in time"}),
        )
    )
    assert order is not None
    assert order.cancel_requested
    assert order.failure == "the customer did not pay in time"


def test_refunds_fold_with_their_results() -> None:
    refund = (
        "refund_requested",
        {
            "key": f"{DATA.id}F5",
            "attempt_no": 5,
            "amount_fen": 500,
            "reason": "request:k1",
            "sent_at": SENT,
        },
    )
    order = fold(
        events(PRICED, refund, ("refund_result", {"key": f"{DATA.id}F5", "outcome": "approved"}))
    )
    assert order is not None
    assert order.refunded_fen == 500
    assert order.refunds[0].done


def test_unknown_event_types_are_skipped() -> None:
    order = fold(events(PRICED, ("from_a_newer_switch", {"x": 1})))
    assert order is not None
    assert order.state is OrderState.PRICED
    assert order.seq == 3


def test_order_data_round_trips_through_json() -> None:
    assert OrderData.from_json(DATA.to_json()) == DATA
