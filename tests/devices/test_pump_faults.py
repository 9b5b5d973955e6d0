"""The PumpActor against the simulator's faults (its control API's ``faults`` command and
power cycles), over Modbus TCP, on a real journal: lost and late replies, busy replies,
flow that does not stop, a failed pulser, power lost mid-sale, a pump that stops
answering, and litres nobody journaled. Whatever happens, every sale ends exactly once
in the journal and the simulator's totals equal the start totals plus what was dispensed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

from devices.driver import CommandInterrupted
from devices.gfd1 import (
    Command,
    CommandBlock,
    EndReason,
    ErrorCode,
    FPState,
    PresetType,
    StatusBlock,
)
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import ResetError, Stop
from switch.store import Store
from tests.devices.sim_support import Control, SimProcess, poll_status, send_command
from tests.devices.test_pump_commands import Rig, kinds, of_kind, pump_rig


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "10", "--port-base", "0",
        "--control-port", "0", "--speed", "5", "--seed", "33",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


def acked(seq: int) -> Callable[[StatusBlock], bool]:
    return lambda status: status.cmd_ack_seq == seq


def alert_kinds(rig: Rig) -> list[str]:
    return [a["kind"] for a in rig.state()["alerts"]]


class ArmedDriver(Gfd1Driver):
    """Runs ``arm`` (once) just before AUTHORIZE goes out, so the command meets the fault."""

    arm: Callable[[], Awaitable[None]] | None = None

    async def authorize(
        self, *, token: int, nozzle_mask: int, preset_type: PresetType, preset_value: int
    ) -> None:
        if self.arm is not None:
            arm, self.arm = self.arm, None
            await arm()
        await super().authorize(
            token=token, nozzle_mask=nozzle_mask, preset_type=preset_type, preset_value=preset_value
        )


@pytest.mark.parametrize(
    ("unit", "fault", "counter"),
    [
        (1, {"drop_reply_probability": 1.0}, "dropped"),
        (2, {"delay_reply_probability": 1.0, "delay_reply_s": 0.4}, "delayed"),
    ],
    ids=["dropped", "delayed"],
)
async def test_lost_replies_resend_the_same_block_and_the_sale_completes_once(
    store: Store, sim: SimProcess, unit: int, fault: dict[str, Any], counter: str
) -> None:
    async with pump_rig(store, sim, unit, driver=ArmedDriver) as rig:
        driver = rig.driver
        assert isinstance(driver, ArmedDriver)

        async def arm() -> None:
            control = await Control.connect(sim.control_port)
            await control.call("faults", station=0, pump=unit, **fault)
            await control.aclose()

        async def disarm_after_resends() -> None:
            await rig.until(lambda: driver.statistics()["resends"] >= 2)
            await rig.sim("faults", drop_reply_probability=0.0, delay_reply_probability=0.0)

        driver.arm = arm
        async with trio.open_nursery() as nursery:
            nursery.start_soon(disarm_after_resends)
            authorized = await rig.authorize(2000)
        await rig.settled(1)
        events = await rig.check_books()
        point = await rig.point()
    assert driver.statistics()["resends"] >= 2
    assert point["statistics"][counter] > 0
    assert [s["auth_token"] for s in point["ledger"]] == [authorized.token]  # executed once
    assert kinds(events) == [
        "contact", "auth_requested", "authorized", "fuelling", "completed", "cleared"
    ]  # fmt: skip


async def test_busy_replies_and_busy_results_are_tried_again(store: Store, sim: SimProcess) -> None:
    async with pump_rig(store, sim, 3) as rig:
        await rig.sim("faults", busy_commands=2)  # AUTHORIZE: BUSY, BUSY, then executed
        await rig.authorize(2500)
        await rig.sim("faults", busy_reply_probability=0.25)  # exception 06 now and then
        await rig.settled(1)
        await rig.sim("faults", busy_reply_probability=0.0)
        events = await rig.check_books()
        point = await rig.point()
    assert rig.driver.statistics()["busy"] >= 2
    assert point["statistics"]["busy"] > 0
    assert len(point["ledger"]) == 1
    (completed,) = of_kind(events, "completed")
    assert (completed["end_reason"], completed["volume_ml"]) == (EndReason.PRESET_REACHED, 2500)


async def test_stuck_flow_is_ended_by_the_actors_stop(store: Store, sim: SimProcess) -> None:
    async with pump_rig(store, sim, 4) as rig:
        await rig.sim("faults", stuck_flow=True)
        await rig.authorize(40_000, hang_up_after_ml=800)
        await rig.until_point(
            lambda p: (
                p["status"]["nozzle_out_mask"] == 0  # hung up ...
                and p["status"]["fp_state"] == FPState.FUELLING  # ... and still flowing
                and p["status"]["cur_volume_ml"] > 1200
            )
        )
        await rig.call(Stop())
        await rig.settled(1)
        await rig.sim("faults", stuck_flow=False)
        events = await rig.check_books()
    (completed,) = of_kind(events, "completed")
    assert completed["end_reason"] == EndReason.HOST_STOP
    assert 1200 < completed["volume_ml"] < 40_000


async def test_a_pulser_error_ends_the_sale_with_an_alert(store: Store, sim: SimProcess) -> None:
    async with pump_rig(store, sim, 5) as rig:
        await rig.sim("faults", pulser_error_at_ml=1200)
        await rig.authorize(5000)
        await rig.settled(1)
        point = await rig.point()
        assert (point["status"]["fp_state"], point["status"]["error_code"]) == (
            FPState.INOPERATIVE,
            ErrorCode.PULSER,
        )
        events = await rig.check_books()
        alerts = rig.state()["alerts"]
        await rig.call(ResetError())
        await rig.until(lambda: rig.state()["state"] == "IDLE")
    (completed,) = of_kind(events, "completed")
    assert (completed["end_reason"], completed["volume_ml"]) == (EndReason.ERROR, 1200)
    assert [(a["kind"], a["code"], a["sale"]) for a in alerts] == [
        ("pump_error", ErrorCode.PULSER, rig.sale_ids[0])
    ]


@pytest.mark.parametrize(("unit", "lose"), [(6, False), (7, True)], ids=["kept", "lost"])
async def test_power_lost_mid_sale(store: Store, sim: SimProcess, unit: int, lose: bool) -> None:
    async with pump_rig(store, sim, unit) as rig:
        await rig.authorize(40_000)
        await rig.fuelling(1000)
        cycle = await rig.sim("power_cycle", lose_in_progress=lose)
        await rig.settled(1)
        # the new BOOT_COUNT is journaled last, once the totals have had their say
        await rig.until_journal(lambda events: len(of_kind(events, "contact")) == 2)
        events = await rig.check_books()
        alerts = alert_kinds(rig)
    (completed,) = of_kind(events, "completed")
    sale = cycle["sale"]
    assert completed["volume_ml"] == sale["volume_ml"] >= 1000
    assert completed["amount_fen"] == sale["amount_fen"]
    if lose:  # no sale block: reconstructed from the totals
        assert completed["reconstructed"] is True
        assert completed["price_set_id"] == of_kind(events, "auth_requested")[0]["price_set_id"]
        assert sorted(alerts) == ["boot_count_changed", "sale_reconstructed"]
    else:
        assert completed["reconstructed"] is False
        assert completed["end_reason"] == EndReason.POWER_LOSS
        assert alerts == ["boot_count_changed"]
    boots = [c["boot_count"] for c in of_kind(events, "contact")]
    assert boots == [cycle["boot_count"] - 1, cycle["boot_count"]]


async def test_a_pump_that_stops_answering_goes_offline_with_an_alert(
    store: Store, sim: SimProcess
) -> None:
    async with pump_rig(store, sim, 8, unreachable_alert_s=0.5) as rig:
        await rig.until(lambda: rig.state()["polls"] >= 2)
        await rig.sim("faults", drop_reply_probability=1.0)
        await rig.until(lambda: "unreachable" in alert_kinds(rig))
        await rig.until(lambda: rig.state()["state"] == "OFFLINE")
        await rig.sim("faults", drop_reply_probability=0.0)
        await rig.until(lambda: rig.state()["state"] == "IDLE")
        await rig.until(lambda: rig.state()["last_error"] is None)
        assert alert_kinds(rig) == ["unreachable"]  # once per outage


async def test_litres_nobody_journaled_are_an_orphan_and_an_alert(
    store: Store, sim: SimProcess
) -> None:
    """Two stand-alone sales: the first, at the head of the buffer, is a payable (post-pay)
    sale at once; the second waits behind it. The pump is put back in host mode and both
    are collected by another host: the payable sale is gone, and the second one's litres,
    which nobody journaled, show up as a gap in the start totals of the switch's next sale.
    That host's command numbers run into ours, too: the driver must notice."""
    unit = 9
    async with (
        pump_rig(store, sim, unit, idle_poll_s=0.5) as rig,
        ModbusTcpClient("127.0.0.1", sim.port(0), timeout=1.0) as elsewhere,
    ):
        await rig.until(lambda: rig.state()["recovered"] is not None)
        await rig.sim("configure", mode=1)  # stand-alone: the pump authorizes itself
        await rig.sim("customer", nozzle=2, hang_up_after_ml=700)
        await rig.until(lambda: bool(rig.state()["payable"]))
        await rig.sim("customer", nozzle=2, hang_up_after_ml=500)
        point = await rig.until_point(lambda p: len(p["buffer"]) == 2)
        await rig.sim("configure", mode=0)
        ours = rig.driver.statistics()["last_seq"]  # the actor's next CMD_SEQ is ours + 1
        theirs = (ours + 2, ours + 1)
        for seq, sale in zip(theirs, point["buffer"], strict=True):  # collected elsewhere
            block = CommandBlock(seq=seq, code=Command.CLEAR_SALE, sale_seq=sale["seq"])
            await send_command(elsewhere, unit, block)
            await poll_status(elsewhere, unit, acked(seq))
        await rig.authorize(1000)
        await rig.settled(1)
        events = await rig.check_books()
        alerts = alert_kinds(rig)
    (payable,) = of_kind(events, "payable")
    assert payable["moved"]["2"] == 700
    assert of_kind(events, "payable_gone") == [
        {"pump_sale_seq": payable["pump_sale_seq"], "locked_by": None}
    ]
    orphans = of_kind(events, "orphan")
    assert sum(o["moved"]["2"] for o in orphans) == 500
    # The second sale is found at the next AUTHORIZE, unless a poll happened to see it
    # at the head of the buffer between the two clears.
    assert alerts in (["totals_gap"], ["orphan_sale"])
    start = of_kind(events, "auth_requested")[-1]["start_totals"]
    assert orphans[-1]["end_totals"]["2"] == point["totals"][1]["volume_ml"]
    assert "2" not in start or start["2"] == orphans[-1]["end_totals"]["2"]
    assert rig.driver.statistics()["collisions"] == 1  # AUTHORIZE went again, renumbered
    assert len([s for s in point["ledger"] if s["auth_token"] != 0]) == 0


