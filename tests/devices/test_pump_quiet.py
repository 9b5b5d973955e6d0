"""Quiet polling: a pump at rest is polled every ``quiet_poll_s`` instead of ``idle_poll_s``
until something happens (a command, or a poll that shows the point changed). The rules as
arithmetic, then a PumpActor against the simulator over Modbus TCP."""

from __future__ import annotations

import dataclasses
import math

import trio

from devices.gfd1 import FPState, PresetType
from devices.pump import Authorize
from devices.pump_base import rest_interval, status_changed
from switch.store import Store
from tests.devices.sim_support import SimProcess
from tests.devices.test_gfd1_codec import status
from tests.devices.test_pump_postpay import SAFE, open_rig, order_id
from tests.devices.test_pump_postpay import sim as sim  # the module's simulator fixture


def test_the_rest_interval_turns_quiet_after_nothing_happened_for_a_while() -> None:
    assert rest_interval(1.0, 3.0, 30.0, -math.inf, 5.0) == 3.0  # never changed: quiet
    assert rest_interval(1.0, 3.0, 30.0, 100.0, 129.9) == 1.0
    assert rest_interval(1.0, 3.0, 30.0, 100.0, 130.0) == 3.0
    assert rest_interval(1.0, None, 30.0, -math.inf, 5.0) == 1.0  # quiet polling off


def test_a_change_is_a_new_state_buffer_price_or_error_not_live_figures() -> None:
    at_rest = status(fp_state=FPState.IDLE, unpaid_count=0)
    assert status_changed(None, at_rest)
    assert not status_changed(at_rest, dataclasses.replace(at_rest, heartbeat=7))
    for change in (
        {"fp_state": FPState.CALLING},
        {"unpaid_count": 1},
        {"price_set_id": 8},
    ):
        assert status_changed(at_rest, dataclasses.replace(at_rest, **change)), change
    fuelling = status(fp_state=FPState.FUELLING)
    assert not status_changed(fuelling, dataclasses.replace(fuelling, cur_volume_ml=40_000))


async def test_a_pump_at_rest_is_polled_less_until_a_command_wakes_it(
    store: Store, sim: SimProcess
) -> None:
    async with open_rig(
        store, sim, 2, idle_poll_s=0.02, quiet_poll_s=60.0, quiet_after_s=0.5
    ) as rig:
        await rig.until(lambda: rig.state()["recovered"] is not None)
        quiet_polls = rig.state()["polls"]
        await trio.sleep(1.0)  # 50 polls at the idle rate
        assert rig.state()["polls"] == quiet_polls  # at rest since it started: quiet

        # A customer at the nozzle and the switch's AUTHORIZE: polled at the active rate.
        await rig.sim("customer", nozzle=1, hang_up_after_ml=300)
        sale = f"{order_id()}S"
        rig.sale_ids.append(sale)
        await rig.call(Authorize(sale, PresetType.VOLUME, 300, nozzle_mask=1))
        with trio.fail_after(SAFE):
            await rig.until(lambda: rig.state()["polls"] >= quiet_polls + 10)
        await rig.settled(1)
        # At rest again: after quiet_after_s of nothing new, quiet again.
        await trio.sleep(2.0)
        polls = rig.state()["polls"]
        await trio.sleep(1.0)
        assert rig.state()["polls"] == polls
