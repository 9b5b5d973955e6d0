"""The simulator's control protocol without a socket: JSON lines in, JSON lines out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devices.gfd1 import Command, EndReason, ErrorCode, FPState, Mode
from devices.sim.control import Control
from devices.sim.simulation import SimConfig, Simulation


@pytest.fixture
def control() -> Control:
    return Control(Simulation(SimConfig(stations=1, pumps_per_station=2)))


def call(control: Control, now_s: float = 0.0, **request: Any) -> dict[str, Any]:
    response = control.handle_line(json.dumps(request).encode(), now_s)
    line = response.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reply: dict[str, Any] = json.loads(line)
    return reply


def ok(control: Control, now_s: float = 0.0, **request: Any) -> dict[str, Any]:
    reply = call(control, now_s, **request)
    assert reply["ok"], reply
    return reply


def test_a_customer_script_and_the_ledger(control: Control) -> None:
    point = control.sim.point(0, 1).point
    assert ok(control, cmd="lift", station=0, pump=1, nozzle=2)["fp_state"] == FPState.CALLING
    assert ok(control, cmd="hang_up", station=0, pump=1)["fp_state"] == FPState.IDLE
    reply = ok(control, 1.0, cmd="customer", station=0, pump=1, nozzle=1, hang_up_after_ml=700)
    assert reply["customers"] == 1
    assert point.command(1, Command.AUTHORIZE, token=12) == 0
    control.sim.point(0, 1).collect()  # acted on the model directly: tell the simulation
    control.sim.tick(60.0)
    (sale,) = ok(control, 60.0, cmd="ledger", id="x")["sales"]
    assert (sale["station"], sale["pump"], sale["volume_ml"], sale["auth_token"]) == (0, 1, 700, 12)
    assert sale["end_reason"] == EndReason.NOZZLE_HUNG_UP
    assert ok(control, 60.0, cmd="ledger", station=0, pump=2)["sales"] == []
    snapshot = ok(control, 61.0, cmd="snapshot", station=0, pump=1)
    assert snapshot["status"]["fp_state"] == FPState.COMPLETED
    assert snapshot["status"]["last_sale"]["volume_ml"] == 700
    assert snapshot["totals"][0] == {"volume_ml": 700, "amount_fen": sale["amount_fen"]}
    assert (
        snapshot["buffer"]
        == snapshot["ledger"]
        == [{k: v for k, v in sale.items() if k not in ("station", "pump")}]
    )
    assert snapshot["config"]["identity"] == "GFD1-S000-P001" and snapshot["now_s"] == 61.0


def test_power_cycle_faults_and_settings(control: Control) -> None:
    point = control.sim.point(0, 2).point
    assert ok(control, cmd="power_cycle", station=0, pump=2) == {
        "ok": True,
        "id": None,
        "boot_count": 2,
        "sale": None,
    }
    faults = ok(control, cmd="faults", station=0, pump=2, stuck_flow=True, pulser_error_at_ml=50)
    assert faults["faults"]["stuck_flow"] and faults["faults"]["pulser_error_at_ml"] == 50
    faults = ok(control, cmd="faults", station=0, pump=2, pulser_error_at_ml=None)
    assert faults["faults"]["pulser_error_at_ml"] is None and point.faults.stuck_flow
    assert point.faults.pulser_error_at_ml is None
    assert ok(control, cmd="pulser_error", station=0, pump=2)["fp_state"] == FPState.INOPERATIVE
    assert point.error_code is ErrorCode.PULSER
    ok(control, cmd="stage_price", station=0, pump=2, nozzle=2, price=850_000)
    assert point.staged_prices == (789_000, 850_000)
    reply = ok(control, cmd="configure", station=0, pump=2, mode=1, max_unpaid=9)
    assert reply["settings"] == {
        "host_watchdog_s": 0,
        "max_unpaid": 9,
        "auth_timeout_s": 120,
        "mode": Mode.STAND_ALONE,
    }


def test_persist_is_left_to_the_adapter_and_statistics_are_cheap(control: Control) -> None:
    response = control.handle_line(b'{"cmd": "persist", "id": 3}', 0.0)
    assert response.persist and response.body == {"ok": True, "id": 3}
    stats = ok(control, cmd="statistics")
    assert stats["simulation"]["points"] == 2 and stats["control"]["requests"] == 2


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{",
        b"null",
        b'"lift"',
        b'{"cmd": 5}',
        b'{"cmd": "lift", "station": 0, "pump": 3, "nozzle": 1}',
        b'{"cmd": "lift", "station": -1, "pump": 1, "nozzle": 1}',
        b'{"cmd": "lift", "station": 0, "pump": 1, "nozzle": true}',
        b'{"cmd": "customer", "station": 0, "pump": 1, "nozzle": 1, "hang_up_after_s": "x"}',
        b'{"cmd": "faults", "station": 0, "pump": 1, "stuck_flow": 1}',
        b'{"cmd": "faults", "station": 0, "pump": 1, "delay_reply_s": -1}',
        b'{"cmd": "faults", "station": 0, "pump": 1, "busy_commands": 1, "crc": 1}',
        b'{"cmd": "stage_price", "station": 0, "pump": 1, "nozzle": 1, "price": 0}',
        b'{"cmd": "configure", "station": 0, "pump": 1, "mode": 2}',
        b'{"cmd": "power_cycle", "station": 0, "pump": 1, "lose_in_progress": "yes"}',
    ],
)
def test_bad_requests_get_an_error_and_change_nothing(control: Control, line: bytes) -> None:
    before = control.sim.point(0, 1).point.to_dict()
    faults = repr(control.sim.point(0, 1).point.faults)
    reply = json.loads(control.handle_line(line, 0.0).encode())
    assert reply["ok"] is False and isinstance(reply["error"], str) and reply["error"]
    assert control.sim.point(0, 1).point.to_dict() == before
    assert repr(control.sim.point(0, 1).point.faults) == faults
    assert control.statistics()["errors"] == 1


def test_a_bug_in_a_command_is_an_error_reply(
    control: Control, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(control.sim, "statistics", broken)
    reply = call(control, cmd="statistics", id=1)
    assert reply["ok"] is False and "ZeroDivisionError" in reply["error"]
    assert ok(control, cmd="ping")["now_s"] == 0.0
