"""End to end over real sockets: ``fuelswitch serve`` against the pump and provider simulators.

Each test plays the customer (the API, the wallet app at the provider simulator, the nozzle at
the pump simulator) and then checks the books of its order from the outside
(:func:`tests.switch.e2e.checks.check_settled`): one capture of the dispensed amount, the rest
of the hold released, the provider's ledger agreeing, the totalizers moved by the sale.

Pumps: 1 prepay, 2 cancel / zero sale / idempotency, 3 failover and live updates, 4 post-pay
(stand-alone mode, set before the switch connects).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, Final

import httpx
import orjson
import pytest
import trio

from switch.store import Store

from .checks import check_settled, mark_pump, order_trades
from .client import SAFE, PumpSim, SwitchApi, eventually, pay_hold, pump_command
from .harness import SwitchProc, World

PREPAY_PUMP: Final = 1
SPARE_PUMP: Final = 2
FAILOVER_PUMP: Final = 3
POSTPAY_PUMP: Final = 4
STAND_ALONE: Final = 1
METHODS: Final = ("wechatpay", "alipay", "unionpay")
PRESET_FEN: Final = 3000  # 30 yuan: about 3.8 L of 92#


@pytest.fixture(scope="module")
def switch(world: World) -> Iterator[SwitchProc]:
    pump_command(
        world.pumps.control_port, "configure", station=0, pump=POSTPAY_PUMP, mode=STAND_ALONE
    )
    assert world.switch is not None
    world.switch.start()
    try:
        yield world.switch
    finally:
        world.switch.stop()


@pytest.fixture
def api(world: World, switch: SwitchProc, http: httpx.AsyncClient) -> SwitchApi:
    return SwitchApi(world, http, f"c-{secrets.token_hex(4)}")


def key() -> str:
    return secrets.token_hex(8)


async def _create(api: SwitchApi, method: str, pump: int, preset: int = PRESET_FEN) -> str:
    reply = await api.create_order(method, pump, preset, key=key())
    assert reply.status_code == 201, reply.text
    order_id: str = reply.json()["id"]
    return order_id


async def _prepaid_sale(
    world: World, api: SwitchApi, pumps: PumpSim, method: str, pump: int, volume_ml: int
) -> dict[str, Any]:
    """Create, pay, fuel ``volume_ml``: the completed order's view."""
    order_id = await _create(api, method, pump)
    await pay_hold(world, api, order_id)
    await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
    await pumps.customer(pump, volume_ml)
    view = await api.wait_terminal(order_id)
    assert view["state"] == "completed", view
    return view


@pytest.mark.parametrize("method", METHODS)
async def test_prepay_captures_the_sale_and_releases_the_rest(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store, method: str
) -> None:
    mark = await mark_pump(pumps, PREPAY_PUMP)
    view = await _prepaid_sale(world, api, pumps, method, PREPAY_PUMP, 1500)
    assert view["volume_ml"] == 1500
    assert view["held_fen"] == PRESET_FEN
    assert view["captured_fen"] == view["gross_fen"] == view["net_fen"] > 0
    assert view["released_fen"] == PRESET_FEN - view["captured_fen"]
    assert view["payment"]["provider"] == method
    trades = await order_trades(world, view["id"])
    assert len(trades) == 1
    trade = trades[0]
    charged = trade["captured_fen"] if trade["kind"] == "preauth" else trade["paid_fen"]
    kept = charged - trade["refunded_fen"]
    assert kept == view["captured_fen"], trade
    await check_settled(store.db, world, pumps, mark, view["id"])
    await api.wait_pump_free(PREPAY_PUMP)


