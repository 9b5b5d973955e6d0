"""The PumpActor driving DART pumps: the switch's line master on one end of a real pty,
``fuelswitch sim pumps --dart pty`` on the other, a real journal.

The actor, its journal rules and its restart table are the ones GFD-1 uses; only the
driver differs. Full sales with volume and amount presets, a price change, STOP mid-fill,
corrupted frames while fuelling, and SIGKILL of the switch-side process at each step of a
sale: every sale ends exactly once, and the pump's totals equal the start totals plus
what the journal says was dispensed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from actors import ChildSpec, open_system
from devices.dart.driver import DartDriver
from devices.dart.line import DartLine
from devices.gfd1 import EndReason, PresetType
from devices.modbus import Parity
from devices.pump import Authorize, PumpActor, SetPrices, Stop
from devices.sim.physics import amount_fen
from switch.store import ServerUrls, Store
from switch.store.journal import Journal, journal_writer_spec
from tests.devices.sim_support import Control, SimProcess
from tests.devices.test_pump_actor import harness, journal_of
from tests.devices.test_pump_commands import Rig, kinds, of_kind
from tests.storage import create_database, drop_database, unique_name

PUMPS = 8


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "1", "--port-base", "0",
        "--control-port", "0", "--speed", "5", "--seed", "5",
        "--dart", "pty", "--dart-pumps", str(PUMPS),
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


def dart(sim: SimProcess) -> dict[str, Any]:
    info: dict[str, Any] = sim.ready["dart"]
    return info


@asynccontextmanager
async def dart_rig(store: Store, sim: SimProcess, pump: int, **options: Any) -> AsyncIterator[Rig]:
    """The switch's DART line (this pump's address only), a journal writer and a
    PumpActor polling fast, for pump ``pump`` of the simulator's DART line."""
    options = {"active_poll_s": 0.05, "idle_poll_s": 0.1, **options}
    address = 0x4F + pump
    stream = f"pump:d{secrets.token_hex(4)}.p{pump}"
    line = DartLine(dart(sim)["path"], [address], parity=Parity.NONE, reply_timeout=0.3)
    async with trio.open_nursery() as nursery:
        await nursery.start(line.run)
        async with open_system([journal_writer_spec(store.db)], intensity=10) as system:
            journal = Journal(system, store.db)
            driver = DartDriver(line, address, nozzles=2)
            spec = ChildSpec(
                "pump", lambda: PumpActor(driver, journal, stream_id=stream, **options)
            )
            await system.start_child(spec)
            control = await Control.connect(sim.control_port)
            try:
                yield Rig(
                    system, journal, driver, control, stream, pump, station=dart(sim)["station"]
                )
            finally:
                await control.aclose()
        nursery.cancel_scope.cancel()


async def books(rig: Rig) -> list[Any]:
    """Every sale ended once; per nozzle the pump's totals are the first start totals plus
    every journaled volume; the journal's sales are the simulator's, in order."""
    events = await rig.events()
    for sale_id in rig.sale_ids:
        ends = [
            e for e in events if e.type in ("completed", "void") and e.payload["sale_id"] == sale_id
        ]
        assert len(ends) == 1, (sale_id, kinds(events))
    point = await rig.point()
    first: dict[str, int] = {}
    for payload in of_kind(events, "auth_requested"):
        for nozzle, total in payload["start_totals"].items():
            first.setdefault(nozzle, total)
    dispensed: dict[str, int] = {}
    for payload in of_kind(events, "completed"):
        nozzle = str(payload["nozzle"])
        dispensed[nozzle] = dispensed.get(nozzle, 0) + payload["volume_ml"]
    for nozzle, start in first.items():
        assert point["totals"][int(nozzle) - 1]["volume_ml"] == start + dispensed.get(nozzle, 0)
    journaled = [(p["volume_ml"], p["amount_fen"]) for p in of_kind(events, "completed")]
    delivered = [(s["volume_ml"], s["amount_fen"]) for s in point["ledger"]]
    assert journaled == delivered
    return events


async def test_a_sale_with_a_volume_preset(store: Store, sim: SimProcess) -> None:
    async with dart_rig(store, sim, 1) as rig:
        await rig.authorize(2000)
        await rig.settled(1)
        events = await books(rig)
    assert kinds(events) == [
        "contact", "auth_requested", "authorized", "fuelling", "completed", "cleared"
    ]  # fmt: skip
    (completed,) = of_kind(events, "completed")
    assert completed["volume_ml"] == 2000
    assert completed["end_reason"] == EndReason.PRESET_REACHED
    assert completed["totals_ok"] is True
    assert completed["amount_fen"] == amount_fen(2000, completed["unit_price"])


