"""The switch's HTTP app over a real socket: problem+json errors, body limits, metrics, and how
the callback endpoint picks the channel that verifies."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import orjson
import trio
from fastapi import FastAPI

from actors import CallTimeout
from channels.model import CallbackEvent, Provider
from switch.http import PROBLEM_JSON, BodyLimits, create_app
from switch.store import Store
from switch.store.errors import StoreUnavailable
from tests.switch.callback_harness import (
    StubVerifier,
    alerts,
    attempt_state,
    callback_server,
    create_order_with_hold,
    unique_key,
)

WECHAT = Provider.WECHATPAY


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    document: dict[str, object] = orjson.loads(response.content)
    assert document["status"] == status
    assert isinstance(document["title"], str) and document["title"]
    assert document["type"] == "about:blank"
    return document


def extend(app: FastAPI) -> None:
    """Routes that exist only to provoke the app's error handlers."""

    @app.get("/test/items/{number}")
    async def item(number: int) -> dict[str, int]:
        return {"number": number}

    @app.get("/test/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/test/busy")
    async def busy() -> dict[str, str]:
        raise CallTimeout("journal", 10.0)

    @app.get("/test/store-down")
    async def store_down() -> dict[str, str]:
        raise StoreUnavailable("journal commit took over 15s; outcome unknown")


async def new_order(store: Store, channel: str, provider: Provider = WECHAT) -> str:
    key = unique_key()
    await create_order_with_hold(
        store,
        order_id=key,
        channel=channel,
        provider=provider,
        out_trade_no=key,
        amount_fen=20000,
    )
    return key


async def test_errors_are_problem_documents(store: Store) -> None:
    verifier = StubVerifier(WECHAT, "wx-main")
    async with callback_server(store, [verifier]) as server:
        extend(server.app)
        client = server.client
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert assert_problem(await client.get("/nowhere"), 404)["instance"] == "/nowhere"
        not_allowed = await client.get("/callbacks/wechatpay")
        assert_problem(not_allowed, 405)
        assert "POST" in not_allowed.headers["allow"]
        invalid = assert_problem(await client.get("/test/items/seven"), 422)
        assert isinstance(invalid["errors"], list) and invalid["errors"]
        assert all("input" not in error for error in invalid["errors"])  # never echoed back
        crashed = await client.get("/test/crash")
        assert_problem(crashed, 500)
        assert b"hunter2" not in crashed.content and b"RuntimeError" not in crashed.content
        assert (await client.get("/healthz")).status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert "/callbacks/alipay" in schema["paths"]


async def test_provider_without_a_channel_is_not_found(store: Store) -> None:
    async with callback_server(store, [StubVerifier(WECHAT, "wx-main")]) as server:
        response = await server.post(Provider.UNIONPAY, b"merId=1", {})
        assert_problem(response, 404)
        assert server.count(Provider.UNIONPAY, "rejected", "no_channel") == 1


async def test_oversized_bodies_are_refused(store: Store) -> None:
    verifier = StubVerifier(WECHAT, "wx-main")
    async with callback_server(store, [verifier], limits=BodyLimits(max_bytes=1024)) as server:
        declared = await server.post(WECHAT, b"x" * 4096, {"x-stub-signature": "00"})
        assert_problem(declared, 413)

        async def chunks() -> object:
            for _ in range(8):
                yield b"y" * 512

        chunked = await server.client.post("/callbacks/wechatpay", content=chunks())  # type: ignore[arg-type]
        assert_problem(chunked, 413)
        assert server.count(WECHAT, "rejected", "body_too_large") == 2
        assert (await server.client.get("/healthz")).status_code == 200


async def _read_response_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