@pytest.mark.parametrize("method", METHODS)
async def test_postpay_pays_the_buffered_sale_and_clears_it(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store, method: str
) -> None:
    mark = await mark_pump(pumps, POSTPAY_PUMP)
    await pumps.customer(POSTPAY_PUMP, 1200)
    sale = (await api.wait_payable(POSTPAY_PUMP))[0]
    assert sale["volume_ml"] == 1200
    reply = await api.pay_pump(method, POSTPAY_PUMP, key=key(), seq=sale["pump_sale_seq"])
    assert reply.status_code == 201, reply.text
    order_id = reply.json()["id"]
    assert reply.json()["flow"] == "postpay"
    await pay_hold(world, api, order_id)
    view = await api.wait_terminal(order_id)
    assert view["state"] == "completed", view
    assert view["volume_ml"] == 1200
    assert view["captured_fen"] == view["gross_fen"] == sale["amount_fen"]
    assert await pumps.wait_buffered(POSTPAY_PUMP, 0) == []
    assert (await api.pump(POSTPAY_PUMP))["payable"] == []
    await check_settled(store.db, world, pumps, mark, order_id)


async def test_zero_sale_voids_and_releases_everything(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store
) -> None:
    mark = await mark_pump(pumps, SPARE_PUMP)
    order_id = await _create(api, "alipay", SPARE_PUMP)
    await pay_hold(world, api, order_id)
    await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
    await pumps.call("lift", station=0, pump=SPARE_PUMP, nozzle=1)
    await pumps.call("hang_up", station=0, pump=SPARE_PUMP, nozzle=1)
    view = await api.wait_terminal(order_id)
    assert view["state"] == "voided", view
    assert view["captured_fen"] == 0
    assert view["released_fen"] == view["held_fen"] == PRESET_FEN
    await check_settled(store.db, world, pumps, mark, order_id)
    await api.wait_pump_free(SPARE_PUMP)


@pytest.mark.parametrize("method", ["unionpay", "wechatpay"])
async def test_cancel_after_authorization_releases_the_hold(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store, method: str
) -> None:
    mark = await mark_pump(pumps, SPARE_PUMP)
    order_id = await _create(api, method, SPARE_PUMP)
    await pay_hold(world, api, order_id)
    await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
    reply = await api.cancel(order_id)
    assert reply.status_code == 200, reply.text
    view = await api.wait_terminal(order_id)
    assert view["state"] == "cancelled", view
    assert view["captured_fen"] == 0
    assert view["released_fen"] == view["held_fen"] == PRESET_FEN
    await check_settled(store.db, world, pumps, mark, order_id)
    await api.wait_pump_free(SPARE_PUMP)


async def test_cancel_before_paying_closes_the_hold(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store
) -> None:
    mark = await mark_pump(pumps, SPARE_PUMP)
    order_id = await _create(api, "wechatpay", SPARE_PUMP)
    await api.wait_order(order_id, lambda v: v["payment"] is not None, "a hold")
    reply = await api.cancel(order_id)
    assert reply.status_code == 200, reply.text
    view = await api.wait_terminal(order_id)
    assert view["state"] == "cancelled", view
    assert view["held_fen"] == view["captured_fen"] == 0
    (trade,) = await order_trades(world, order_id)
    assert trade["state"] == "CLOSED", trade
    await check_settled(store.db, world, pumps, mark, order_id)
    await api.wait_pump_free(SPARE_PUMP)


async def test_failover_to_the_backup_channel(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store
) -> None:
    """wechatpay-main answers every request with a 5xx: the hold is unknown, not failed. Once
    the main provider answers again its query says it never saw the hold: only then does the
    order move on, to wechatpay-backup, where the customer pays."""
    main = world.providers["main"].control

    async def attempt_state(key: str) -> str | None:
        state: str | None = await store.db.fetchval(
            "SELECT state FROM payment_attempts WHERE idempotency_key = $1", key
        )
        return state

    mark = await mark_pump(pumps, FAILOVER_PUMP)
    await main.aset_faults("wechatpay", error_rate=1.0, error_status=503)
    try:
        order_id = await _create(api, "wechatpay", FAILOVER_PUMP)
        await eventually(
            lambda: attempt_state(f"{order_id}H1"), lambda s: s == "unknown", "an unknown hold"
        )
    finally:
        await main.aset_faults("wechatpay")
    view = await api.wait_order(
        order_id,
        lambda v: v["payment"] is not None and v["payment"]["channel"] == "wechatpay-backup",
        "a hold on wechatpay-backup",
    )
    await pay_hold(world, api, order_id)
    await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
    await pumps.customer(FAILOVER_PUMP, 800)
    view = await api.wait_terminal(order_id)
    assert view["state"] == "completed", view
    assert view["attempts"] == 2
    assert view["routing"]["channel"] == "wechatpay-backup"
    assert view["routing"]["exclude"] == ["wechatpay-main"]
    first = await store.db.fetchval(
        "SELECT state FROM payment_attempts WHERE idempotency_key = $1", f"{order_id}H1"
    )
    assert first == "failed"
    trades = await order_trades(world, order_id)
    assert [t["merchant_id"] for t in trades] == [
        world.channel("wechatpay-backup").config.merchant_id
    ]
    await check_settled(store.db, world, pumps, mark, order_id)
    await api.wait_pump_free(FAILOVER_PUMP)


