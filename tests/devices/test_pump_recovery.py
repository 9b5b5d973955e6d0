"""The restart table's remaining rows, driven for real: the switch-side process is killed
or restarted while the simulated pump loses power, or sells without it.

Rows covered elsewhere: the SIGKILL tests in test_pump_actor.py (void, adopt, finish from
the sale block). Here: finish from totals, orphan sales, a changed BOOT_COUNT, and a whole
sale over an RTU line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from actors import ChildSpec, open_system
from devices.gfd1 import PresetType
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusRtuClient, Parity
from devices.pump import Authorize, PumpActor
from switch.store import Store
from switch.store.journal import Journal, journal_writer_spec
from tests.devices.modbus_support import open_pty, relay
from tests.devices.sim_support import Control, SimProcess
from tests.devices.test_pump_actor import control, harness, journal_of, pump_db, sim

__all__ = ["pump_db", "sim"]  # fixtures shared with test_pump_actor

STREAM = "pump:s0.p1"


async def wait_for_buffer(sim: SimProcess) -> dict[str, object]:
    with trio.fail_after(30):
        while True:
            snapshot = await control(sim, "snapshot", station=0, pump=1)
            if snapshot["buffer"]:
                return snapshot
            await trio.sleep(0.05)


async def wait_for_flow(sim: SimProcess, volume_ml: int) -> None:
    with trio.fail_after(30):
        while True:
            snapshot = await control(sim, "snapshot", station=0, pump=1)
            if snapshot["status"]["cur_volume_ml"] >= volume_ml:
                return
            await trio.sleep(0.05)


def test_a_sale_lost_with_the_power_is_finished_from_totals(pump_db: str, sim: SimProcess) -> None:
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=1))
    crashed = harness(pump_db, sim, STREAM, "sale-lost", "60000", crash="pump.fuelling")
    assert crashed.returncode == -9, crashed.stderr
    trio.run(wait_for_flow, sim, 500)
    # While the switch is down, the pump loses power and the sale in progress with it.
    cycle = trio.run(lambda: control(sim, "power_cycle", station=0, pump=1, lose_in_progress=True))
    assert cycle["sale"] is None or cycle["sale"]["state"] == 0
    recovered = harness(pump_db, sim, STREAM)
    assert recovered.returncode == 0, recovered.stderr

    events = trio.run(journal_of, pump_db, STREAM)
    completed = [e for e in events if e.type == "completed"]
    assert len(completed) == 1, [(e.type, e.payload) for e in events]
    assert completed[0].payload["reconstructed"] is True
    start = next(e.payload["start_totals"]["1"] for e in events if e.type == "auth_requested")
    totals = trio.run(lambda: control(sim, "snapshot", station=0, pump=1))["totals"]
    assert completed[0].payload["volume_ml"] == totals[0]["volume_ml"] - start > 0
    alerts = {e.payload["kind"] for e in events if e.type == "alert"}
    assert alerts == {"boot_count_changed", "sale_reconstructed"}


def test_a_sale_the_switch_did_not_authorize_is_an_orphan(pump_db: str, sim: SimProcess) -> None:
    assert harness(pump_db, sim, STREAM).returncode == 0  # first contact: totals known
    trio.run(lambda: control(sim, "configure", station=0, pump=1, mode=1))  # stand-alone
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=2, hang_up_after_ml=1500))
    trio.run(wait_for_buffer, sim)
    # Back in host mode before the switch sees the sale: nobody may have sold it, and a
    # stand-alone pump's sale would be a post-pay sale (tests/devices/test_pump_postpay.py).
    trio.run(lambda: control(sim, "configure", station=0, pump=1, mode=0))
    recovered = harness(pump_db, sim, STREAM)
    assert recovered.returncode == 0, recovered.stderr

    events = trio.run(journal_of, pump_db, STREAM)
    orphans = [e for e in events if e.type == "orphan"]
    assert len(orphans) == 1
    assert orphans[0].payload["volume_ml"] == 1500
    assert orphans[0].payload["moved"] == {"2": 1500}
    assert [e.payload["kind"] for e in events if e.type == "alert"] == ["orphan_sale"]
    assert not [e for e in events if e.type in ("completed", "void")]


def test_a_changed_boot_count_is_reconciled_and_alerted(pump_db: str, sim: SimProcess) -> None:
    assert harness(pump_db, sim, STREAM).returncode == 0
    trio.run(lambda: control(sim, "power_cycle", station=0, pump=1))
    assert harness(pump_db, sim, STREAM).returncode == 0
    events = trio.run(journal_of, pump_db, STREAM)
    assert [e.payload["kind"] for e in events if e.type == "alert"] == ["boot_count_changed"]
    contacts = [e.payload["boot_count"] for e in events if e.type == "contact"]
    assert contacts[-1] == contacts[0] + 1
    assert not [e for e in events if e.type in ("orphan", "completed", "void")]


def settled(state: dict[str, object]) -> bool:
    return state["sales"] == 1 and state["pending_clear"] is None


@pytest.fixture
def rtu_sim(tmp_path: Path) -> Iterator[tuple[SimProcess, int, int, str]]:
    sim_master, _, sim_path = open_pty()
    client_master, _, client_path = open_pty()
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "1", "--control-port", "0",
        "--rtu", sim_path, "--rtu-parity", "N", "--seed", "3", "--speed", "5",
    )  # fmt: skip
    process.start()
    yield process, sim_master, client_master, client_path
    process.kill()


async def test_a_whole_sale_over_an_rtu_line(
    store: Store, rtu_sim: tuple[SimProcess, int, int, str]
) -> None:
    sim, sim_master, client_master, client_path = rtu_sim
    station = sim.ready["rtu"]["station"]
    async with trio.open_nursery() as cables:
        cables.start_soon(relay, sim_master, client_master)
        cables.start_soon(relay, client_master, sim_master)
        connection = await Control.connect(sim.control_port)
        await connection.call("customer", station=station, pump=1, nozzle=1)
        async with (
            ModbusRtuClient(client_path, 115200, parity=Parity.NONE, timeout=1.0) as line,
            open_system([journal_writer_spec(store.db)]) as system,
        ):
            journal = Journal(system, store.db)
            driver = Gfd1Driver(line, 1, nozzles=2)
            spec = ChildSpec(
                "pump",
                lambda: PumpActor(
                    driver, journal, stream_id="pump:rtu.p1", active_poll_s=0.05, idle_poll_s=0.05
                ),
            )
            await system.start_child(spec)
            await system.call("pump", Authorize("rtu-sale", PresetType.AMOUNT, 1234, nozzle_mask=1))
            with trio.fail_after(60):
                while True:
                    if settled(system.snapshot("pump").state):
                        break
                    await trio.sleep(0.05)
        events = await journal.load("pump:rtu.p1")
        ledger = (await connection.call("ledger", station=station, pump=1))["sales"]
        await connection.aclose()
        cables.cancel_scope.cancel()
    kinds = [e.type for e in events]
    assert kinds == ["contact", "auth_requested", "authorized", "fuelling", "completed", "cleared"]
    completed = events[4].payload
    assert completed["amount_fen"] == 1234  # an amount preset stops on the fen
    assert completed["totals_ok"] is True
    assert [(s["amount_fen"], s["volume_ml"]) for s in ledger] == [(1234, completed["volume_ml"])]
