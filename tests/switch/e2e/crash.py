"""One crash case: arm a point, drive an order into it, let the switch SIGKILL itself, start it
again unarmed, and check that the order finished with its money settled exactly once.

The driver is at the nozzle before the order exists (prepay) or has fuelled already
(post-pay), and every provider pays holds by itself (``auto_pay``), so after the restart
nothing but the switch has to act: what the test checks is what recovery made of it.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final

import httpx
import trio

from switch.store import Database

from .checks import check_settled, mark_pump
from .client import SAFE, PumpSim, SwitchApi
from .harness import World

__all__ = ["METHODS", "CrashCase", "enable_auto_pay", "run_postpay_case", "run_prepay_case"]

METHODS: Final = ("wechatpay", "alipay", "unionpay")
PRESET_FEN: Final = 2000


@dataclass(frozen=True, slots=True)
class CrashCase:
    point: str
    method: str
    pump: int
    volume_ml: int = 700
    # The pump journaled ``auth_requested`` but never wrote AUTHORIZE: its restart rule
    # ("open sale, pump not authorized, totals unchanged") voids the sale, so the order ends
    # voided with its hold released, and the driver has to start again.
    may_void: bool = False


def enable_auto_pay(world: World) -> None:
    """Every hold at either provider simulator is paid by the customer at once."""
    for process in world.providers.values():
        for provider in METHODS:
            process.control.set_faults(provider, merge=True, auto_pay=True, auto_pay_delay_ms=50)


async def _crash(world: World, case: CrashCase) -> None:
    """Wait for the armed switch to kill itself at ``case.point``, then start it unarmed."""
    switch = world.switch
    assert switch is not None
    status = await trio.to_thread.run_sync(switch.wait_exit, SAFE)
    if status is None:
        switch.kill()
        raise AssertionError(f"{case}: the crash point was never reached\n{switch.log_tail()}")
    assert status == -signal.SIGKILL, f"{case}: the switch exited with {status}"
    switch.start()


async def _order_of(db: Database, customer: str) -> str:
    order_id = await db.fetchval(
        "SELECT id FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 1", customer
    )
    assert isinstance(order_id, str), f"no order of {customer}"
    return order_id


async def _asked_again(request: Awaitable[httpx.Response], order_id: str) -> None:
    """The customer, who lost the answer with the switch, asks again with the same key: the
    order the first request made (replayed, or found by the retry that took the dead
    process's claim over), not ``idempotency-request-in-progress`` for a day."""
    reply = await request
    assert reply.status_code == 201, reply.text
    assert reply.json()["id"] == order_id, reply.text


async def run_prepay_case(
    world: World, db: Database, pumps: PumpSim, http: httpx.AsyncClient, case: CrashCase
) -> None:
    switch = world.switch
    assert switch is not None
    mark = await mark_pump(pumps, case.pump)
    await pumps.customer(case.pump, case.volume_ml)
    switch.start([case.point])
    api = SwitchApi(world, http, f"c-{secrets.token_hex(4)}")
    key = secrets.token_hex(8)
    try:
        # the switch may die under the request: the order is then found by its customer
        with contextlib.suppress(httpx.TransportError):
            reply = await api.create_order(case.method, case.pump, PRESET_FEN, key=key)
            assert reply.status_code == 201, reply.text
        await _crash(world, case)
        order_id = await _order_of(db, api.customer)
        await _asked_again(api.create_order(case.method, case.pump, PRESET_FEN, key=key), order_id)
        view = await api.wait_terminal(order_id)
        if case.may_void and view["state"] == "voided":
            assert view["volume_ml"] == view["captured_fen"] == 0, view
            await pumps.call("hang_up", station=0, pump=case.pump)  # the driver gives up
        else:
            assert view["state"] == "completed", f"{case}: {view}\n{switch.log_tail()}"
            assert view["volume_ml"] == case.volume_ml, view
        order = await check_settled(db, world, pumps, mark, order_id)
        assert order["released_fen"] == PRESET_FEN - order["captured_fen"]
        await api.wait_pump_free(case.pump)
    finally:
        switch.stop()


async def run_postpay_case(
    world: World, db: Database, pumps: PumpSim, http: httpx.AsyncClient, case: CrashCase
) -> None:
    switch = world.switch
    assert switch is not None
    mark = await mark_pump(pumps, case.pump)
    await pumps.customer(case.pump, case.volume_ml)
    await pumps.wait_buffered(case.pump, 1)
    switch.start([case.point])
    api = SwitchApi(world, http, f"c-{secrets.token_hex(4)}")
    key = secrets.token_hex(8)
    try:
        payable = await api.wait_payable(case.pump)
        seq = payable[0]["pump_sale_seq"]
        with contextlib.suppress(httpx.TransportError):
            reply = await api.pay_pump(case.method, case.pump, key=key, seq=seq)
            assert reply.status_code == 201, reply.text
        await _crash(world, case)
        order_id = await _order_of(db, api.customer)
        await _asked_again(api.pay_pump(case.method, case.pump, key=key, seq=seq), order_id)
        view = await api.wait_terminal(order_id)
        assert view["state"] == "completed", f"{case}: {view}\n{switch.log_tail()}"
        assert view["volume_ml"] == case.volume_ml, view
        await pumps.wait_buffered(case.pump, 0)
        await check_settled(db, world, pumps, mark, order_id)
    finally:
        switch.stop()
