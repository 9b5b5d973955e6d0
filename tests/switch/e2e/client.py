"""The tests' hands: the customer API over HTTP, the pump simulator's control API, and the
customer's side of a payment at the provider simulators.

Every wait is bounded (``SAFE``) and polls what a customer or an operator could see; nothing
asserts how long something took.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import httpx
import trio

from switch.api import Role, TokenSigner
from tests.channels.provider_sim import ControlError
from tests.devices.sim_support import Control

from .harness import PAYERS, STATION, World

__all__ = ["SAFE", "PumpSim", "SwitchApi", "eventually", "pay_hold", "pump_command"]

SAFE: Final = 60.0  # a bound for what must happen, never a measurement
POLL_S: Final = 0.1
T = TypeVar("T")


async def eventually(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Poll ``fetch()`` until ``done`` holds for its value (bounded by SAFE); the failure
    names ``what`` and the last value seen."""
    last: T | None = None
    with trio.move_on_after(SAFE):
        while True:
            last = await fetch()
            if done(last):
                return last
            await trio.sleep(POLL_S)
    raise AssertionError(f"never {what}; last seen: {last!r}")


def pump_command(port: int, cmd: str, **args: Any) -> dict[str, Any]:
    """One pump-simulator control command, blocking (for module fixtures)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        reply: dict[str, Any] = json.loads(sock.makefile("rb").readline())
    assert reply["ok"], reply
    return reply


class PumpSim:
    """The pump simulator's control API (station 0 is the switch's :data:`STATION`)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        control = await Control.connect(self.port)
        try:
            return await control.call(cmd, **args)
        finally:
            await control.aclose()

    async def customer(self, pump: int, volume_ml: int, nozzle: int = 1) -> None:
        """A driver lifts ``nozzle`` now and hangs up after ``volume_ml`` (or the preset)."""
        await self.call("customer", station=0, pump=pump, nozzle=nozzle, hang_up_after_ml=volume_ml)

    async def snapshot(self, pump: int) -> dict[str, Any]:
        return await self.call("snapshot", station=0, pump=pump)

    async def totals(self, pump: int) -> dict[int, int]:
        """Volume totalizer per nozzle (mL)."""
        snap = await self.snapshot(pump)
        return {n: int(t["volume_ml"]) for n, t in enumerate(snap["totals"], start=1)}

    async def ledger(self, pump: int) -> list[dict[str, Any]]:
        """Every sale the pump ended, with ``station`` as the switch's station id."""
        reply = await self.call("ledger", station=0, pump=pump)
        return [{**sale, "station": STATION} for sale in reply["sales"]]

    async def buffer(self, pump: int) -> list[Any]:
        buffer: list[Any] = (await self.snapshot(pump))["buffer"]
        return buffer

    async def wait_buffered(self, pump: int, count: int) -> list[Any]:
        return await eventually(
            lambda: self.buffer(pump), lambda b: len(b) == count, f"{count} sales in the buffer"
        )


class SwitchApi:
    """The customer API as the mini-program uses it, for one customer."""

    def __init__(self, world: World, http: httpx.AsyncClient, customer: str) -> None:
        assert world.switch is not None
        self.world = world
        self.http = http
        self.customer = customer
        self.signer = TokenSigner(world.secret)

    @property
    def url(self) -> str:
        assert self.world.switch is not None
        return self.world.switch.url

    def headers(self, key: str | None = None) -> dict[str, str]:
        token = self.signer.issue(self.customer, Role.CUSTOMER, ttl_s=3600, now=time.time())
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    async def create_order(
        self,
        method: str,
        pump: int,
        preset_fen: int,
        *,
        key: str,
        nozzle: int | None = 1,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        payload = body or {
            "station_id": STATION,
            "pump_no": pump,
            "preset_kind": "amount",
            "preset_value": preset_fen,
            "method": method,
            "payer_id": PAYERS[method],
        }
        if nozzle is not None and body is None:
            payload["nozzle_no"] = nozzle
        return await self.http.post(
            f"{self.url}/v1/orders", json=payload, headers=self.headers(key)
        )

    async def pay_pump(
        self, method: str, pump: int, *, key: str, seq: int | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"method": method, "payer_id": PAYERS[method]}
        if seq is not None:
            body["pump_sale_seq"] = seq
        return await self.http.post(
            f"{self.url}/v1/stations/{STATION}/pumps/{pump}/pay",
            json=body,
            headers=self.headers(key),
        )

    async def order(self, order_id: str) -> dict[str, Any]:
        reply = await self.http.get(f"{self.url}/v1/orders/{order_id}", headers=self.headers())
        assert reply.status_code == 200, reply.text
        view: dict[str, Any] = reply.json()
        return view

    async def cancel(self, order_id: str) -> httpx.Response:
        return await self.http.post(
            f"{self.url}/v1/orders/{order_id}/cancel", headers=self.headers()
        )

    async def refund(self, order_id: str, amount_fen: int, *, key: str) -> httpx.Response:
        return await self.http.post(
            f"{self.url}/v1/orders/{order_id}/refunds",
            json={"amount_fen": amount_fen, "reason": "test refund"},
            headers=self.headers(key),
        )

    async def pump(self, pump: int) -> dict[str, Any]:
        reply = await self.http.get(
            f"{self.url}/v1/stations/{STATION}/pumps", headers=self.headers()
        )
        assert reply.status_code == 200, reply.text
        view: dict[str, Any] = next(p for p in reply.json()["items"] if p["pump_no"] == pump)
        return view

    async def wait_order(
        self, order_id: str, done: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        """Poll the order until ``done(view)``; the failure names ``what`` and the last view."""
        view: dict[str, Any] = {}
        with trio.move_on_after(SAFE):
            while True:
                try:
                    view = await self.order(order_id)
                except httpx.TransportError:
                    view = {"unreachable": True}
                if view.get("state") and done(view):
                    return view
                await trio.sleep(POLL_S)
        raise AssertionError(f"order {order_id} never got {what}; last view: {view}")

    async def wait_terminal(self, order_id: str) -> dict[str, Any]:
        return await self.wait_order(order_id, lambda v: bool(v["terminal"]), "terminal")

    async def wait_pump_free(self, pump: int) -> dict[str, Any]:
        return await eventually(lambda: self.pump(pump), lambda v: v["free"], f"pump {pump} free")

    async def wait_payable(self, pump: int) -> list[dict[str, Any]]:
        """The sales waiting to be paid at ``pump``, once there is one."""
        view = await eventually(lambda: self.pump(pump), lambda v: v["payable"], "a payable sale")
        payable: list[dict[str, Any]] = view["payable"]
        return payable


async def pay_hold(world: World, api: SwitchApi, order_id: str) -> dict[str, Any]:
    """The customer confirms the payment in the wallet app: once the order's hold is at its
    provider, ``POST /customer {action: pay}`` on the simulator of the order's channel."""
    view = await api.wait_order(order_id, lambda v: v["payment"] is not None, "a hold")
    channel, key = view["payment"]["channel"], view["payment"]["key"]
    entry = world.channel(channel)
    control = world.process_of(channel).control
    with trio.move_on_after(SAFE):
        while True:
            try:
                return await control.acustomer(
                    entry.config.provider.value, key, "pay", entry.config.merchant_id
                )
            except ControlError as exc:  # not at the provider yet (404)
                if " 404 " not in str(exc):
                    raise
            await trio.sleep(POLL_S)
    raise AssertionError(f"hold {key} of {order_id} never reached {channel}")
