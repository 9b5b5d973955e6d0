"""Every admin command against a running ``fuelswitch serve`` with its simulators.

The reads go through :class:`ops.admin.AdminClient` over the switch's real socket; the actions
mostly through the ``fuelswitch ops`` command line (as an operator types them, ``--json``),
and each is checked by its effect: on the pump simulator, on the customer API, on the
database's audit log and on the socket's audit file. Pumps: 1 a sale stopped by the
operator, 2 closed and opened, 3 restarted; 4 takes the orders of the drain test.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from devices.gfd1.states import FPState
from ops.admin import AdminClient, AdminReplyError
from switch.store import Store
from switch.store.alerts import record_alert

from .checks import check_settled, mark_pump
from .client import SAFE, PumpSim, SwitchApi, eventually, pay_hold
from .harness import CHANNELS, PUMPS, ROOT, STATION, SwitchProc, World

STOP_PUMP: Final = 1
CLOSE_PUMP: Final = 2
RESTART_PUMP: Final = 3
DRAIN_PUMP: Final = 4
FUELLING: Final = int(FPState.FUELLING)


@pytest.fixture(scope="module")
def switch(world: World) -> Iterator[SwitchProc]:
    assert world.switch is not None
    world.switch.start()
    try:
        yield world.switch
    finally:
        world.switch.stop()


@pytest.fixture
def socket_path(world: World, switch: SwitchProc) -> Path:
    assert world.config is not None
    return world.config.admin_socket


@pytest.fixture
async def admin(socket_path: Path) -> AsyncIterator[AdminClient]:
    async with await AdminClient.connect(socket_path) as client:
        yield client


@pytest.fixture
def api(world: World, switch: SwitchProc, http: httpx.AsyncClient) -> SwitchApi:
    return SwitchApi(world, http, f"c-{secrets.token_hex(4)}")


def ops(socket_path: Path, *args: str) -> tuple[int, Any, str]:
    """``fuelswitch ops --json ARGS``: exit status, the parsed JSON line, stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "switch.cli", "ops", "--socket", str(socket_path), "--json", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=SAFE,
        check=False,
    )
    out = done.stdout.decode().strip().splitlines()
    return done.returncode, json.loads(out[-1]) if out else None, done.stderr.decode()


async def run_ops(socket_path: Path, *args: str) -> Any:
    status, result, err = await trio.to_thread.run_sync(lambda: ops(socket_path, *args))
    assert status == 0, (args, err)
    return result


async def _create(api: SwitchApi, method: str, pump: int, preset: int = 3000) -> httpx.Response:
    return await api.create_order(method, pump, preset, key=secrets.token_hex(8))


def test_the_socket_is_private(socket_path: Path) -> None:
    assert socket_path.is_socket()
    assert socket_path.stat().st_mode & 0o777 == 0o600


async def test_status_tree_and_actor(admin: AdminClient, switch: SwitchProc) -> None:
    status = await admin.request("status")
    assert status["http"] == switch.url
    assert status["draining"] is False
    database = status["database"]
    assert 1 <= database["size"] <= database["max_size"] and database["idle"] <= database["size"]
    assert database["calls_in_flight"] >= 0 and database["latency_ms"] >= 0
    root = await admin.request("tree")
    names = {c["address"] for c in root["children"]}
    assert {"journal", "stations", "channels", "orders", "sweeper"} <= names
    station = await admin.request("tree", supervisor=f"stations/{STATION}", limit=2)
    assert station["total"] == PUMPS + 1  # and the gateway's connection
    assert len(station["children"]) == 2 and station["next_offset"] == 2
    pump = await admin.request("actor", address=f"stations/{STATION}/p01")
    assert pump["kind"] == "PumpActor" and pump["status"] == "running"
    with pytest.raises(AdminReplyError) as missing:
        await admin.request("actor", address=f"stations/{STATION}/p99")
    assert missing.value.code == "not_found"


async def test_pumps_show_state_and_poll_latency(admin: AdminClient) -> None:
    async def listing() -> dict[str, Any]:
        reply: dict[str, Any] = await admin.request("pumps", station=STATION)
        return reply

    reply = await eventually(
        listing, lambda r: all(p["poll_latency_ms"] for p in r["pumps"]), "poll latencies"
    )
    assert reply["total"] == PUMPS
    assert [p["pump"] for p in reply["pumps"]] == list(range(1, PUMPS + 1))
    for pump in reply["pumps"]:
        assert pump["state"] in ("IDLE", "CALLING", "AUTHORIZED", "FUELLING", "COMPLETED")
        assert pump["poll_latency_ms"]["p99_ms"] >= pump["poll_latency_ms"]["p50_ms"] > 0
    with pytest.raises(AdminReplyError) as unknown:
        await admin.request("pumps", station="nowhere")
    assert unknown.value.code == "not_found"


