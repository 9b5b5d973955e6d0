"""Collecting a post-pay sale survives a SIGKILL of the switch-side process.

The actor runs in a separate process (tests/devices/postpay_harness.py) that is killed
right after ``lock_requested`` or ``collect_requested`` is journaled, before the pump is
told; a second process recovers. The sale must end up collected exactly once: cleared in
the simulator, journaled ``collected`` once, and never an orphan or an alert.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from tests.devices.sim_support import SimProcess
from tests.devices.test_pump_actor import ROOT, control, harness, journal_of, pump_db, sim
from tests.devices.test_pump_recovery import wait_for_buffer

__all__ = ["pump_db", "sim"]  # fixtures shared with test_pump_actor

STREAM = "pump:s0.p1"
ORDER = "O00000000000000A1"


def postpay(
    db: str, sim: SimProcess, *order: str, crash: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FUELSWITCH_CRASH_POINTS": crash or ""}
    command = [sys.executable, "-m", "tests.devices.postpay_harness", db, str(sim.port(0))]
    return subprocess.run(
        [*command, "1", STREAM, *order],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("point", ["pump.after_lock_requested", "pump.after_collect_requested"])
def test_a_collection_cut_short_by_a_crash_is_finished_once(
    pump_db: str, sim: SimProcess, point: str
) -> None:
    assert harness(pump_db, sim, STREAM).returncode == 0  # first contact: totals known
    trio.run(lambda: control(sim, "configure", station=0, pump=1, mode=1))  # stand-alone
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=1, hang_up_after_ml=1800))
    seq = trio.run(wait_for_buffer, sim)["buffer"][0]["seq"]  # type: ignore[index]

    crashed = postpay(pump_db, sim, ORDER, crash=point)
    assert crashed.returncode == -9, crashed.stderr
    assert trio.run(lambda: control(sim, "snapshot", station=0, pump=1))["buffer"] != []
    # After a lost lock the order asks again; a lost collect the actor finishes on its own.
    again = (ORDER,) if point == "pump.after_lock_requested" else ()
    recovered = postpay(pump_db, sim, *again)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.split()[-1] == "settled"

    events = trio.run(journal_of, pump_db, STREAM)
    postpay_kinds = [e.type for e in events if e.type not in ("contact",)]
    assert postpay_kinds == [
        "payable", "lock_requested", "locked", "collect_requested", "collected"
    ]  # fmt: skip
    collected = next(e.payload for e in events if e.type == "collected")
    assert (collected["pump_sale_seq"], collected["order_id"]) == (seq, ORDER)
    assert collected["volume_ml"] == 1800
    snapshot = trio.run(lambda: control(sim, "snapshot", station=0, pump=1))
    assert snapshot["buffer"] == []
    assert [(s["seq"], s["volume_ml"]) for s in snapshot["ledger"]] == [(seq, 1800)]