async def test_a_stalled_body_is_cut_off_while_others_are_served(store: Store) -> None:
    verifier = StubVerifier(WECHAT, "wx-main")
    limits = BodyLimits(read_timeout_s=1.0)
    key = await new_order(store, "wx-main")
    async with callback_server(store, [verifier], limits=limits) as server:
        address = urlsplit(server.url)
        assert address.hostname is not None and address.port is not None
        with trio.fail_after(30):  # a hang guard, not a measurement
            stream = await trio.open_tcp_stream(address.hostname, address.port)
            async with stream:
                await stream.send_all(
                    b"POST /callbacks/wechatpay HTTP/1.1\r\nHost: switch\r\n"
                    b'Content-Length: 1000\r\nContent-Type: application/json\r\n\r\n{"id":'
                )
                # While that sender stalls, a real callback is served.
                headers, body = verifier.make(
                    event_id=f"EV-{key}", out_trade_no=key, amount_fen=20000
                )
                assert (await server.post(WECHAT, body, headers)).status_code == 204
                head = await _read_response_head(stream)
        assert head.startswith(b"HTTP/1.1 408")
        assert f"content-type: {PROBLEM_JSON}".encode() in head.lower()
        assert server.count(WECHAT, "rejected", "body_timeout") == 1
        assert await attempt_state(store, key) == "approved"


async def test_a_trickling_body_is_cut_off(store: Store) -> None:
    limits = BodyLimits(read_timeout_s=1.0)
    async with callback_server(store, [StubVerifier(WECHAT, "wx-main")], limits=limits) as server:
        address = urlsplit(server.url)
        assert address.hostname is not None and address.port is not None
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(address.hostname, address.port)
            async with stream, trio.open_nursery() as nursery:
                await stream.send_all(
                    b"POST /callbacks/wechatpay HTTP/1.1\r\nHost: switch\r\n"
                    b"Content-Length: 60000\r\n\r\n"
                )

                async def trickle() -> None:
                    try:
                        for _ in range(60000):
                            await stream.send_all(b" ")
                            await trio.sleep(0.05)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return

                nursery.start_soon(trickle)
                head = await _read_response_head(stream)
                nursery.cancel_scope.cancel()
        assert head.startswith(b"HTTP/1.1 408")
        assert (await server.client.get("/healthz")).status_code == 200


async def test_metrics_expose_the_callback_counter(store: Store) -> None:
    verifier = StubVerifier(WECHAT, "wx-main")
    key = await new_order(store, "wx-main")
    async with callback_server(store, [verifier]) as server:
        headers, body = verifier.make(event_id=f"EV-{key}", out_trade_no=key, amount_fen=20000)
        assert (await server.post(WECHAT, body, headers)).status_code == 204
        assert (await server.post(WECHAT, body, headers)).status_code == 204
        forged = await server.post(WECHAT, body + b" ", headers)
        assert forged.status_code == 400
        assert orjson.loads(forged.content) == {"code": "FAIL", "message": "bad_signature"}
        exposition = (await server.client.get("/metrics")).text
    for result, reason in (
        ("accepted", "applied"),
        ("duplicate", "duplicate"),
        ("rejected", "bad_signature"),
    ):
        line = (
            f'fuelswitch_callback_verifications_total{{provider="wechatpay",'
            f'reason="{reason}",result="{result}"}} 1.0'
        )
        assert line in exposition


async def test_each_wechat_channel_is_tried_until_one_verifies(store: Store) -> None:
    first = StubVerifier(WECHAT, "wx-a", secret=b"key-a")
    second = StubVerifier(WECHAT, "wx-b", secret=b"key-b")
    key = await new_order(store, "wx-b")
    async with callback_server(store, [first, second]) as server:
        headers, body = second.make(event_id=f"EV-{key}", out_trade_no=key, amount_fen=20000)
        assert (await server.post(WECHAT, body, headers)).status_code == 204
        assert await attempt_state(store, key) == "approved"
        [applied] = server.applied
        assert applied.event.channel == "wx-b"
        # Signed by neither: the furthest-reaching miss is reported.
        forged = StubVerifier(WECHAT, "wx-c", secret=b"key-c")
        headers, body = forged.make(event_id="EV-X", out_trade_no=key, amount_fen=20000)
        assert (await server.post(WECHAT, body, headers)).status_code == 400
        assert server.count(WECHAT, "rejected", "bad_signature") == 1