async def test_a_pump_restarted_mid_command_is_not_sent_the_command_again(sim: SimProcess) -> None:
    """AUTHORIZE runs, its reply is lost, the pump restarts: a resend would run again on
    the restarted pump, which has forgotten the CMD_SEQ it acknowledged. The driver reads
    the status before resending, sees BOOT_COUNT move on, and stops with the outcome
    unknown (the actor's BOOT_COUNT rule reconciles from the totals)."""
    unit = 10
    control = await Control.connect(sim.control_port)
    async with ModbusTcpClient("127.0.0.1", sim.port(0), timeout=0.3) as client:
        driver = Gfd1Driver(client, unit, command_timeout=10.0)
        before = await driver.status()
        await control.call("customer", station=0, pump=unit, nozzle=1)
        await control.call("faults", station=0, pump=unit, drop_reply_probability=1.0)

        async def restart_once_resending() -> None:
            while True:
                if driver.statistics()["resends"] >= 1:
                    break
                await trio.sleep(0.01)
            await control.call("power_cycle", station=0, pump=unit)
            await control.call("faults", station=0, pump=unit, drop_reply_probability=0.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart_once_resending)
            with pytest.raises(CommandInterrupted, match="restarted"):
                await driver.authorize(
                    token=0x5EED, nozzle_mask=1, preset_type=PresetType.VOLUME, preset_value=900
                )
        after = await driver.status()
        point = await control.call("snapshot", station=0, pump=unit)
    await control.aclose()
    assert after.boot_count == before.boot_count + 1
    assert after.fp_state not in (FPState.AUTHORIZED, FPState.FUELLING)
    assert after.cur_auth_token != 0x5EED  # not authorized again after the restart
    # It ran once, before the restart (the customer fuelled until the power went), never after.
    assert [s["end_reason"] for s in point["ledger"]] in ([], [EndReason.POWER_LOSS])