async def test_channels_list_every_configured_channel(admin: AdminClient) -> None:
    reply = await admin.request("channels")
    rows = {c["name"]: c for c in reply["channels"]}
    assert set(rows) == {plan.name for plan in CHANNELS}
    for row in rows.values():
        assert row["running"] and row["enabled"] and row["health"]
        assert 0.0 <= row["routing_share"] <= 1.0
        assert isinstance(row["fees_mfen"], int)


async def test_a_sale_stopped_by_the_operator_settles_for_what_was_dispensed(
    world: World, api: SwitchApi, pumps: PumpSim, store: Store, socket_path: Path
) -> None:
    mark = await mark_pump(pumps, STOP_PUMP)
    reply = await _create(api, "alipay", STOP_PUMP, preset=50_000)  # 500 yuan: ~63 L
    assert reply.status_code == 201, reply.text
    order_id = reply.json()["id"]
    await pay_hold(world, api, order_id)
    await api.wait_order(order_id, lambda v: v["state"] == "authorized", "authorized")
    await pumps.customer(STOP_PUMP, 60_000)
    await eventually(
        lambda: pumps.snapshot(STOP_PUMP),
        lambda s: s["status"]["fp_state"] == FUELLING and s["status"]["cur_volume_ml"] > 0,
        "fuel flowing",
    )
    stopped = await run_ops(socket_path, "pump", "stop", STATION, str(STOP_PUMP))
    assert stopped["sale_id"] is not None
    view = await api.wait_terminal(order_id)
    assert view["state"] == "completed", view
    assert 0 < view["captured_fen"] < 47_000  # well short of the 60 L the driver wanted
    await check_settled(store.db, world, pumps, mark, order_id)


async def test_close_and_open_a_pump(
    api: SwitchApi, socket_path: Path, admin: AdminClient, store: Store
) -> None:
    closed = await run_ops(socket_path, "pump", "close", STATION, str(CLOSE_PUMP))
    assert closed["open"] is False
    refused = await _create(api, "wechatpay", CLOSE_PUMP)
    assert refused.status_code == 409, refused.text
    await run_ops(socket_path, "pump", "open", STATION, str(CLOSE_PUMP))
    view = await eventually(
        lambda: api.pump(CLOSE_PUMP), lambda v: v["open"] and v["free"], "pump open again"
    )
    assert view["open"]
    actors = [
        r["actor"]
        for r in await store.db.fetch(
            "SELECT actor FROM audit_log WHERE action IN ('pump.close', 'pump.open')"
            " AND target = $1",
            f"{STATION}.p{CLOSE_PUMP:02d}",
        )
    ]
    assert actors == [f"uid:{os.getuid()}"] * 2


async def test_restart_a_pump_actor(admin: AdminClient, socket_path: Path) -> None:
    address = f"stations/{STATION}/p{RESTART_PUMP:02d}"
    before = await admin.request("actor", address=address)
    restarted = await run_ops(socket_path, "restart", address)
    assert restarted["incarnation"] == before["incarnation"] + 1

    async def state() -> Any:
        return (await admin.request("actor", address=address))["state"]

    await eventually(state, lambda s: s["state"] == "IDLE", "the pump polled again")


async def test_set_prices_reaches_the_pumps(
    admin: AdminClient, socket_path: Path, pumps: PumpSim
) -> None:
    applied = await run_ops(socket_path, "prices", "set", STATION, "92=8.123", "95=8.456")
    assert applied["prices"] == {"92": 812_300, "95": 845_600}
    set_id = applied["price_set_id"]

    async def price_sets() -> set[Any]:
        reply = await admin.request("pumps", station=STATION)
        return {p["price_set_id"] for p in reply["pumps"]}

    await eventually(price_sets, lambda ids: ids == {set_id}, "every pump on the new prices")
    with pytest.raises(AdminReplyError) as bad:
        await admin.request("prices.set", station=STATION, prices={"98": 900_000})
    assert bad.value.code == "bad_args"


async def test_a_disabled_channel_takes_no_orders(
    api: SwitchApi, admin: AdminClient, socket_path: Path
) -> None:
    off = await run_ops(socket_path, "channel", "disable", "wechatpay-main", "--reason", "test")
    assert off == {"name": "wechatpay-main", "enabled": False}
    try:
        rows = {c["name"]: c for c in (await admin.request("channels"))["channels"]}
        assert rows["wechatpay-main"]["enabled"] is False
        assert rows["wechatpay-main"]["disabled_reason"] == "test"
        reply = await _create(api, "wechatpay", DRAIN_PUMP)
        assert reply.status_code == 201, reply.text
        order_id = reply.json()["id"]
        view = await api.wait_order(order_id, lambda v: v["payment"] is not None, "a hold")
        assert view["payment"]["channel"] == "wechatpay-backup"
        assert (await api.cancel(order_id)).status_code == 200
        await api.wait_terminal(order_id)
    finally:
        await run_ops(socket_path, "channel", "enable", "wechatpay-main")
    with pytest.raises(AdminReplyError) as unknown:
        await admin.request("channel.disable", name="nope")
    assert unknown.value.code == "not_found"