async def test_create_order_idempotency_key_replay_and_conflict(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store
) -> None:
    mark = await mark_pump(pumps, SPARE_PUMP)
    k = key()
    first = await api.create_order("alipay", SPARE_PUMP, PRESET_FEN, key=k)
    assert first.status_code == 201, first.text
    again = await api.create_order("alipay", SPARE_PUMP, PRESET_FEN, key=k)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    other = await api.create_order("alipay", SPARE_PUMP, PRESET_FEN + 100, key=k)
    assert other.status_code == 422, other.text
    assert other.json()["type"].endswith("idempotency-key-reused"), other.text
    fresh = await api.create_order("alipay", SPARE_PUMP, PRESET_FEN, key=key())
    assert fresh.status_code == 409, fresh.text  # one live order per pump
    orders = await store.db.fetchval(
        "SELECT count(*) FROM orders WHERE customer_id = $1", api.customer
    )
    assert orders == 1
    order_id = first.json()["id"]
    assert (await api.cancel(order_id)).status_code == 200
    assert (await api.wait_terminal(order_id))["state"] == "cancelled"
    await check_settled(store.db, world, pumps, mark, order_id)


async def test_concurrent_refunds_never_exceed_the_capture(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store
) -> None:
    mark = await mark_pump(pumps, PREPAY_PUMP)
    view = await _prepaid_sale(world, api, pumps, "alipay", PREPAY_PUMP, 1000)
    order_id, captured = view["id"], view["captured_fen"]
    share = captured * 2 // 3
    replies: list[httpx.Response] = []

    async def refund() -> None:
        replies.append(await api.refund(order_id, share, key=key()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refund)
        nursery.start_soon(refund)
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [202, 409], [r.text for r in replies]
    view = await api.wait_order(
        order_id, lambda v: v["refunded_fen"] == share, f"{share} fen refunded"
    )
    assert view["captured_fen"] == captured
    (trade,) = await order_trades(world, order_id)
    assert trade["refunded_fen"] == share <= trade["captured_fen"] == captured, trade
    await check_settled(store.db, world, pumps, mark, order_id)
    await api.wait_pump_free(PREPAY_PUMP)


async def test_live_updates_follow_the_order_to_its_end(
    world: World, api: SwitchApi, pumps: PumpSim, http: httpx.AsyncClient
) -> None:
    order_id = await _create(api, "unionpay", FAILOVER_PUMP)
    seen: list[dict[str, Any]] = []

    async def follow(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        url = f"{api.url}/v1/orders/{order_id}/events"
        async with http.stream("GET", url, headers=api.headers(), timeout=SAFE) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            task_status.started()
            event = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "order":
                    seen.append(orjson.loads(line.removeprefix("data: ")))

    with trio.fail_after(SAFE):
        async with trio.open_nursery() as nursery:
            await nursery.start(follow)
            await pay_hold(world, api, order_id)
            await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
            await pumps.customer(FAILOVER_PUMP, 600)
    # the stream ended by itself, after the terminal view
    states = [v["state"] for v in seen]
    assert seen and seen[-1]["terminal"] and states[-1] == "completed", states
    assert not any(v["terminal"] for v in seen[:-1]), states
    assert {"authorized", "completed"} <= set(states), states
    assert seen[-1] == await api.order(order_id)
    await api.wait_pump_free(FAILOVER_PUMP)
