"""The framework over real HTTP: the service serving a minimal provider simulator, the control
API, the fault middleware, auto-pay and callbacks fired by the customer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import pytest
import trio
import trio.testing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.model import Provider
from channels.sim import (
    RETRY_SCHEDULES,
    CustomerError,
    Delivery,
    ProviderSim,
    SimMerchant,
    Trade,
)
from channels.sim.service import ProviderServiceConfig, ProviderSimService
from tests.channels.callback_receiver import Receiver
from tests.channels.provider_sim import ControlClient, ControlError

SAFE = 10.0  # a bound for what must happen, never a measurement
MCH, MCH2 = "1900000109", "1900000110"


class EchoSim(ProviderSim):
    """The smallest provider: holds created over HTTP, paid by the customer, one callback."""

    provider: ClassVar[Provider] = Provider.WECHATPAY

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.generation = 0

    @classmethod
    def ensure_keys(cls, keys_root: Path, merchants: list[SimMerchant]) -> None:
        for merchant in merchants:
            path = keys_root / cls.provider.value / merchant.merchant_id / "key.txt"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(secrets.token_hex(16))

    def public_material(self) -> dict[str, Any]:
        return {
            m.merchant_id: {
                "keys_dir": str(self.provider_keys_dir / m.merchant_id),
                "app_id": m.app_id,
            }
            for m in self.merchants
        }

    def rotate_keys(self) -> dict[str, Any]:
        self.generation += 1
        return {"generation": self.generation}

    def error_body(self, status: int) -> tuple[str, bytes]:
        return "application/json", b'{"code":"SYSTEM_ERROR","message":"simulated"}'

    def app(self) -> Starlette:
        async def create(request: Request) -> Response:
            params = orjson.loads(await request.body())
            ledger = self.ctx.ledger
            trade = ledger.get(self.provider, params["merchant_id"], params["key"])
            if trade is None:
                trade = ledger.add(
                    Trade(
                        provider=self.provider,
                        merchant_id=params["merchant_id"],
                        out_trade_no=params["key"],
                        provider_ref=f"REF-{self.ctx.rng.randrange(10**9)}",
                        kind="preauth",
                        amount_fen=params["amount_fen"],
                        state="WAIT",
                        params=params,
                        created_at=self.ctx.clock.now(),
                    )
                )
                self.after_hold(trade.merchant_id, trade.out_trade_no)
            return JSONResponse({"ref": trade.provider_ref, "state": trade.state})

        return Starlette(routes=[Route("/holds", create, methods=["POST"])])

    async def customer(self, merchant_id: str, key: str, action: str) -> dict[str, Any]:
        trade = self.ctx.ledger.get(self.provider, merchant_id, key)
        if trade is None:
            raise CustomerError(404, "not_found", f"no trade {key}")
        if trade.state != "WAIT":
            raise CustomerError(409, "wrong_state", f"the trade is {trade.state}")
        now = self.ctx.clock.now()
        if action == "abandon":
            trade.state, trade.finished_at = "CLOSED", now
            return trade.to_json()
        trade.state = "PAID" if action == "pay" else "DECLINED"
        if action == "pay":
            trade.held_fen, trade.paid_at = trade.amount_fen, now
        event = {"key": key, "state": trade.state}

        def build(t: float) -> tuple[dict[str, str], bytes]:
            return {"content-type": "application/json"}, orjson.dumps({**event, "t": t})

        self.ctx.callbacks.submit(
            Delivery(
                provider=self.provider,
                merchant_id=merchant_id,
                url=trade.params["notify_url"],
                event_key=f"EV-{key}",
                build=build,
                accepted=lambda status, body: 200 <= status < 300,
                schedule=RETRY_SCHEDULES[self.provider],
            )
        )
        return trade.to_json()


@dataclass
class Running:
    ready: dict[str, Any]
    service: ProviderSimService
    receiver: Receiver
    http: httpx.AsyncClient
    control: ControlClient

    @property
    def url(self) -> str:
        url: str = self.ready["wechatpay"]
        return url

    async def hold(self, key: str, merchant_id: str = MCH, **kw: Any) -> httpx.Response:
        body = {"merchant_id": merchant_id, "key": key, "amount_fen": 20_000}
        body["notify_url"] = self.receiver.url()
        return await self.http.post(f"{self.url}/holds", json=body, **kw)

    async def ctl(self, method: str, path: str, body: object = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else None
        data = None if isinstance(body, bytes) else body
        return await self.http.request(
            method, self.ready["control"] + path, content=content, json=data
        )


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Running]:
    config = ProviderServiceConfig(home=tmp_path, seed=3, merchants=2)
    service = ProviderSimService(config, [EchoSim])
    async with trio.open_nursery() as nursery:
        ready = await nursery.start(service.run)
        receiver = Receiver()
        await nursery.start(receiver.run)
        async with httpx.AsyncClient(timeout=SAFE) as http:
            yield Running(ready, service, receiver, http, ControlClient(ready["control"]))
        nursery.cancel_scope.cancel()


async def test_the_ready_document_and_the_keys(sim: Running, tmp_path: Path) -> None:
    ready = sim.ready
    assert ready["keys"] == str(tmp_path / "keys")
    assert ready["wechatpay"].startswith("http://127.0.0.1:")
    assert ready["control"].startswith("http://127.0.0.1:")
    assert "alipay" not in ready
    assert ready["merchants"] == {
        "wechatpay": [
            {"merchant_id": MCH, "app_id": "wxd678efh567hg6787"},
            {"merchant_id": MCH2, "app_id": "wxd678efh567h06788"},
        ]
    }
    for mch in (MCH, MCH2):
        assert (tmp_path / "keys" / "wechatpay" / mch / "key.txt").exists()
    material = await sim.control.amaterial()
    assert material["keys"] == ready["keys"]
    assert material["wechatpay"][MCH]["keys_dir"] == str(tmp_path / "keys" / "wechatpay" / MCH)
    health = await sim.ctl("GET", "/health")
    assert health.json() == {"ok": True, "providers": ["wechatpay"]}


async def test_keys_are_kept_across_restarts(tmp_path: Path) -> None:
    config = ProviderServiceConfig(home=tmp_path)
    key_file = tmp_path / "keys" / "wechatpay" / MCH / "key.txt"
    seen = []
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(ProviderSimService(config, [EchoSim]).run)
            seen.append(key_file.read_text())
            nursery.cancel_scope.cancel()
    assert seen[0] == seen[1]


async def test_the_clock_is_read_advanced_and_scaled(sim: Running) -> None:
    first = await sim.control.aclock()
    assert first["scale"] == 1.0
    now = await sim.control.aadvance(3600)
    assert now >= first["now"] + 3600
    reply = await sim.ctl("POST", "/clock/scale", {"scale": 60})
    assert reply.status_code == 200
    assert reply.json()["scale"] == 60.0
    assert reply.json()["now"] >= now


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/clock/advance", {"seconds": -1}, 400, "bad_request"),
        ("/clock/advance", {"seconds": "10"}, 400, "bad_request"),
        ("/clock/advance", {"seconds": True}, 400, "bad_request"),
        ("/clock/advance", {}, 400, "bad_request"),
        ("/clock/advance", b"{not json", 400, "bad_json"),
        ("/clock/advance", b"[1, 2]", 400, "bad_json"),
        ("/clock/advance", b'{"seconds": 1e999}', 400, "bad_json"),
        ("/clock/scale", {"scale": 0}, 400, "bad_request"),
        ("/customer", {"provider": "paypal", "key": "K", "action": "pay"}, 400, "unknown_provider"),
        ("/customer", {"provider": "alipay", "key": "K", "action": "pay"}, 404, "unknown_provider"),
        ("/customer", {"provider": "wechatpay", "action": "pay"}, 400, "bad_request"),
        ("/customer", {"provider": "wechatpay", "key": 5, "action": "pay"}, 400, "bad_request"),
        ("/customer", {"provider": "wechatpay", "key": "K", "action": "steal"}, 400, "bad_request"),
        ("/customer", {"provider": "wechatpay", "key": "NOPE", "action": "pay"}, 404, "not_found"),
        (
            "/customer",
            {"provider": "wechatpay", "key": "K", "action": "pay", "merchant_id": "1"},
            404,
            "unknown_merchant",
        ),
        ("/keys/alipay/rotate", None, 404, "unknown_provider"),
        ("/keys/paypal/rotate", None, 404, "unknown_provider"),
        ("/nowhere", None, 404, "not_found"),
        ("/clock", None, 405, "method_not_allowed"),
        ("/clock/advance", b"x" * 100_000, 413, "too_large"),
    ],
)
async def test_bad_input_gets_a_json_error_never_a_500(
    sim: Running, path: str, body: object, status: int, code: str
) -> None:
    reply = await sim.ctl("POST", path, body)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == code
    assert reply.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ledger?provider=paypal"),
        ("GET", "/callbacks?provider=paypal"),
        ("GET", "/callbacks?since=-1"),
        ("GET", "/callbacks?since=abc"),
    ],
)
async def test_bad_queries_get_400(sim: Running, method: str, path: str) -> None:
    reply = await sim.ctl(method, path)
    assert reply.status_code == 400
    assert reply.json()["message"]


async def test_fault_settings_put_patch_and_validation(sim: Running) -> None:
    c = sim.control
    set_ = await c.aset_faults("wechatpay", latency_ms=5, callback_drop=0.25, auto_pay=True)
    assert set_["latency_ms"] == 5
    assert set_["callback_drop"] == 0.25
    assert set_["auto_pay"] is True
    patched = await c.aset_faults("wechatpay", merge=True, error_rate=0.5)
    assert (patched["latency_ms"], patched["error_rate"]) == (5, 0.5)
    replaced = await c.aset_faults("wechatpay", timeout_rate=0.1)
    assert (replaced["latency_ms"], replaced["error_rate"], replaced["auto_pay"]) == (0, 0.0, False)
    everything = (await sim.ctl("GET", "/faults")).json()
    assert set(everything) == {"wechatpay", "alipay", "unionpay"}
    assert everything["wechatpay"]["timeout_rate"] == 0.1
    for bad in (
        {"error_rate": 1.5},
        {"error_rate": "0.5"},
        {"latency_ms": 1.5},
        {"latency_ms": True},
        {"latency_ms": -1},
        {"auto_pay": 1},
        {"error_status": 404},
        {"callback_delay_s": -3},
        {"no_such_fault": 1},
    ):
        reply = await sim.ctl("PUT", "/faults/wechatpay", bad)
        assert reply.status_code == 400, bad
        assert reply.json()["error"] == "bad_faults"
    assert (await sim.ctl("PUT", "/faults/paypal", {})).status_code == 404
    assert (await sim.ctl("GET", "/faults/wechatpay")).json()["timeout_rate"] == 0.1


async def test_an_error_fault_answers_the_providers_5xx_without_doing_anything(
    sim: Running,
) -> None:
    await sim.control.aset_faults("wechatpay", error_rate=1.0, error_status=503)
    reply = await sim.hold("E-1")
    assert reply.status_code == 503
    assert reply.json() == {"code": "SYSTEM_ERROR", "message": "simulated"}
    assert await sim.control.aledger("wechatpay") == []
    await sim.control.aset_faults("wechatpay")
    assert (await sim.hold("E-1")).status_code == 200
    assert [t["out_trade_no"] for t in await sim.control.aledger("wechatpay")] == ["E-1"]


async def test_a_timeout_fault_does_the_work_and_withholds_the_answer(sim: Running) -> None:
    await sim.control.aset_faults("wechatpay", timeout_rate=1.0, timeout_hold_s=30)
    with pytest.raises(httpx.ReadTimeout):
        await sim.hold("T-1", timeout=0.5)
    trades = await sim.control.aledger("wechatpay")
    assert [t["out_trade_no"] for t in trades] == ["T-1"]  # the provider did it


async def test_latency_delays_every_answer(sim: Running) -> None:
    await sim.control.aset_faults("wechatpay", latency_ms=5_000)
    with pytest.raises(httpx.ReadTimeout):
        await sim.hold("LAT-1", timeout=0.3)
    await sim.control.aset_faults("wechatpay")
    assert (await sim.hold("LAT-2", timeout=SAFE)).status_code == 200


async def test_faults_are_repeatable_with_the_same_seed(tmp_path: Path) -> None:
    outcomes = []
    for run in range(2):
        config = ProviderServiceConfig(home=tmp_path / str(run), seed=11)
        async with trio.open_nursery() as nursery:
            ready = await nursery.start(ProviderSimService(config, [EchoSim]).run)
            await ControlClient(ready["control"]).aset_faults("wechatpay", error_rate=0.5)
            statuses = []
            async with httpx.AsyncClient(timeout=SAFE) as http:
                for i in range(16):
                    body = {"merchant_id": MCH, "key": f"S-{i}", "amount_fen": 1, "notify_url": ""}
                    reply = await http.post(f"{ready['wechatpay']}/holds", json=body)
                    statuses.append(reply.status_code)
            outcomes.append(statuses)
            nursery.cancel_scope.cancel()
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 500}


async def test_the_customer_pays_and_the_callback_is_delivered_and_logged(sim: Running) -> None:
    assert (await sim.hold("C-1", merchant_id=MCH2)).status_code == 200
    paid = await sim.control.acustomer("wechatpay", "C-1", "pay", merchant_id=MCH2)
    assert paid["state"] == "PAID"
    assert paid["held_fen"] == 20_000
    (request,) = await sim.receiver.wait_for(1)
    assert orjson.loads(request.body)["key"] == "C-1"
    records = await sim.control.await_callbacks(
        lambda rs: any(r["accepted"] for r in rs), event_key="EV-C-1"
    )
    assert records[0]["provider"] == "wechatpay"
    assert records[0]["merchant_id"] == MCH2
    assert records[0]["status"] == 204
    with pytest.raises(ControlError, match="409"):
        await sim.control.acustomer("wechatpay", "C-1", "pay", merchant_id=MCH2)
    # the default merchant is the first one, which has no such trade
    with pytest.raises(ControlError, match="404"):
        await sim.control.acustomer("wechatpay", "C-1", "pay")
    ledger = await sim.control.aledger("wechatpay", MCH2)
    assert [(t["out_trade_no"], t["state"]) for t in ledger] == [("C-1", "PAID")]
    assert await sim.control.aledger("wechatpay", MCH) == []


async def test_abandon_fires_nothing(sim: Running) -> None:
    await sim.hold("AB-1")
    closed = await sim.control.acustomer("wechatpay", "AB-1", "abandon")
    assert closed["state"] == "CLOSED"
    await trio.testing.wait_all_tasks_blocked()
    assert sim.receiver.requests == []


async def test_callback_faults_and_the_clock_through_the_control_api(sim: Running) -> None:
    await sim.control.aset_faults("wechatpay", callback_delay_s=600)
    await sim.hold("CB-1")
    await sim.control.acustomer("wechatpay", "CB-1", "decline")
    await trio.testing.wait_all_tasks_blocked()
    log = await sim.control.acallbacks("wechatpay")
    assert (log["pending"], log["records"]) == (1, [])
    assert sim.receiver.requests == []
    await sim.control.aadvance(600)
    (request,) = await sim.receiver.wait_for(1)
    assert orjson.loads(request.body)["state"] == "DECLINED"
    records = await sim.control.await_callbacks(lambda rs: len(rs) == 1, event_key="EV-CB-1")
    since = (await sim.control.acallbacks(since=records[0]["seq"]))["records"]
    assert since == []


async def test_auto_pay_pays_new_holds_by_itself(sim: Running) -> None:
    await sim.control.aset_faults("wechatpay", auto_pay=True, auto_pay_delay_ms=10)
    await sim.hold("AUTO-1")
    await sim.control.await_ledger(
        lambda trades: bool(trades) and trades[0]["state"] == "PAID", provider="wechatpay"
    )
    await sim.receiver.wait_for(1)
    await sim.control.aset_faults("wechatpay")
    await sim.hold("MANUAL-1")
    await trio.testing.wait_all_tasks_blocked()
    states = {t["out_trade_no"]: t["state"] for t in await sim.control.aledger("wechatpay")}
    assert states == {"AUTO-1": "PAID", "MANUAL-1": "WAIT"}


async def test_rotate_keys_reaches_the_simulator(sim: Running) -> None:
    assert await sim.control.arotate_keys("wechatpay") == {"generation": 1}
    assert await sim.control.arotate_keys("wechatpay") == {"generation": 2}
