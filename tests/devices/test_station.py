"""A station subtree against the simulator: the gateway first, then its pumps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from actors import open_system
from devices.gfd1 import PresetType
from devices.pump import Authorize
from devices.station import StationConfig, station_spec
from switch.store import Store
from switch.store.journal import Journal, journal_writer_spec
from tests.devices.sim_support import Control, SimProcess


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "3", "--port-base", "0",
        "--control-port", "0", "--speed", "5", "--seed", "11",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


async def test_a_station_runs_its_pumps_through_one_gateway(store: Store, sim: SimProcess) -> None:
    config = StationConfig(
        "s7", "127.0.0.1", sim.port(0), units=(1, 2, 3), active_poll_s=0.05, idle_poll_s=0.05
    )
    async with open_system([journal_writer_spec(store.db)], intensity=10) as system:
        journal = Journal(system, store.db)
        await system.start_child(station_spec(config, journal))
        assert system.registry.addresses("s7") == ["s7", "s7/gateway", "s7/p01", "s7/p02", "s7/p03"]
        control = await Control.connect(sim.control_port)
        await control.call("customer", station=0, pump=2, nozzle=1)
        await system.call(
            "s7/p02", Authorize("station-sale", PresetType.VOLUME, 1000, nozzle_mask=1)
        )
        with trio.fail_after(60):
            while True:
                state = system.snapshot("s7/p02").state
                if state["sales"] == 1 and state["pending_clear"] is None:
                    break
                await trio.sleep(0.05)
        await control.aclose()
        gateway = system.snapshot("s7/gateway").state["link"]
        assert gateway["state"].name == "CONNECTED" or str(gateway["state"]).endswith("CONNECTED")
        for pump in ("s7/p01", "s7/p03"):
            assert system.snapshot(pump).state["state"] == "IDLE"
        # An operator restarts the gateway alone: the pumps go on through the new connection.
        polls = system.snapshot("s7/p03").state["polls"]
        await system.restart_child("s7", "gateway")
        assert system.snapshot("s7/gateway").incarnation == 2
        with trio.fail_after(30):
            while True:
                state = system.snapshot("s7/p03").state
                if state["polls"] > polls + 5 and state["last_error"] is None:
                    break
                await trio.sleep(0.05)
        assert system.snapshot("s7/p03").incarnation == 1
    events = await journal.load("pump:s7.p02")
    assert [e.type for e in events][:6] == [
        "contact", "auth_requested", "authorized", "fuelling", "completed", "cleared"
    ]  # fmt: skip
