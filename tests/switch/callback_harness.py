"""Test harness for provider callbacks against the switch: a real HTTP server, a real database.

Usage (in an async pytest-trio test that takes the ``store`` fixture of tests/conftest.py)::

    from channels.model import Provider
    from tests.switch.callback_harness import (
        alerts, attempt_state, callback_server, create_order_with_hold, inbox_rows, unique_key,
    )

    async def test_paid(store: Store) -> None:
        channel = WeChatPayChannel.from_config(cfg)          # any CallbackVerifier
        key = unique_key("FS")                               # out_trade_no, unique per test
        await create_order_with_hold(
            store, order_id=key, channel=cfg.name, provider=Provider.WECHATPAY,
            out_trade_no=key, amount_fen=20000,
        )
        async with callback_server(store, [channel], clock=sim_clock.now) as server:
            response = await server.post(Provider.WECHATPAY, body, headers)
            assert response.status_code == 204
        assert await attempt_state(store, key) == "approved"
        assert server.count(Provider.WECHATPAY, "accepted", "applied") == 1

What it gives you:

* ``callback_server(store, verifiers, *, routing_keys=None, configs=(), clock=None,
  limits=None)``: an async context manager serving ``switch.http.create_app`` with a
  ``CallbackProcessor`` over those verifiers on 127.0.0.1 (a free port). It yields a
  ``CallbackServer`` with

  - ``server.post(provider, body, headers)``: POST the raw bytes to ``/callbacks/<provider>``,
    returns the ``httpx.Response``; ``server.client`` is an ``httpx.AsyncClient`` on
    ``server.url``;
  - ``server.count(provider, result, reason)``: this server's own callback counter (starts at
    0). Results: ``accepted`` (reasons ``applied``, ``late_success``), ``duplicate``
    (``duplicate``), ``ignored`` (``ignored``: old news, acknowledged, nothing moved),
    ``rejected`` (the verifier's reason, or the switch's: ``unknown_order``,
    ``amount_mismatch``, ``channel_mismatch``, ``kind_mismatch``, ``missing_refund_key``,
    ``unknown_attempt``, ``out_of_order``, ``provider_ref_mismatch`` (a hold's auth_no, or a
    capture's trade_no, that is not the one on our books), ``body_too_large``,
    ``body_timeout``), ``error``
    (``store_error`` / ``store_unavailable``: nothing committed, not acknowledged);
  - ``server.applied``: every event handed to the order layer; ``server.processor``,
    ``server.app``.

  ``routing_keys`` maps channel name to Alipay app_id / UnionPay merId (or pass the channels'
  ``configs`` to derive it); without it every channel of the provider is tried in turn.
  ``clock`` gives the Unix seconds verifiers check freshness against (default: real time).
* ``create_order_with_hold(store, *, order_id, channel, provider, out_trade_no, amount_fen,
  state="requested")``: the station/pump reference rows when missing, the order, and its hold
  attempt ``<order_id>-1`` keyed by ``out_trade_no`` (journaled before the provider call, as the
  switch does: ``requested``). Returns the attempt id.
* ``create_attempt(store, *, order_id, operation, key, amount_fen, state="requested")``: another
  attempt of the order (``refund`` keyed by out_refund_no, ``release``, ``capture``); channel
  and provider default to the order's hold. ``set_order_money(store, order_id, held_fen=...)``
  sets money columns; ``finish_order(store, order_id)`` marks the order terminal (abandoned or
  closed: the late-success cases).
* Reads: ``attempt_state(store, key)`` (``None`` when no attempt has that key),
  ``attempt_row(store, key)``, ``order_money(store, order_id)``, ``inbox_rows(store, provider=...,
  order_id=..., event_id=...)`` (dicts; ``body`` is the bytes exactly as received, ``headers`` a
  dict with ``":remote"`` added), ``alerts(store, subject=..., kind=...)``
  (``switch.store.Alert``). Business rejections alert with the event's out_trade_no as
  subject; a verifier's alert rejection (merchant not ours) with the provider name; a late
  success with kind ``late_success`` and the order id.

The database belongs to the test module (tests/conftest.py), so keys must be unique per test:
use ``unique_key``. ``StubVerifier`` is a trivially signed format for the switch's own tests
(tests/switch/test_callback_store.py and test_http_app.py); provider tests use their channels.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from cryptography.hazmat.primitives import hashes, hmac
from fastapi import FastAPI

from channels.config import ChannelConfig
from channels.interface import CallbackVerifier
from channels.model import CallbackEvent, CallbackKind, CallbackRejected, HttpReply, Provider
from ops.metrics import Metrics
from switch.http import BodyLimits, create_app, serve_http
from switch.payments import AppliedCallback, CallbackProcessor
from switch.payments import routing_keys as keys_from_configs
from switch.store import Store
from switch.store.alerts import Alert, list_alerts

__all__ = [
    "CallbackServer",
    "StubVerifier",
    "alerts",
    "attempt_row",
    "attempt_state",
    "callback_server",
    "channel_config",
    "create_attempt",
    "create_order_with_hold",
    "finish_order",
    "inbox_rows",
    "order_money",
    "set_order_money",
    "unique_key",
]

TEST_STATION = "ST-CALLBACKS"


def unique_key(prefix: str = "FS") -> str:
    """An out_trade_no / order id no other test of the module uses (6-32 chars, WeChat's rule)."""
    return f"{prefix}{secrets.token_hex(8).upper()}"


def _provider(provider: Provider | str) -> Provider:
    return provider if isinstance(provider, Provider) else Provider(provider)


@dataclass
class CallbackServer:
    url: str
    client: httpx.AsyncClient
    processor: CallbackProcessor
    metrics: Metrics
    app: FastAPI
    applied: list[AppliedCallback] = field(default_factory=list)

    async def post(
        self, provider: Provider | str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST the raw ``body`` to ``/callbacks/<provider>``."""
        return await self.client.post(
            f"/callbacks/{_provider(provider).value}", content=body, headers=dict(headers or {})
        )

    def count(self, provider: Provider | str, result: str, reason: str) -> float:
        return self.metrics.callback_count(_provider(provider).value, result, reason)


@asynccontextmanager
async def callback_server(
    store: Store,
    verifiers: Sequence[CallbackVerifier],
    *,
    routing_keys: Mapping[str, str] | None = None,
    configs: Sequence[ChannelConfig] = (),
    clock: Callable[[], float] | None = None,
    limits: BodyLimits | None = None,
) -> AsyncIterator[CallbackServer]:
    metrics = Metrics()
    if routing_keys is None and configs:
        routing_keys = keys_from_configs(configs)
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    processor = CallbackProcessor(
        store, verifiers, routing_keys=routing_keys, metrics=metrics, **extra
    )
    app = create_app(callbacks=processor, limits=limits or BodyLimits())
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(serve_http, app, "127.0.0.1", 0, shutdown=shutdown))
        try:
            async with httpx.AsyncClient(base_url=bound.url, timeout=30.0) as client:
                server = CallbackServer(bound.url, client, processor, metrics, app)

                async def remember(applied: AppliedCallback) -> None:
                    server.applied.append(applied)

                processor.add_hook(remember)
                yield server
        finally:
            shutdown.set()


def channel_config(
    provider: Provider | str,
    *,
    keys_dir: Path,
    merchant_id: str,
    app_id: str = "",
    name: str | None = None,
    base_url: str = "http://127.0.0.1:9",
    notify_url: str = "http://127.0.0.1:9/callbacks",
) -> ChannelConfig:
    """A ChannelConfig for a channel that only verifies callbacks (its API is never called)."""
    p = _provider(provider)
    return ChannelConfig(
        name=name or f"{p.value}-{merchant_id}",
        provider=p,
        base_url=base_url,
        merchant_id=merchant_id,
        app_id=app_id,
        keys_dir=keys_dir,
        notify_url=notify_url,
    )


async def _ensure_station(store: Store, station_id: str, pump_no: int) -> None:
    await store.db.execute(
        "INSERT INTO stations (id, name, lat_e6, lon_e6) VALUES ($1, $1, 31230000, 121470000)"
        " ON CONFLICT DO NOTHING",
        station_id,
    )
    await store.db.execute(
        "INSERT INTO pumps (station_id, pump_no, protocol, endpoint, unit_id)"
        " VALUES ($1, $2, 'gfd1-tcp', '127.0.0.1:502', $2) ON CONFLICT DO NOTHING",
        station_id,
        pump_no,
    )


async def create_order_with_hold(
    store: Store,
    *,
    order_id: str,
    channel: str,
    provider: Provider | str,
    out_trade_no: str,
    amount_fen: int,
    state: str = "requested",
    station_id: str = TEST_STATION,
    pump_no: int = 1,
) -> str:
    await _ensure_station(store, station_id, pump_no)
    await store.db.execute(
        "INSERT INTO orders (id, customer_id, station_id, pump_no, flow, preset_kind,"
        " preset_value, state, channel) VALUES ($1, 'customer-1', $2, $3, 'prepay', 'amount',"
        " $4, 'holding', $5)",
        order_id,
        station_id,
        pump_no,
        amount_fen,
        channel,
    )
    return await create_attempt(
        store,
        order_id=order_id,
        operation="hold",
        key=out_trade_no,
        amount_fen=amount_fen,
        state=state,
        channel=channel,
        provider=provider,
        attempt_no=1,
    )


async def create_attempt(
    store: Store,
    *,
    order_id: str,
    operation: str,
    key: str,
    amount_fen: int,
    state: str = "requested",
    channel: str | None = None,
    provider: Provider | str | None = None,
    attempt_no: int | None = None,
) -> str:
    hold = await store.db.fetchrow(
        "SELECT channel, provider FROM payment_attempts WHERE order_id = $1"
        " ORDER BY attempt_no LIMIT 1",
        order_id,
    )
    if channel is None or provider is None:
        if hold is None:
            raise ValueError(f"order {order_id} has no attempt to take channel/provider from")
        channel = channel or hold["channel"]
        provider = provider or hold["provider"]
    if attempt_no is None:
        attempt_no = await store.db.fetchval(
            "SELECT coalesce(max(attempt_no), 0) + 1 FROM payment_attempts WHERE order_id = $1",
            order_id,
        )
    attempt_id = f"{order_id}-{attempt_no}" + ("" if operation == "hold" else f"-{operation}")
    await store.db.execute(
        "INSERT INTO payment_attempts (id, order_id, attempt_no, channel, provider, operation,"
        " idempotency_key, amount_fen, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        attempt_id,
        order_id,
        attempt_no,
        channel,
        _provider(provider).value,
        operation,
        key,
        amount_fen,
        state,
    )
    return attempt_id


async def set_order_money(store: Store, order_id: str, **columns: int) -> None:
    """e.g. ``held_fen=20000, captured_fen=15000`` (the order layer's writes, for setup)."""
    allowed = {"held_fen", "captured_fen", "released_fen", "refunded_fen"}
    if not columns or not set(columns) <= allowed:
        raise ValueError(f"money columns are {sorted(allowed)}, not {sorted(columns)}")
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
    await store.db.execute(
        f"UPDATE orders SET {assignments} WHERE id = $1", order_id, *columns.values()
    )


async def finish_order(store: Store, order_id: str, state: str = "abandoned") -> None:
    await store.db.execute(
        "UPDATE orders SET terminal = true, state = $2 WHERE id = $1", order_id, state
    )


async def attempt_row(store: Store, key: str) -> dict[str, Any] | None:
    row = await store.db.fetchrow("SELECT * FROM payment_attempts WHERE idempotency_key = $1", key)
    return None if row is None else dict(row)


async def attempt_state(store: Store, key: str) -> str | None:
    state: str | None = await store.db.fetchval(
        "SELECT state FROM payment_attempts WHERE idempotency_key = $1", key
    )
    return state


async def order_money(store: Store, order_id: str) -> dict[str, int]:
    row = await store.db.fetchrow(
        "SELECT held_fen, captured_fen, released_fen, refunded_fen FROM orders WHERE id = $1",
        order_id,
    )
    if row is None:
        raise ValueError(f"no order {order_id}")
    return {k: int(v) for k, v in row.items()}


async def inbox_rows(
    store: Store,
    *,
    provider: Provider | str | None = None,
    order_id: str | None = None,
    event_id: str | None = None,
) -> list[dict[str, Any]]:
    rows = await store.db.fetch(
        "SELECT * FROM callback_inbox WHERE ($1::text IS NULL OR provider = $1)"
        " AND ($2::text IS NULL OR order_id = $2) AND ($3::text IS NULL OR event_id = $3)"
        " ORDER BY id",
        None if provider is None else _provider(provider).value,
        order_id,
        event_id,
    )
    out = []
    for row in rows:
        item = dict(row)
        item["body"] = bytes(item["body"])
        item["headers"] = orjson.loads(item["headers"])
        out.append(item)
    return out


async def alerts(
    store: Store, *, subject: str | None = None, kind: str | None = None
) -> list[Alert]:
    return await list_alerts(store.db, subject=subject, kind=kind)


class StubVerifier:
    """A CallbackVerifier for the switch's own tests, over a trivially signed format.

    The body is JSON: ``{"merchant", "event_id", "kind", "status", "out_trade_no", "amount_fen",
    "succeeded", optional "refund_fen", "out_refund_no", "provider_ref"}``; header
    ``x-stub-signature`` is the hex HMAC-SHA256 of the raw body under ``secret``. Replies the way
    WeChat does (204 / 400 JSON). ``make(...)`` builds a signed (headers, body) pair.
    """

    def __init__(
        self,
        provider: Provider,
        channel_name: str,
        *,
        merchant: str = "M1",
        secret: bytes = b"stub-secret",
    ) -> None:
        self._provider = provider
        self._channel_name = channel_name
        self.merchant = merchant
        self._secret = secret

    @property
    def provider(self) -> Provider:
        return self._provider

    @property
    def channel_name(self) -> str:
        return self._channel_name

    def _mac(self, body: bytes) -> str:
        mac = hmac.HMAC(self._secret, hashes.SHA256())
        mac.update(body)
        return mac.finalize().hex()

    def make(self, **fields: Any) -> tuple[dict[str, str], bytes]:
        content = {
            "merchant": self.merchant,
            "kind": "payment",
            "status": "SUCCESS",
            "succeeded": True,
            **fields,
        }
        body = orjson.dumps(content)
        return {"x-stub-signature": self._mac(body), "content-type": "application/json"}, body

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        signature = headers.get("x-stub-signature")
        if not signature:
            raise CallbackRejected("missing_header", "x-stub-signature is missing")
        mac = hmac.HMAC(self._secret, hashes.SHA256())
        mac.update(body)
        try:
            mac.verify(bytes.fromhex(signature))
        except Exception as exc:
            raise CallbackRejected("bad_signature", "the signature does not match") from exc
        try:
            data = orjson.loads(body)
            if data["merchant"] != self.merchant:
                raise CallbackRejected("unknown_merchant", data["merchant"], alert=True)
            return CallbackEvent(
                provider=self._provider,
                channel=self._channel_name,
                kind=CallbackKind(data["kind"]),
                event_id=str(data["event_id"]),
                status=str(data["status"]),
                out_trade_no=str(data["out_trade_no"]),
                provider_ref=data.get("provider_ref"),
                amount_fen=int(data["amount_fen"]),
                refund_fen=data.get("refund_fen"),
                out_refund_no=data.get("out_refund_no"),
                succeeded=bool(data["succeeded"]),
                raw=data,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CallbackRejected("bad_json", type(exc).__name__) from exc

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        if accepted:
            return HttpReply(204)
        body = orjson.dumps({"code": "FAIL", "message": message or "rejected"})
        return HttpReply(400, body, "application/json")
