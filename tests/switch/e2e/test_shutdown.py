"""Graceful stop and drain, end to end: ``fuelswitch serve`` gets SIGTERM with orders in every
phase, exits 0 within its grace, and after a restart every order still ends exactly once with
its books settled (one capture for the net amount, holds released, providers' ledgers and the
pump's totalizers agreeing: :func:`tests.switch.e2e.checks.check_settled`).

Parked orders (a customer yet to pay, a pump authorized and waiting for the nozzle, a sale
still fuelling when the grace runs out) are left as they are and resumed by recovery; orders
under way (a capture at the provider, a sale that ends within the grace) finish before the
process exits. The drain without a stop is driven in-process through ``SwitchProcess.drain``,
the method the admin socket calls.

Each test leaves its pumps idle for the next one (what it left fuelling is hung up). At the end,
pure checks of what a drain waits for, and the signal plumbing (ask, hurry, cancel) with a
service of its own.
"""

from __future__ import annotations

import os
import secrets
import signal
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import pytest
import trio

from ops.process import serve_until_signal
from switch.config import load_config
from switch.drain import StopPlan
from switch.orders import Activity, Order, OrderData, OrderState, activity
from switch.orders.model import HoldAttempt, SettleStep
from switch.server import SwitchProcess
from switch.store import Database, Store

from .checks import PumpMark, check_settled, mark_pump
from .client import SAFE, PumpSim, SwitchApi, eventually, pay_hold
from .harness import SwitchProc, World

PRESET_FEN: Final = 3000  # 30 yuan: about 3.8 L of 92#
LONG_PRESET_FEN: Final = 100_000  # about 127 L: fuels until someone hangs up
EXIT_BOUND_S: Final = 45.0  # added to the grace: a timeout, never a measurement


def _switch(world: World) -> SwitchProc:
    assert world.switch is not None
    return world.switch


def _key() -> str:
    return secrets.token_hex(8)


async def _create(api: SwitchApi, method: str, pump: int, preset: int = PRESET_FEN) -> str:
    reply = await api.create_order(method, pump, preset, key=_key())
    assert reply.status_code == 201, reply.text
    order_id: str = reply.json()["id"]
    return order_id


async def _authorized(world: World, api: SwitchApi, method: str, pump: int, preset: int) -> str:
    """An order paid by its customer, its pump authorized and waiting for the nozzle."""
    order_id = await _create(api, method, pump, preset)
    await pay_hold(world, api, order_id)
    await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
    return order_id


async def _fuelling(world: World, api: SwitchApi, pumps: PumpSim, method: str, pump: int) -> str:
    """An order whose sale is flowing and keeps flowing until the pump is hung up."""
    order_id = await _authorized(world, api, method, pump, LONG_PRESET_FEN)
    await pumps.call("customer", station=0, pump=pump, nozzle=1)
    await api.wait_order(order_id, lambda v: v["state"] == "fuelling", "fuelling")
    return order_id


async def _refused_while_draining(api: SwitchApi, busy_pump: int) -> None:
    """Until the drain is on, an order on a pump with a live order is refused as busy (409,
    nothing created); once it is on, every new order is refused with 503."""
    seen: list[int] = []
    with trio.move_on_after(SAFE):
        while True:
            reply = await api.create_order("wechatpay", busy_pump, PRESET_FEN, key=_key())
            seen.append(reply.status_code)
            if reply.status_code == 503:
                assert reply.headers["content-type"].startswith("application/problem+json")
                assert set(seen[:-1]) <= {409}, seen
                return
            assert reply.status_code == 409, reply.text
            await trio.sleep(0.05)
    raise AssertionError(f"never refused as draining: {seen}")


async def _exit_status(world: World, within_s: float) -> int:
    switch = _switch(world)
    status = await trio.to_thread.run_sync(switch.wait_exit, within_s)
    if status is None:
        switch.kill()
        raise AssertionError(f"the switch did not exit within {within_s}s\n{switch.log_tail()}")
    return status


def _draining(process: SwitchProcess) -> bool:
    return process.draining  # read again: a plain attribute read would stay narrowed