async def test_drain_refuses_new_orders_and_lists_in_flight_ones(
    api: SwitchApi, admin: AdminClient, socket_path: Path, switch: SwitchProc
) -> None:
    reply = await _create(api, "unionpay", DRAIN_PUMP)
    assert reply.status_code == 201, reply.text
    order_id = reply.json()["id"]
    drained = await run_ops(socket_path, "drain")
    try:
        assert drained["draining"] is True and drained["in_flight_orders"] >= 1
        refused = await _create(api, "unionpay", DRAIN_PUMP)
        assert refused.status_code == 503, refused.text
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{switch.url}/readyz")).status_code == 503
        listed = await admin.request("orders", station=STATION)
        assert order_id in [o["order_id"] for o in listed["orders"]]
        assert (await api.cancel(order_id)).status_code == 200  # in-flight orders carry on
        await api.wait_terminal(order_id)
    finally:
        resumed = await run_ops(socket_path, "drain", "--off")
    assert resumed["draining"] is False
    async with httpx.AsyncClient() as http:
        ready = await eventually(
            lambda: http.get(f"{switch.url}/readyz"), lambda r: r.status_code == 200, "ready"
        )
        assert ready.json()["status"] == "ready"


async def test_alerts_and_metrics(admin: AdminClient, switch: SwitchProc, store: Store) -> None:
    """A forged callback is refused and counted in /metrics; an alert the callback path
    writes (a validly signed callback naming another merchant) is listed by ``alerts``."""
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            f"{switch.url}/callbacks/wechatpay",
            content=b'{"id": "forged"}',
            headers={"Content-Type": "application/json", "Wechatpay-Signature": "AAAA"},
        )
        assert reply.status_code >= 400
        metrics = (await http.get(f"{switch.url}/metrics")).text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith('fuelswitch_callback_verifications_total{provider="wechatpay"')
    ]
    assert counted and all('result="accepted"' not in line for line in counted), counted
    for name in ("fuelswitch_sales_total", "fuelswitch_journal_commit_seconds_bucket"):
        assert name in metrics
    assert 'fuelswitch_mailbox_depth_max{kind="PumpActor"}' in metrics
    await record_alert(
        store.db,
        "callback_rejected",
        severity="critical",
        subject="wechatpay",
        details={"reason": "unknown_merchant", "message": "mchid is not ours"},
    )
    alerts = (await admin.request("alerts", limit=20))["alerts"]
    rejected = next(a for a in alerts if a["kind"] == "callback_rejected")
    assert rejected["source"] == "switch" and rejected["severity"] == "critical"
    assert rejected["detail"] == "mchid is not ours"


async def test_log_level_and_bad_requests(admin: AdminClient, socket_path: Path) -> None:
    assert (await run_ops(socket_path, "log-level", "debug"))["level"] == "debug"
    assert (await run_ops(socket_path, "log-level", "info"))["level"] == "info"
    with pytest.raises(AdminReplyError) as bad:
        await admin.request("log_level", level="chatty")
    assert bad.value.code == "bad_args"
    with pytest.raises(AdminReplyError) as unknown:
        await admin.request("reboot")
    assert unknown.value.code == "unknown_command"
    # garbage on another connection: an error reply, and the switch answers the next one
    stream = await trio.open_unix_socket(str(socket_path))
    await stream.send_all(b"\x00\x00\x00\x03\xc1\xc1\xc1")
    assert b"malformed" in await stream.receive_some(4096)
    await stream.aclose()
    assert (await admin.request("status"))["draining"] is False


def test_every_action_is_in_the_audit_file(world: World, switch: SwitchProc) -> None:
    """Runs last in the module: the actions of the tests above are all in the file."""
    assert world.config is not None
    lines = [json.loads(line) for line in world.config.audit_log.read_text().splitlines()]
    commands = {entry["cmd"] for entry in lines}
    assert {"pump.stop", "pump.close", "pump.open", "restart", "prices.set"} <= commands
    assert {"channel.disable", "channel.enable", "drain", "log_level"} <= commands
    assert all(entry["uid"] == os.getuid() for entry in lines if entry["cmd"])
    assert "status" not in commands  # reads are not actions