class FormStub(StubVerifier):
    """The stub's JSON carried in a form field, next to an Alipay-style ``app_id`` (the
    routing key) and counting how often it was asked."""

    calls = 0

    def form(self, app_id: str, **fields: object) -> bytes:
        headers, body = self.make(**fields)
        return urlencode(
            {"app_id": app_id, "data": body.decode(), "sig": headers["x-stub-signature"]}
        ).encode()

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        FormStub.calls += 1
        form = dict(parse_qsl(body.decode()))
        return super().verify_callback(
            {"x-stub-signature": form.get("sig", "")}, form.get("data", "").encode(), now
        )


async def test_alipay_routes_by_app_id_without_trying_other_channels(store: Store) -> None:
    alipay = Provider.ALIPAY
    channels = [FormStub(alipay, f"ali-{n}", secret=f"k{n}".encode()) for n in range(4)]
    key = await new_order(store, "ali-2", alipay)
    routing = {f"ali-{n}": f"APP{n}" for n in range(4)}
    async with callback_server(store, channels, routing_keys=routing) as server:
        FormStub.calls = 0
        body = channels[2].form("APP2", event_id=f"EV-{key}", out_trade_no=key, amount_fen=20000)
        assert (await server.post(alipay, body, {})).status_code == 204
        assert FormStub.calls == 1
        assert await attempt_state(store, key) == "approved"


async def test_merchant_not_ours_is_rejected_and_alerted(store: Store) -> None:
    ours = StubVerifier(WECHAT, "wx-main", merchant="M1")
    theirs = StubVerifier(WECHAT, "wx-main", merchant="M2")  # same keys, another merchant
    key = await new_order(store, "wx-main")
    async with callback_server(store, [ours]) as server:
        headers, body = theirs.make(event_id=f"EV-{key}", out_trade_no=key, amount_fen=20000)
        assert (await server.post(WECHAT, body, headers)).status_code == 400
        assert server.count(WECHAT, "rejected", "unknown_merchant") == 1
        unknown = unique_key()
        headers, body = ours.make(event_id=f"EV-{unknown}", out_trade_no=unknown, amount_fen=1)
        assert (await server.post(WECHAT, body, headers)).status_code == 400
        assert server.count(WECHAT, "rejected", "unknown_order") == 1
    assert await attempt_state(store, key) == "requested"
    merchant_alerts = [
        a
        for a in await alerts(store, subject="wechatpay")
        if a.details["reason"] == "unknown_merchant"
    ]
    assert merchant_alerts
    assert [a.details["reason"] for a in await alerts(store, subject=unknown)] == ["unknown_order"]


class BrokenVerifier(StubVerifier):
    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        raise KeyError("a verifier bug")


async def test_a_failing_verifier_is_a_rejection_not_a_crash(store: Store) -> None:
    async with callback_server(store, [BrokenVerifier(WECHAT, "wx-main")]) as server:
        assert (await server.post(WECHAT, b"{}", {})).status_code == 400
        assert server.count(WECHAT, "rejected", "verifier_error") == 1
        assert (await server.client.get("/healthz")).status_code == 200


def test_the_read_deadline_fits_wechats_budget() -> None:
    limits = BodyLimits()
    assert limits.read_timeout_s < 5.0
    app = create_app(limits=limits)
    paths = {getattr(route, "path", "") for route in app.routes}
    assert {"/healthz", "/metrics"} <= paths
    assert "/callbacks/wechatpay" not in paths  # no processor, no callback routes


async def test_an_actor_that_does_not_answer_is_a_503_not_a_crash(store: Store) -> None:
    app = create_app()
    extend(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://switch"
    ) as client:
        reply = await client.get("/test/busy")
    document = assert_problem(reply, 503)
    assert reply.headers["retry-after"] == "1"
    assert "journal" not in str(document["detail"])


async def test_a_database_that_does_not_answer_is_a_503_not_a_crash() -> None:
    app = create_app()
    extend(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://switch"
    ) as client:
        reply = await client.get("/test/store-down")
    document = assert_problem(reply, 503)
    assert reply.headers["retry-after"] == "2"
    assert "Idempotency-Key" in str(document["detail"])
    assert "15s" not in str(document["detail"])  # the internals stay in the log