async def _row(db: Database, order_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT state, terminal FROM orders WHERE id = $1", order_id)
    assert row is not None, order_id
    return dict(row)


async def _settled(
    db: Database, world: World, pumps: PumpSim, api: SwitchApi, mark: PumpMark, order_id: str
) -> dict[str, Any]:
    view = await api.wait_terminal(order_id)
    assert view["state"] == "completed", view
    return await check_settled(db, world, pumps, mark, order_id)


async def test_sigterm_finishes_what_moves_parks_the_rest_and_recovery_ends_them(
    world: World, store: Store, pumps: PumpSim, http: httpx.AsyncClient
) -> None:
    grace_s = 8.0
    world.set_grace(grace_s)
    switch = _switch(world)
    switch.start()
    api = SwitchApi(world, http, f"c-{secrets.token_hex(4)}")
    marks = {pump: await mark_pump(pumps, pump) for pump in (1, 2, 3, 4)}
    alipay = world.process_of("alipay-main").control
    try:
        # 1: the customer has not paid yet; 2: paid, nobody at the nozzle; 3: fuelling
        waiting_pay = await _create(api, "wechatpay", 1)
        await api.wait_order(waiting_pay, lambda v: v["payment"] is not None, "a hold")
        authorized = await _authorized(world, api, "unionpay", 2, PRESET_FEN)
        fuelling = await _fuelling(world, api, pumps, "wechatpay", 3)
        # 4: the sale has ended and its capture is at a slow provider when the signal comes
        completing = await _authorized(world, api, "alipay", 4, PRESET_FEN)
        await alipay.aset_faults("alipay", merge=True, latency_ms=1500)
        await pumps.customer(4, 600)
        await api.wait_order(completing, lambda v: v["state"] == "capturing", "capturing")

        switch.signal(signal.SIGTERM)
        await _refused_while_draining(api, busy_pump=1)
        assert await _exit_status(world, grace_s + EXIT_BOUND_S) == 0, switch.log_tail()
    finally:
        await alipay.aset_faults("alipay", merge=True, latency_ms=0)

    # the capture under way finished before the exit; the others were parked as they were
    assert await _row(store.db, completing) == {"state": "completed", "terminal": True}
    assert (await _row(store.db, waiting_pay))["state"] == "holding"
    assert (await _row(store.db, authorized))["state"] == "authorized"
    assert (await _row(store.db, fuelling))["state"] == "fuelling"

    switch.start()
    try:
        await pay_hold(world, api, waiting_pay)
        await api.wait_order(waiting_pay, lambda v: v["state"] == "authorized", "authorized")
        await pumps.customer(1, 1000)
        await pumps.customer(2, 800)
        await pumps.call("hang_up", station=0, pump=3)
        for pump, order_id in ((1, waiting_pay), (2, authorized), (3, fuelling), (4, completing)):
            await _settled(store.db, world, pumps, api, marks[pump], order_id)
        assert switch.stop() == 0, switch.log_tail()
    finally:
        if switch.running:
            switch.stop()


async def test_a_sale_that_ends_within_the_grace_is_settled_before_the_exit(
    world: World, store: Store, pumps: PumpSim, http: httpx.AsyncClient
) -> None:
    grace_s = 60.0
    world.set_grace(grace_s)
    switch = _switch(world)
    switch.start()
    api = SwitchApi(world, http, f"c-{secrets.token_hex(4)}")
    mark = await mark_pump(pumps, 1)
    order_id = await _authorized(world, api, "unionpay", 1, 10_000)
    await pumps.customer(1, 6000)  # a few seconds of flow: still fuelling when the signal comes
    await api.wait_order(order_id, lambda v: v["state"] == "fuelling", "fuelling")
    switch.signal(signal.SIGTERM)
    assert await _exit_status(world, grace_s + EXIT_BOUND_S) == 0, switch.log_tail()
    # settled while the switch drained: terminal before any restart
    assert await _row(store.db, order_id) == {"state": "completed", "terminal": True}
    await check_settled(store.db, world, pumps, mark, order_id)


async def test_a_second_signal_ends_the_wait(
    world: World, store: Store, pumps: PumpSim, http: httpx.AsyncClient
) -> None:
    grace_s = 300.0  # the first signal alone would wait minutes for the sale
    world.set_grace(grace_s)
    switch = _switch(world)
    switch.start()
    api = SwitchApi(world, http, f"c-{secrets.token_hex(4)}")
    mark = await mark_pump(pumps, 2)
    order_id = await _fuelling(world, api, pumps, "alipay", 2)
    switch.signal(signal.SIGTERM)
    await _refused_while_draining(api, busy_pump=2)
    switch.signal(signal.SIGINT)  # another number: trio would merge a second SIGTERM
    assert await _exit_status(world, EXIT_BOUND_S) == 0, switch.log_tail()
    assert (await _row(store.db, order_id))["state"] == "fuelling"

    world.set_grace(10.0)
    switch.start()
    try:
        await pumps.call("hang_up", station=0, pump=2)
        await _settled(store.db, world, pumps, api, mark, order_id)
        assert switch.stop() == 0, switch.log_tail()
    finally:
        if switch.running:
            switch.stop()


async def test_drain_refuses_new_orders_lets_the_others_finish_and_resumes(
    world: World, store: Store, pumps: PumpSim, http: httpx.AsyncClient
) -> None:
    """In process, as the admin socket's ``drain`` calls it."""
    switch = _switch(world)
    # the config as ``fuelswitch serve`` reads it (notify URLs derive from the HTTP section)
    process = SwitchProcess(load_config(switch.config_path, env=switch.env))
    api = SwitchApi(world, http, f"c-{secrets.token_hex(4)}")
    marks = {pump: await mark_pump(pumps, pump) for pump in (3, 4)}
    async with trio.open_nursery() as nursery:
        switch.ready = await nursery.start(process.run)  # the API's URL
        order_id = await _authorized(world, api, "alipay", 3, 10_000)
        await pumps.customer(3, 6000)  # a few seconds of flow: still fuelling when drained
        await api.wait_order(order_id, lambda v: v["state"] == "fuelling", "fuelling")

        process.drain(True)
        assert process.draining is True
        assert process.in_flight_orders() == 1
        reply = await api.create_order("wechatpay", 4, PRESET_FEN, key=_key())
        assert reply.status_code == 503, reply.text
        await _settled(store.db, world, pumps, api, marks[3], order_id)

        async def in_flight() -> int:
            return process.in_flight_orders()

        await eventually(in_flight, lambda n: n == 0, "no order in flight")

        process.drain(False)
        assert _draining(process) is False
        second = await _create(api, "wechatpay", 4)
        assert process.in_flight_orders() == 1, process.order_census()
        assert (await api.cancel(second)).status_code == 200
        view = await api.wait_terminal(second)
        assert view["state"] == "cancelled", view
        await check_settled(store.db, world, pumps, marks[4], second)

        process.request_stop()
    assert process.drain_report is not None
    assert process.drain_report.parked == 0


# -- what a drain waits for (pure) ------------------------------------------------------------

_SENT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
_ORDER = Order(OrderData("O1", "c1", "s001", 1, "prepay", "alipay", "2088000000000001"))


def _hold(outcome: str | None) -> HoldAttempt:
    return HoldAttempt(1, "O1H1", "alipay-main", "alipay", 3000, _SENT, outcome=outcome)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (None, Activity.MOVING),  # its actor is still reading the journal
        (_ORDER, Activity.MOVING),
        (replace(_ORDER, state=OrderState.HOLDING, holds=(_hold("pending"),)), Activity.WAITING),
        (replace(_ORDER, state=OrderState.HOLDING, holds=(_hold(None),)), Activity.MOVING),
        (replace(_ORDER, state=OrderState.HOLDING, holds=(_hold("unknown"),)), Activity.MOVING),
        (
            replace(
                _ORDER, state=OrderState.HOLDING, holds=(_hold("pending"),), cancel_requested=True
            ),
            Activity.MOVING,  # the hold is being closed
        ),
        (replace(_ORDER, state=OrderState.AUTHORIZED), Activity.WAITING),
        (replace(_ORDER, state=OrderState.AUTHORIZED, failure="x"), Activity.MOVING),
        (replace(_ORDER, state=OrderState.FUELLING), Activity.FUELLING),
        (replace(_ORDER, state=OrderState.CAPTURING), Activity.MOVING),
        (replace(_ORDER, state=OrderState.COLLECTING), Activity.MOVING),
        (replace(_ORDER, state=OrderState.COMPLETED), Activity.DONE),
        (
            replace(
                _ORDER,
                state=OrderState.COMPLETED,
                refunds=(SettleStep("O1F3", 3, 100, _SENT),),
            ),
            Activity.MOVING,  # a refund is still out
        ),
        (replace(_ORDER, state=OrderState.FAILED), Activity.DONE),
    ],
)
def test_what_a_drain_waits_for(order: Order | None, expected: Activity) -> None:
    assert activity(order) is expected


