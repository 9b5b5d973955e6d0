"""Post-pay and sale lookups on the PumpActor, against the simulator over Modbus TCP, on a
real journal: idempotent authorize, SaleStatus (from memory, after a restart, and from
the journal for sales the actor has forgotten), a stand-alone pump's sale becoming a
payable sale that an order locks and collects, and a prepay sale queued behind it.

The switch side runs in this process; the simulator is one ``fuelswitch sim pumps``
process per module, at five times real speed, one fuelling point (unit id) per test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from actors import ChildSpec, open_system
from devices import pump_book, pump_lookup
from devices.gfd1 import FPState, NozzleTotals, PresetType, SaleState
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import (
    Authorize,
    Authorized,
    CollectSale,
    LockSale,
    PayableSale,
    PayableSales,
    PumpActor,
    PumpEvent,
    PumpInfo,
    SaleFinished,
    SaleNotPayable,
    SalePhase,
    SaleReport,
    SaleStatus,
    Stop,
    Subscribe,
    UnlockSale,
)
from devices.sim.physics import amount_fen
from switch.store import Store
from switch.store.journal import Journal, journal_writer_spec
from tests.devices.sim_support import Control, SimProcess
from tests.devices.test_pump_commands import Collector, Rig, kinds, of_kind

SAFE = 30.0  # a bound for what must happen, never a measurement


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "5", "--port-base", "0",
        "--control-port", "0", "--speed", "5", "--seed", "33",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


@asynccontextmanager
async def open_rig(
    store: Store,
    sim: SimProcess,
    unit: int,
    stream: str | None = None,
    driver_type: type[Gfd1Driver] = Gfd1Driver,
    **polling: Any,
) -> AsyncIterator[Rig]:
    """A PumpActor on ``unit`` journaling to ``stream`` (a fresh one unless given: the
    same stream again is the same pump after a restart of the switch); ``polling``
    overrides its poll intervals."""
    intervals = {"active_poll_s": 0.05, "idle_poll_s": 0.1, **polling}
    stream = stream or f"pump:t{secrets.token_hex(4)}.p{unit}"
    async with (
        ModbusTcpClient("127.0.0.1", sim.port(0), timeout=0.25, max_in_flight=1) as client,
        open_system([journal_writer_spec(store.db)], intensity=10) as system,
    ):
        journal = Journal(system, store.db)
        driver = driver_type(client, unit, nozzles=2)
        spec = ChildSpec(
            "pump",
            lambda: PumpActor(driver, journal, stream_id=stream, **intervals),
        )
        await system.start_child(spec)
        control = await Control.connect(sim.control_port)
        try:
            yield Rig(system, journal, driver, control, stream, unit)
        finally:
            await control.aclose()


def order_id() -> str:
    return "O" + secrets.token_hex(8).upper()


async def until_payable(rig: Rig) -> tuple[PayableSale, ...]:
    with trio.fail_after(SAFE):
        while True:
            payable: tuple[PayableSale, ...] = await rig.call(PayableSales())
            if payable:
                return payable
            await trio.sleep(0.02)


async def until_phase(rig: Rig, sale_id: str, phase: SalePhase) -> SaleReport:
    with trio.fail_after(SAFE):
        while True:
            report: SaleReport = await rig.call(SaleStatus(sale_id))
            if report.state is phase:
                return report
            await trio.sleep(0.02)


def report_of(completed: dict[str, Any]) -> SaleReport:
    """What SaleStatus must answer for a journaled ``completed`` payload."""
    return SaleReport(
        completed["sale_id"],
        SalePhase.COMPLETED,
        completed["pump_sale_seq"],
        completed["nozzle"],
        completed["volume_ml"],
        completed["amount_fen"],
        completed["unit_price"],
        completed["price_set_id"],
        completed["reconstructed"],
        {int(n): v for n, v in completed["end_totals"].items()},
    )


# -- idempotent authorize and SaleStatus ----------------------------------------------------


async def test_authorize_is_idempotent_and_finished_sales_are_reported(
    store: Store, sim: SimProcess
) -> None:
    order = order_id()
    sale = f"{order}S"
    async with open_rig(store, sim, 1) as rig:
        stream = rig.stream
        await rig.sim("customer", nozzle=1)
        rig.sale_ids.append(sale)
        request = Authorize(sale, PresetType.VOLUME, 2000, nozzle_mask=1, order_id=order)
        first: Authorized = await rig.call(request)
        assert await rig.call(request) == first  # asked again: the same answer
        open_report: SaleReport = await rig.call(SaleStatus(sale))
        assert open_report.state in (SalePhase.AUTHORIZED, SalePhase.FUELLING)
        info = await rig.call(PumpInfo())
        assert (info.open_sale, info.open_sale_order, info.online) == (sale, order, True)
        await rig.settled(1)
        with pytest.raises(SaleFinished) as finished:
            await rig.call(request)
        assert finished.value.sale_id == sale

        rig.sale_ids.append("no-show")
        await rig.call(Authorize("no-show", PresetType.VOLUME, 1000))  # nobody at the pump
        await rig.until(lambda: rig.state()["state"] == "AUTHORIZED")
        await rig.call(Stop())
        await rig.settled(2)
        events = await rig.check_books()
        (completed,) = of_kind(events, "completed")
        expected = report_of(completed)
        assert await rig.call(SaleStatus(sale)) == expected
        void: SaleReport = await rig.call(SaleStatus("no-show"))
        assert (void.state, void.reason) == (SalePhase.VOID, "host_stop")
        assert (await rig.call(SaleStatus("never"))).state is SalePhase.UNKNOWN
    assert [e["sale_id"] for e in of_kind(events, "auth_requested")] == [sale, "no-show"]
    assert expected.volume_ml == 2000 and expected.reconstructed is False
    assert expected.amount_fen == amount_fen(2000, completed["unit_price"])

    async with open_rig(store, sim, 1, stream) as rig:  # the switch restarted
        assert await rig.call(SaleStatus(sale)) == expected
        assert (await rig.call(SaleStatus("no-show"))).state is SalePhase.VOID
        assert (await rig.call(SaleStatus("never"))).state is SalePhase.UNKNOWN
        with pytest.raises(SaleFinished):
            await rig.call(request)
        assert kinds(await rig.events()).count("auth_requested") == 2


async def test_sales_the_actor_has_forgotten_are_looked_up_in_the_journal(
    store: Store, sim: SimProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pump_book, "FINISHED_KEPT", 1)
    monkeypatch.setattr(pump_lookup, "FINISHED_KEPT", 1)
    async with open_rig(store, sim, 2) as rig:
        for n, preset in enumerate((1500, 700), start=1):
            await rig.authorize(preset)
            await rig.settled(n)
        events = await rig.check_books()
        old, new = rig.sale_ids
        assert rig.state()["sales"] == 2
        first, second = of_kind(events, "completed")
        assert await rig.call(SaleStatus(old)) == report_of(first)  # from the journal
        assert await rig.call(SaleStatus(new)) == report_of(second)  # from memory
        assert (await rig.call(SaleStatus("never"))).state is SalePhase.UNKNOWN
        with pytest.raises(SaleFinished):
            await rig.call(Authorize(old, PresetType.VOLUME, 1000))


# -- post-pay -----------------------------------------------------------------------------


async def test_a_stand_alone_sale_is_payable_then_locked_and_collected(
    store: Store, sim: SimProcess
) -> None:
    first, second = order_id(), order_id()
    async with open_rig(store, sim, 3) as rig:
        await rig.system.start_child(ChildSpec("collector", Collector))
        await rig.call(Subscribe("collector"))
        await rig.sim("configure", mode=1)  # stand-alone: the pump authorizes itself
        await rig.sim("customer", nozzle=2, hang_up_after_ml=1500)
        (sale,) = await until_payable(rig)
        point = await rig.point()
        (buffered,) = point["buffer"]
        seq = buffered["seq"]
        assert sale == PayableSale(
            seq, 2, 1500, buffered["amount_fen"], buffered["unit_price"],
            buffered["price_set_id"],
        )  # fmt: skip
        assert sale.amount_fen == amount_fen(1500, sale.unit_price)
        info = await rig.call(PumpInfo())
        assert (info.payable, info.fp_state, info.nozzles) == ((sale,), "completed", 2)

        with pytest.raises(SaleNotPayable):
            await rig.call(LockSale(seq + 1, first))  # not in the buffer
        with pytest.raises(SaleNotPayable):
            await rig.call(CollectSale(seq, first))  # not locked
        locked = await rig.call(LockSale(seq, first))
        assert locked.locked_by == first
        assert (await rig.point())["buffer"][0]["state"] == SaleState.LOCKED
        assert await rig.call(LockSale(seq, first)) == locked  # again: at once
        for refused in (LockSale(seq, second), CollectSale(seq, second), UnlockSale(seq, second)):
            with pytest.raises(SaleNotPayable, match="another order"):
                await rig.call(refused)
        await rig.call(UnlockSale(seq, first))  # the first order gave up
        assert (await rig.call(LockSale(seq, second))).locked_by == second
        with pytest.raises(SaleNotPayable):
            await rig.call(CollectSale(seq, first))
        assert await rig.call(CollectSale(seq, second)) is None
        point = await rig.point()
        assert point["buffer"] == []
        assert [(s["seq"], s["volume_ml"]) for s in point["ledger"]] == [(seq, 1500)]
        assert await rig.call(CollectSale(seq, second)) is None  # again: nothing to do
        assert await rig.call(PayableSales()) == ()
        await rig.sim("configure", mode=0)
        events = await rig.events()
        heard: list[PumpEvent] = rig.system.snapshot("collector").state["events"]
    postpay = [k for k in kinds(events) if k not in ("contact", "alert")]
    assert postpay == [
        "payable", "lock_requested", "locked", "unlocked", "lock_requested", "locked",
        "collect_requested", "collected",
    ]  # fmt: skip
    assert not of_kind(events, "alert") and not of_kind(events, "orphan")
    (payable,) = of_kind(events, "payable")
    assert payable["end_totals"] == {"2": point["totals"][1]["volume_ml"]}
    assert of_kind(events, "collected")[0]["order_id"] == second
    assert [e.kind for e in heard if e.kind in ("payable", "collected")] == [
        "payable",
        "collected",
    ]


async def test_a_prepay_sale_queues_behind_a_payable_sale(store: Store, sim: SimProcess) -> None:
    async with open_rig(store, sim, 4) as rig:
        await rig.sim("configure", mode=1)
        await rig.sim("customer", nozzle=2, hang_up_after_ml=1200)
        (payable,) = await until_payable(rig)
        start = (await rig.point())["totals"][0]["volume_ml"]
        order = order_id()
        sale = f"{order}S"
        rig.sale_ids.append(sale)
        # Authorized before the customer lifts, so the pump does not authorize itself.
        await rig.call(Authorize(sale, PresetType.VOLUME, 2000, nozzle_mask=1, order_id=order))
        await rig.sim("customer", nozzle=1)
        report = await until_phase(rig, sale, SalePhase.COMPLETED)
        point = await rig.point()
        assert [s["seq"] for s in point["buffer"]] == [payable.pump_sale_seq, report.pump_sale_seq]
        ours = point["buffer"][1]
        assert (report.volume_ml, report.amount_fen, report.unit_price) == (
            ours["volume_ml"], ours["amount_fen"], ours["unit_price"],
        )  # fmt: skip
        assert report.volume_ml == 2000 and report.reconstructed is False

        collector = order_id()
        await rig.call(LockSale(payable.pump_sale_seq, collector))
        await rig.call(CollectSale(payable.pump_sale_seq, collector))
        # our queued sale reaches the head, and the poll clears it
        await rig.until_point(lambda p: p["buffer"] == [])
        events = await rig.until_journal(lambda events: bool(of_kind(events, "cleared")))
        await rig.sim("configure", mode=0)
        await rig.until(lambda: rig.state()["state"] in (FPState.IDLE.name, "CALLING"))
        point = await rig.point()
    assert point["totals"][0]["volume_ml"] == start + 2000
    (completed,) = of_kind(events, "completed")
    assert completed["queued"] is True
    assert of_kind(events, "cleared") == [{"sale_id": sale, "pump_sale_seq": report.pump_sale_seq}]
    assert not of_kind(events, "alert") and not of_kind(events, "orphan")


class _SaleStartsBeforeTotals(Gfd1Driver):
    """Runs ``before_totals`` once, just before the first totals read: what a customer at a
    stand-alone pump does when the nozzle is lifted between the recovery's status read
    and its totals read."""

    before_totals: Callable[[], Awaitable[None]] | None = None

    async def totals(self) -> tuple[NozzleTotals, ...]:
        hook, _SaleStartsBeforeTotals.before_totals = _SaleStartsBeforeTotals.before_totals, None
        if hook is not None:
            await hook()
        return await super().totals()


async def test_a_stand_alone_sale_starting_while_the_pump_recovers_is_no_orphan(
    store: Store, sim: SimProcess
) -> None:
    async with open_rig(store, sim, 5) as rig:  # first contact
        stream = rig.stream
        await rig.sim("configure", mode=1)
        await rig.until(lambda: rig.state()["state"] == FPState.IDLE.name)
        start = (await rig.point())["totals"][0]["volume_ml"]

    control = await Control.connect(sim.control_port)

    async def customer_starts_fuelling() -> None:
        await control.call("customer", station=0, pump=5, nozzle=1, hang_up_after_ml=900)
        with trio.fail_after(SAFE):
            while True:  # until the fuel flows (the totals move)
                point = await control.call("snapshot", station=0, pump=5)
                if point["totals"][0]["volume_ml"] > start:
                    return
                await trio.sleep(0.005)

    _SaleStartsBeforeTotals.before_totals = customer_starts_fuelling
    try:
        async with open_rig(store, sim, 5, stream, _SaleStartsBeforeTotals) as rig:
            (payable,) = await until_payable(rig)
            events = await rig.events()
            ledger = (await rig.point())["ledger"]
    finally:
        _SaleStartsBeforeTotals.before_totals = None
        await control.aclose()
    assert _SaleStartsBeforeTotals.before_totals is None  # the race was run
    assert not of_kind(events, "orphan") and not of_kind(events, "alert")
    (journaled,) = of_kind(events, "payable")
    assert journaled["volume_ml"] == payable.volume_ml == 900
    assert journaled["moved"] == {"1": 900}  # every litre counted once
    assert [s["volume_ml"] for s in ledger if s["seq"] == payable.pump_sale_seq] == [900]
