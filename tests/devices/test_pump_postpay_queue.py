"""A stand-alone sale that ends behind an unpaid one is journaled, once, with or without a
switch SIGKILL between the two sales.

Only the head of the pump's payable buffer can be read (GFD-1). When the first customer
never pays (a 503 at the pay step in the load test), the second sale would never reach
the head, and the journal would miss its litres while the pump's ledger and totalizers
have them. The actor journals it from the point's display instead (``payable``, with its
own pump sale number), and does not journal it again when it does reach the head.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from devices.gfd1 import FPState
from devices.pump import CollectSale, LockSale, PayableSale, PayableSales, SaleNotPayable
from switch.store import Store
from switch.store.journal import RecordedEvent
from tests.devices.sim_support import SimProcess
from tests.devices.test_pump_actor import control, harness, journal_of, pump_db
from tests.devices.test_pump_commands import Rig, kinds, of_kind
from tests.devices.test_pump_postpay import SAFE, open_rig, until_payable
from tests.devices.test_pump_postpay_crash import postpay

__all__ = ["pump_db"]  # a fixture shared with test_pump_actor

STREAM = "pump:s0.p1"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A fresh simulator per test (two points), at five times real speed."""
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "2", "--port-base", "0",
        "--control-port", "0", "--state", str(tmp_path / "state.json"), "--seed", "9",
        "--speed", "5",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


def journaled_volumes(events: list[RecordedEvent]) -> dict[int, int]:
    """Per pump sale number, the volume journaled as ``payable`` (each number once)."""
    out: dict[int, int] = {}
    for payload in of_kind(events, "payable"):
        assert payload["pump_sale_seq"] not in out, "a sale journaled twice"
        out[payload["pump_sale_seq"]] = payload["volume_ml"]
    return out


async def until_payables(rig: Rig, count: int) -> tuple[PayableSale, ...]:
    with trio.fail_after(SAFE):
        while True:
            payable: tuple[PayableSale, ...] = await rig.call(PayableSales())
            if len(payable) >= count:
                return payable
            await trio.sleep(0.02)


async def until_buffered(sim: SimProcess, count: int, unit: int = 1) -> list[dict[str, Any]]:
    with trio.fail_after(SAFE):
        while True:
            snapshot = await control(sim, "snapshot", station=0, pump=unit)
            buffer: list[dict[str, Any]] = snapshot["buffer"]
            if len(buffer) >= count and snapshot["status"]["fp_state"] == FPState.COMPLETED:
                return buffer
            await trio.sleep(0.05)


async def test_a_sale_behind_an_unpaid_one_is_journaled_and_paid_in_turn(
    store: Store, sim: SimProcess
) -> None:
    first, second = "O" + secrets.token_hex(8).upper(), "O" + secrets.token_hex(8).upper()
    async with open_rig(store, sim, 2) as rig:
        await rig.sim("configure", mode=1)  # stand-alone: the pump authorizes itself
        await rig.sim("customer", nozzle=1, hang_up_after_ml=1200)
        (unpaid,) = await until_payable(rig)
        await rig.sim("customer", nozzle=2, hang_up_after_ml=1500)  # nobody paid the first
        head, behind = await until_payables(rig, 2)
        buffer = (await rig.point())["buffer"]
        assert [(s["seq"], s["volume_ml"]) for s in buffer] == [
            (head.pump_sale_seq, 1200),
            (behind.pump_sale_seq, 1500),
        ]
        assert (behind.nozzle, behind.amount_fen) == (2, buffer[1]["amount_fen"])
        with pytest.raises(SaleNotPayable, match="head"):
            await rig.call(LockSale(behind.pump_sale_seq, second))  # not its turn yet
        for order, sale in ((first, head), (second, behind)):
            await rig.call(LockSale(sale.pump_sale_seq, order))
            await rig.call(CollectSale(sale.pump_sale_seq, order))
        point = await rig.point()
        await rig.sim("configure", mode=0)
        events = await rig.events()
    assert unpaid == head
    assert point["buffer"] == []
    ledger = {s["seq"]: s["volume_ml"] for s in point["ledger"]}
    assert journaled_volumes(events) == ledger
    assert not of_kind(events, "orphan") and not of_kind(events, "alert")
    assert [p["order_id"] for p in of_kind(events, "collected")] == [first, second]
    assert kinds(events).count("payable") == 2


@pytest.mark.parametrize("killed", ["between the sales", "after locking the first"])
def test_a_sale_sold_while_the_switch_was_down_is_journaled_on_restart(
    pump_db: str, sim: SimProcess, killed: str
) -> None:
    assert harness(pump_db, sim, STREAM).returncode == 0  # first contact: totals known
    trio.run(lambda: control(sim, "configure", station=0, pump=1, mode=1))  # stand-alone
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=1, hang_up_after_ml=1800))
    trio.run(until_buffered, sim, 1)
    if killed == "between the sales":
        # The actor journals the first sale, then the switch is gone (nothing pending).
        assert postpay(pump_db, sim).returncode == 0
    else:
        # The first customer's order dies right after it took the sale (SIGKILL).
        crashed = postpay(pump_db, sim, "O00000000000000A1", crash="pump.after_lock_requested")
        assert crashed.returncode == -9, crashed.stderr
    trio.run(lambda: control(sim, "customer", station=0, pump=1, nozzle=2, hang_up_after_ml=900))
    buffer = trio.run(until_buffered, sim, 2)

    restarted = postpay(pump_db, sim)  # init: the restart rules, then exit
    assert restarted.returncode == 0, restarted.stderr
    events = trio.run(journal_of, pump_db, STREAM)
    assert journaled_volumes(events) == {s["seq"]: s["volume_ml"] for s in buffer}
    queued = of_kind(events, "payable")[1]
    assert (queued["nozzle"], queued["amount_fen"], queued["queued"]) == (
        2,
        buffer[1]["amount_fen"],
        True,
    )
    assert not of_kind(events, "orphan") and not of_kind(events, "alert")
    again = postpay(pump_db, sim)  # a second restart journals nothing new
    assert again.returncode == 0, again.stderr
    assert len(trio.run(journal_of, pump_db, STREAM)) == len(events)