def test_the_grace_keeps_a_share_for_the_stop() -> None:
    assert StopPlan(30.0).wait_s + StopPlan(30.0).reserve_s == 30.0
    assert 0 < StopPlan(30.0).reserve_s < StopPlan(30.0).wait_s
    assert 0 < StopPlan(2.0).reserve_s < StopPlan(2.0).wait_s
    assert StopPlan(0.0).wait_s == 0.0


# -- the signal plumbing of ``fuelswitch serve`` (ops.process), with a service of its own -----


class _Graceful:
    """Stops by itself once asked, unless told to ignore the asking."""

    def __init__(self, *, obeys: bool) -> None:
        self.obeys = obeys
        self.asked: list[bool] = []  # the ``immediate`` of each request
        self.ready = trio.Event()
        self.heard = trio.Event()  # a request came (or the serving ended): renewed per signal
        self._stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[dict[str, Any]]) -> None:
        task_status.started({"ready": True})
        self.ready.set()
        await self._stop.wait()

    def request_stop(self, *, immediate: bool = False) -> None:
        self.asked.append(immediate)
        self.heard.set()
        if self.obeys:
            self._stop.set()


async def _serve(service: _Graceful, signals: list[int]) -> bool:
    forced: list[bool] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            forced.append(await serve_until_signal(service, "test"))
            service.heard.set()

        nursery.start_soon(serve)
        await service.ready.wait()  # the receiver is open: a signal cannot kill pytest now
        for signum in signals:
            service.heard = trio.Event()
            os.kill(os.getpid(), signum)  # one at a time: trio merges a signal still unread
            with trio.fail_after(SAFE):
                await service.heard.wait()
    return forced[0]


async def test_a_signal_asks_a_graceful_service_to_stop_and_it_returns() -> None:
    service = _Graceful(obeys=True)
    assert await _serve(service, [signal.SIGTERM]) is False
    assert service.asked == [False]


async def test_a_second_signal_hurries_and_a_third_cancels() -> None:
    service = _Graceful(obeys=False)
    assert await _serve(service, [signal.SIGTERM, signal.SIGINT, signal.SIGTERM]) is True
    assert service.asked == [False, True]
