"""The PumpActor against the simulator over real Modbus TCP, on a real journal.

The crash tests run the actor in a separate process and SIGKILL it at each dangerous step
of a sale; a second process recovers, and the journal, the simulator's ledger and the
pump's totalizers must then agree: every sale ended exactly once, with the right volume.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from switch.store import ServerUrls, open_database
from switch.store.journal import RecordedEvent
from tests.devices.sim_support import Control, SimProcess
from tests.storage import create_database, drop_database, unique_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "2", "--port-base", "0",
        "--control-port", "0", "--state", str(tmp_path / "state.json"), "--seed", "7",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


@pytest.fixture
def pump_db(servers: ServerUrls) -> Iterator[str]:
    name = unique_name("pump")
    url = create_database(servers.database_url, name)
    yield url
    drop_database(servers.database_url, name)


def harness(
    db: str,
    sim: SimProcess,
    stream: str,
    *sale: str,
    crash: str | None = None,
    target: str | None = None,
    unit: int = 1,
) -> subprocess.CompletedProcess[str]:
    """Run tests/devices/pump_harness.py; ``target`` is a DART tty path (default: the
    simulator's first Modbus TCP gateway)."""
    env = {**os.environ, "FUELSWITCH_CRASH_POINTS": crash or ""}
    where = target if target is not None else str(sim.port(0))
    command = [sys.executable, "-m", "tests.devices.pump_harness", db, where, str(unit)]
    return subprocess.run(
        [*command, stream, *sale],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


async def journal_of(db: str, stream: str) -> list[RecordedEvent]:
    async with open_database(db) as database:
        rows = await database.fetch(
            "SELECT seq, type, payload::text AS payload, recorded_at FROM journal "
            "WHERE stream_id = $1 ORDER BY seq",
            stream,
        )

    return [
        RecordedEvent(stream, r["seq"], r["type"], orjson.loads(r["payload"]), r["recorded_at"])
        for r in rows
    ]


async def control(sim: SimProcess, cmd: str, **args: Any) -> dict[str, Any]:
    connection = await Control.connect(sim.control_port)
    try:
        return await connection.call(cmd, **args)
    finally:
        await connection.aclose()


def test_a_full_sale_is_journaled_write_ahead_and_cleared(pump_db: str, sim: SimProcess) -> None:
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=1))
    result = harness(pump_db, sim, "pump:s0.p1", "sale-1", "3000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started", "authorized", "settled"]
    events = trio.run(journal_of, pump_db, "pump:s0.p1")
    kinds = [e.type for e in events]
    assert kinds == ["contact", "auth_requested", "authorized", "fuelling", "completed", "cleared"]
    completed = events[4].payload
    assert completed["volume_ml"] == 3000
    assert completed["totals_ok"] is True
    start = events[1].payload["start_totals"]["1"]
    assert completed["end_totals"]["1"] - start == 3000
    ledger = trio.run(lambda: control(sim, "ledger", station=0, pump=1))["sales"]
    assert [(s["volume_ml"], s["auth_token"]) for s in ledger] == [
        (3000, events[1].payload["token"])
    ]


@pytest.mark.parametrize(
    "point",
    ["pump.after_auth_requested", "pump.after_authorize", "pump.fuelling", "pump.after_completed"],
)
def test_sigkill_at_each_step_settles_every_sale_exactly_once(
    pump_db: str, sim: SimProcess, point: str
) -> None:
    stream = "pump:s0.p1"
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=1))
    crashed = harness(pump_db, sim, stream, "sale-k", "2500", crash=point)
    assert crashed.returncode == -9, crashed.stderr
    recovered = harness(pump_db, sim, stream)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.split() == ["started", "settled"]

    events = trio.run(journal_of, pump_db, stream)
    ends = [e for e in events if e.type in ("completed", "void")]
    assert len(ends) == 1, [e.type for e in events]
    assert not [e for e in events if e.type in ("orphan", "alert")], [e.type for e in events]
    assert sum(1 for e in events if e.type == "auth_requested") == 1
    ledger = trio.run(lambda: control(sim, "ledger", station=0, pump=1))["sales"]
    snapshot = trio.run(lambda: control(sim, "snapshot", station=0, pump=1))
    token = next(e.payload["token"] for e in events if e.type == "auth_requested")
    ours = [s for s in ledger if s["auth_token"] == token]
    if point == "pump.after_auth_requested":
        # AUTHORIZE was never written: nothing flowed, the sale is void.
        assert ends[0].type == "void"
        assert ours == []
    else:
        assert ends[0].type == "completed"
        assert len(ours) == 1
        assert ends[0].payload["volume_ml"] == ours[0]["volume_ml"] == 2500
        assert snapshot["buffer"] == []  # cleared in the pump exactly once
    start = next(e.payload["start_totals"]["1"] for e in events if e.type == "auth_requested")
    dispensed = sum(e.payload["volume_ml"] for e in ends if e.type == "completed")
    assert snapshot["totals"][0]["volume_ml"] == start + dispensed