async def test_a_sale_with_an_amount_preset(store: Store, sim: SimProcess) -> None:
    async with dart_rig(store, sim, 2) as rig:
        await rig.sim("customer", nozzle=1)
        rig.sale_ids.append("amount-1")
        await rig.call(Authorize("amount-1", PresetType.AMOUNT, 1234, nozzle_mask=1))
        await rig.settled(1)
        events = await books(rig)
    (completed,) = of_kind(events, "completed")
    assert completed["amount_fen"] == 1234
    assert completed["end_reason"] == EndReason.PRESET_REACHED


async def test_a_price_change_prices_the_next_sale(store: Store, sim: SimProcess) -> None:
    async with dart_rig(store, sim, 3) as rig:
        await rig.until(lambda: rig.state()["recovered"] is not None)
        change = await rig.call(SetPrices(7, (801_000, 855_000)))
        assert change.applied
        await rig.authorize(1500)
        await rig.settled(1)
        events = await books(rig)
        state = rig.state()
    (completed,) = of_kind(events, "completed")
    assert completed["unit_price"] == 801_000
    assert completed["price_set_id"] == 7
    assert completed["amount_fen"] == amount_fen(1500, 801_000)
    assert state["price_set_id"] == 7


async def test_stop_mid_fill_ends_the_sale_with_what_flowed(store: Store, sim: SimProcess) -> None:
    async with dart_rig(store, sim, 4) as rig:
        await rig.authorize(40_000)
        await rig.fuelling(500)
        await rig.call(Stop())
        await rig.settled(1)
        events = await books(rig)
    (completed,) = of_kind(events, "completed")
    assert 500 <= completed["volume_ml"] < 40_000
    assert completed["end_reason"] == EndReason.HOST_STOP


async def test_corrupted_and_lost_frames_while_fuelling(store: Store, sim: SimProcess) -> None:
    async with dart_rig(store, sim, 5) as rig:
        await rig.authorize(3000)
        await rig.sim("faults", crc_error_probability=0.2, drop_reply_probability=0.1)
        await rig.fuelling(1000)
        await rig.until(lambda: rig.state()["sales"] == 1)
        await rig.sim("faults", crc_error_probability=0.0, drop_reply_probability=0.0)
        await rig.settled(1)
        events = await books(rig)
        line = rig.driver.line.statistics() if isinstance(rig.driver, DartDriver) else {}
    (completed,) = of_kind(events, "completed")
    assert completed["volume_ml"] == 3000
    assert line["bad_frames"] + line["silent"] > 0  # the faults did reach the line


@pytest.fixture
def pump_db(servers: ServerUrls) -> Iterator[str]:
    name = unique_name("dart")
    url = create_database(servers.database_url, name)
    yield url
    drop_database(servers.database_url, name)


@pytest.mark.parametrize(
    ("pump", "point"),
    [
        (6, "pump.after_auth_requested"),
        (7, "pump.after_authorize"),
        (8, "pump.after_completed"),
        (8, "pump.fuelling"),
    ],
)
def test_sigkill_at_each_step_settles_every_sale_exactly_once(
    pump_db: str, sim: SimProcess, pump: int, point: str
) -> None:
    station = dart(sim)["station"]

    async def control(cmd: str, **args: Any) -> dict[str, Any]:
        connection = await Control.connect(sim.control_port)
        try:
            return await connection.call(cmd, station=station, pump=pump, **args)
        finally:
            await connection.aclose()

    stream = f"pump:dart{secrets.token_hex(3)}.p{pump}"
    before = trio.run(lambda: control("snapshot"))
    trio.run(lambda: control("customer", nozzle=1))
    path = dart(sim)["path"]
    crashed = harness(pump_db, sim, stream, "sale-k", "2500", crash=point, target=path, unit=pump)
    assert crashed.returncode == -9, crashed.stderr
    recovered = harness(pump_db, sim, stream, target=path, unit=pump)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.split() == ["started", "settled"]

    events = trio.run(journal_of, pump_db, stream)
    types = [e.type for e in events]
    ends = [e for e in events if e.type in ("completed", "void")]
    assert len(ends) == 1, types
    assert not [e for e in events if e.type in ("orphan", "alert")], types
    snapshot = trio.run(lambda: control("snapshot"))
    new_sales = snapshot["ledger"][len(before["ledger"]) :]
    if point == "pump.after_auth_requested":
        assert ends[0].type == "void"  # AUTHORIZE never went out: nothing flowed
        assert new_sales == []
    else:
        assert ends[0].type == "completed"
        assert [s["volume_ml"] for s in new_sales] == [ends[0].payload["volume_ml"]] == [2500]
        assert snapshot["buffer"] == []  # reset in the pump exactly once
    start = next(e.payload["start_totals"]["1"] for e in events if e.type == "auth_requested")
    dispensed = sum(e.payload["volume_ml"] for e in ends if e.type == "completed")
    assert snapshot["totals"][0]["volume_ml"] == start + dispensed
