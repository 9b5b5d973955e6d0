"""The PumpActor's operator commands against the simulator over Modbus TCP, on a real journal:
price changes, close and open, stop, suspend and resume, emergency stop, refusals, and what
subscribers hear. Every sale must end exactly once in the journal, and the simulator's
totals must equal the start totals plus what the journal says was dispensed.

The switch side runs in this process; the simulator is one ``fuelswitch sim pumps``
process per module, at five times real speed, one fuelling point (unit id) per test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from actors import Actor, ActorSystem, ChildSpec, open_system
from devices.driver import CommandRefused, PumpDriver
from devices.gfd1 import EndReason, ErrorCode, FPState, PresetType
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import (
    Authorize,
    Authorized,
    Close,
    EmergencyStop,
    Open,
    PumpActor,
    PumpBusy,
    PumpClosed,
    PumpEvent,
    ResetError,
    Resume,
    SetPrices,
    Stop,
    Subscribe,
    Suspend,
)
from devices.pump_journal import Admin
from devices.pump_messages import PriceChange
from devices.sim.physics import amount_fen
from switch.store import Store
from switch.store.journal import Journal, RecordedEvent, journal_writer_spec
from tests.devices.sim_support import Control, SimProcess

SAFE = 30.0  # a bound for what must happen, never a measurement
ENDS = ("completed", "void")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "8", "--port-base", "0",
        "--control-port", "0", "--speed", "5", "--seed", "21",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


@dataclass
class Rig:
    """One PumpActor on one simulated point, and the means to poke and inspect both."""

    system: ActorSystem
    journal: Journal
    driver: PumpDriver
    control: Control
    stream: str
    unit: int
    sale_ids: list[str] = field(default_factory=list)
    station: int = 0  # the simulator's station the point belongs to

    async def call(self, msg: Any, timeout: float = SAFE) -> Any:
        return await self.system.call("pump", msg, timeout=timeout)

    async def sim(self, cmd: str, **args: Any) -> dict[str, Any]:
        return await self.control.call(cmd, station=self.station, pump=self.unit, **args)

    async def point(self) -> dict[str, Any]:
        return await self.sim("snapshot")

    def state(self) -> dict[str, Any]:
        return self.system.snapshot("pump").state

    async def events(self) -> list[RecordedEvent]:
        return await self.journal.load(self.stream)

    async def authorize(self, preset_ml: int, *, nozzle: int = 1, **customer: Any) -> Authorized:
        """A customer lifts ``nozzle`` and the switch authorizes a volume preset on it."""
        await self.sim("customer", nozzle=nozzle, **customer)
        sale_id = f"sale-{secrets.token_hex(4)}"
        self.sale_ids.append(sale_id)
        authorized: Authorized = await self.call(
            Authorize(sale_id, PresetType.VOLUME, preset_ml, nozzle_mask=1 << (nozzle - 1))
        )
        return authorized

    async def until(self, check: Callable[[], bool]) -> None:
        """Poll the actor's state until ``check`` holds (a bound, never a measurement)."""
        with trio.fail_after(SAFE):
            while True:
                if check():
                    return
                await trio.sleep(0.02)

    async def until_point(self, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Poll the simulator's snapshot of the point until ``check`` holds."""
        with trio.fail_after(SAFE):
            while True:
                if check(snapshot := await self.point()):
                    return snapshot
                await trio.sleep(0.02)

    async def until_journal(
        self, check: Callable[[list[RecordedEvent]], bool]
    ) -> list[RecordedEvent]:
        """Read the stream until ``check`` holds (for what is journaled after a poll's
        visible effect, such as ``error_cleared`` after the state it was seen in)."""
        with trio.fail_after(SAFE):
            while True:
                if check(events := await self.events()):
                    return events
                await trio.sleep(0.02)

    async def settled(self, sales: int) -> None:
        def done() -> bool:
            s = self.state()
            return s["sales"] == sales and s["open_sale"] is None and s["pending_clear"] is None

        await self.until(done)

    async def fuelling(self, at_least_ml: int = 1) -> dict[str, Any]:
        return await self.until_point(
            lambda p: (
                p["status"]["fp_state"] == FPState.FUELLING
                and p["status"]["cur_volume_ml"] >= at_least_ml
            )
        )

    async def check_books(self) -> list[RecordedEvent]:
        """Each sale ended exactly once; per nozzle, the pump's totals are the first start
        totals plus every journaled volume; each completed sale is the pump's own."""
        events = await self.events()
        for sale_id in self.sale_ids:
            ends = [e for e in events if e.type in ENDS and e.payload["sale_id"] == sale_id]
            assert len(ends) == 1, (sale_id, [(e.type, e.payload) for e in events])
        point = await self.point()
        first: dict[str, int] = {}
        for e in events:
            if e.type == "auth_requested":
                for nozzle, total in e.payload["start_totals"].items():
                    first.setdefault(nozzle, total)
        dispensed: dict[str, int] = {}
        for e in events:
            if e.type == "completed":
                nozzle = str(e.payload["nozzle"])
                dispensed[nozzle] = dispensed.get(nozzle, 0) + e.payload["volume_ml"]
        for nozzle, start in first.items():
            total = point["totals"][int(nozzle) - 1]["volume_ml"]
            assert total == start + dispensed.get(nozzle, 0), (nozzle, events)
        tokens = {e.payload["sale_id"]: e.payload["token"] for e in events
                  if e.type == "auth_requested"}  # fmt: skip
        ledger = {s["auth_token"]: s for s in point["ledger"]}
        for e in events:
            if e.type == "completed" and not e.payload["reconstructed"]:
                sale = ledger[tokens[e.payload["sale_id"]]]
                assert sale["volume_ml"] == e.payload["volume_ml"]
                assert sale["amount_fen"] == e.payload["amount_fen"]
        return events


@asynccontextmanager
async def pump_rig(
    store: Store,
    sim: SimProcess,
    unit: int,
    *,
    driver: type[Gfd1Driver] = Gfd1Driver,
    **options: Any,
) -> AsyncIterator[Rig]:
    """A journal writer, a Modbus TCP client (one request in flight, short timeouts) and a
    PumpActor polling fast, for unit ``unit`` of the module's simulator."""
    options = {"active_poll_s": 0.05, "idle_poll_s": 0.1, **options}
    stream = f"pump:t{secrets.token_hex(4)}.p{unit}"
    async with (
        ModbusTcpClient("127.0.0.1", sim.port(0), timeout=0.25, max_in_flight=1) as client,
        open_system([journal_writer_spec(store.db)], intensity=10) as system,
    ):
        journal = Journal(system, store.db)
        pump_driver = driver(client, unit, nozzles=2)
        spec = ChildSpec(
            "pump", lambda: PumpActor(pump_driver, journal, stream_id=stream, **options)
        )
        await system.start_child(spec)
        control = await Control.connect(sim.control_port)
        try:
            yield Rig(system, journal, pump_driver, control, stream, unit)
        finally:
            await control.aclose()


def kinds(events: list[RecordedEvent]) -> list[str]:
    return [e.type for e in events]


def of_kind(events: list[RecordedEvent], kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in events if e.type == kind]


# -- prices ----------------------------------------------------------------------------------


async def test_a_price_change_waits_for_the_sale_then_prices_the_next(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 1) as rig:
        old_prices = (await rig.point())["applied_prices"]
        await rig.authorize(3000)
        await rig.fuelling(500)
        change = await rig.call(SetPrices(7, (800_000, 850_000)))
        assert change == PriceChange(7, applied=False)  # deferred: a sale is fuelling
        assert rig.state()["pending_prices"] == 7
        assert (await rig.point())["applied_prices"] == old_prices
        await rig.settled(1)
        await rig.until(lambda: rig.state()["pending_prices"] is None)
        point = await rig.point()
        assert point["applied_prices"] == [800_000, 850_000]
        assert point["status"]["price_set_id"] == 7

        await rig.authorize(1000)
        await rig.settled(2)
        events = await rig.check_books()
    order = [k for k in kinds(events) if k in ("prices_pending", "completed", "prices_applied")]
    assert order == ["prices_pending", "completed", "prices_applied", "completed"]
    first, second = of_kind(events, "completed")
    assert (first["price_set_id"], first["unit_price"]) == (1, old_prices[0])
    assert of_kind(events, "auth_requested")[1]["price_set_id"] == 7
    assert (second["price_set_id"], second["unit_price"]) == (7, 800_000)
    assert second["amount_fen"] == amount_fen(second["volume_ml"], 800_000)
    assert of_kind(events, "prices_applied") == [{"price_set_id": 7, "prices": [800_000, 850_000]}]


# -- close and open --------------------------------------------------------------------------


async def test_close_waits_for_the_sale_to_be_collected_and_refuses_sales(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 2) as rig:
        await rig.authorize(2500)
        await rig.fuelling(500)
        assert await rig.call(Close()) is Admin.CLOSING
        assert (await rig.point())["status"]["fp_state"] == FPState.FUELLING
        await rig.until(lambda: rig.state()["admin"] == "closed")
        assert (await rig.point())["status"]["fp_state"] == FPState.CLOSED
        await rig.sim("lift", nozzle=1)
        with pytest.raises(PumpClosed):
            await rig.call(Authorize("refused", PresetType.VOLUME, 1000))
        assert await rig.call(Close()) is Admin.CLOSED  # again: nothing to do
        assert await rig.call(Open()) is Admin.OPEN
        await rig.until_point(lambda p: p["status"]["fp_state"] == FPState.CALLING)
        await rig.sim("hang_up")
        events = await rig.check_books()
    order = [k for k in kinds(events) if k not in ("alert", "authorized", "fuelling")]
    assert order == [
        "contact", "auth_requested", "close_requested", "completed", "cleared", "closed", "opened"
    ]  # fmt: skip
    # the refused sale left no trace in the journal
    assert [e["sale_id"] for e in of_kind(events, "auth_requested")] == rig.sale_ids


# -- stop, suspend, resume -------------------------------------------------------------------


async def test_stop_mid_fill_ends_the_sale_with_the_volume_so_far(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 3) as rig:
        await rig.authorize(40_000)
        await rig.fuelling(1000)
        await rig.call(Stop())
        await rig.settled(1)
        events = await rig.check_books()
    (completed,) = of_kind(events, "completed")
    assert completed["end_reason"] == EndReason.HOST_STOP
    assert 1000 <= completed["volume_ml"] < 40_000
    assert kinds(events).index("stop_requested") < kinds(events).index("completed")


async def test_stop_before_flow_voids_the_sale_and_clears_its_zero_sale(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 8) as rig:
        rig.sale_ids.append("no-show")
        await rig.call(Authorize("no-show", PresetType.VOLUME, 1000))  # nobody at the pump
        await rig.until(lambda: rig.state()["state"] == "AUTHORIZED")
        await rig.call(Stop())
        await rig.settled(1)
        point = await rig.point()
        assert point["buffer"] == []  # the pump's zero sale is cleared, not left to pile up
        assert [s["volume_ml"] for s in point["ledger"]] == [0]
        await rig.authorize(500)  # and the next sale is not refused for it
        await rig.settled(2)
        events = await rig.check_books()
    (void,) = of_kind(events, "void")
    assert (void["sale_id"], void["reason"]) == ("no-show", "host_stop")
    assert void["pump_sale_seq"] == point["ledger"][0]["seq"]
    assert [c["sale_id"] for c in of_kind(events, "cleared")] == rig.sale_ids


async def test_suspend_holds_the_flow_and_resume_finishes_the_sale(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 4) as rig:
        await rig.authorize(2500)
        await rig.fuelling(500)
        await rig.call(Suspend())
        held = await rig.until_point(
            lambda p: p["status"]["fp_state"] == FPState.SUSPENDED_FUELLING
        )
        await trio.sleep(0.3)  # model time runs on; the volume must not
        assert (await rig.point())["status"]["cur_volume_ml"] == held["status"]["cur_volume_ml"]
        assert rig.state()["open_sale_state"] == "fuelling"
        await rig.call(Resume())
        await rig.settled(1)
        events = await rig.check_books()
    (completed,) = of_kind(events, "completed")
    assert (completed["end_reason"], completed["volume_ml"]) == (EndReason.PRESET_REACHED, 2500)
    order = [k for k in kinds(events) if k in ("suspended", "resumed", "completed")]
    assert order == ["suspended", "resumed", "completed"]


async def test_emergency_stop_alerts_and_leaves_the_point_inoperative(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 5) as rig:
        await rig.authorize(40_000)
        await rig.fuelling(800)
        await rig.call(EmergencyStop("fire drill"))
        await rig.settled(1)
        point = await rig.point()
        assert point["status"]["fp_state"] == FPState.INOPERATIVE
        assert point["status"]["error_code"] == ErrorCode.EMERGENCY_STOP
        await rig.sim("lift", nozzle=1)
        with pytest.raises(PumpBusy, match="INOPERATIVE"):
            await rig.call(Authorize("refused", PresetType.VOLUME, 1000))
        await rig.call(ResetError())
        await rig.until_journal(lambda events: bool(of_kind(events, "error_cleared")))
        assert rig.state()["state"] == "CALLING"
        await rig.sim("hang_up")
        events = await rig.check_books()
        alerts = rig.state()["alerts"]
    (completed,) = of_kind(events, "completed")
    assert completed["end_reason"] == EndReason.HOST_STOP
    assert [(a["kind"], a["sale"], a["code"]) for a in alerts] == [
        ("emergency_stop", rig.sale_ids[0], ErrorCode.EMERGENCY_STOP)
    ]  # once: the pump's ERROR_CODE 2 is the same occurrence
    assert of_kind(events, "emergency_stop")[0]["reason"] == "fire drill"
    assert of_kind(events, "error_cleared") == [{"code": ErrorCode.EMERGENCY_STOP}]


async def test_refused_commands_fail_the_caller_not_the_actor(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 6) as rig:
        for command in (Stop(), Suspend(), Resume()):
            with pytest.raises(CommandRefused, match="ILLEGAL_STATE"):
                await rig.call(command)
        with pytest.raises(ValueError, match="prices"):
            await rig.call(SetPrices(3, ()))
        with pytest.raises(ValueError, match="price set id"):
            await rig.call(SetPrices(0, (800_000,)))
        await rig.authorize(1000)
        with pytest.raises(PumpBusy, match="open sale"):
            await rig.call(Authorize("second", PresetType.VOLUME, 1000))
        await rig.settled(1)
        assert rig.system.snapshot("pump").incarnation == 1
        events = await rig.check_books()
    assert of_kind(events, "prices_pending") == []


# -- subscribers -----------------------------------------------------------------------------


class Collector(Actor):
    def __init__(self) -> None:
        self.events: list[PumpEvent] = []

    async def handle_cast(self, msg: Any) -> None:
        self.events.append(msg)

    def snapshot(self) -> dict[str, Any]:
        return {"events": list(self.events)}


async def test_subscribers_hear_the_sale_as_it_goes(store: Store, sim: SimProcess) -> None:
    async with pump_rig(store, sim, 7) as rig:
        await rig.system.start_child(ChildSpec("collector", Collector))
        snapshot = await rig.call(Subscribe("collector"))
        assert snapshot["subscribers"] == 1
        await rig.sim("lift", nozzle=1)
        await rig.until(lambda: rig.state()["state"] == "CALLING")
        rig.sale_ids.append("heard")
        await rig.call(Authorize("heard", PresetType.VOLUME, 4000, nozzle_mask=1))
        await rig.settled(1)
        # Cleared with the nozzle still out: CALLING again. Hanging up before the actor's
        # next poll has seen that would race it.
        await rig.until(lambda: rig.state()["state"] == "CALLING")
        await rig.sim("hang_up")
        await rig.until(lambda: rig.state()["state"] == "IDLE")
        await rig.check_books()
        heard: list[PumpEvent] = rig.system.snapshot("collector").state["events"]
    assert {e.pump for e in heard} == {"pump"}
    order = [e.kind for e in heard if e.kind != "state"]
    assert order[:3] == ["calling", "authorized", "fuelling"]
    # cleared, the point is CALLING again until the customer hangs up
    assert order[order.index("completed") :] == ["completed", "calling"]
    progress = [e.data for e in heard if e.kind == "fuelling" and "volume_ml" in e.data]
    assert progress, order
    volumes = [p["volume_ml"] for p in progress]
    assert volumes == sorted(volumes) and volumes[-1] <= 4000
    assert all(p["amount_fen"] == amount_fen(p["volume_ml"], p["unit_price"]) for p in progress)
    states = [e.data["state"] for e in heard if e.kind == "state"]
    assert "FUELLING" in states and states[-1] == "IDLE"
