"""The demo's customers' view of the switch: its public HTTP API, with a bearer token each.

Only documented routes are used (``/v1/orders``, ``/v1/stations/{sid}/pumps``...), so the demo
shows what a mini-program would do. Waiting for an order state polls ``GET /v1/orders/{id}``:
a handful of customers at a few requests a second is nothing for the switch, and polling has
no connection to lose mid-demo.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import trio

from .procs import DemoError

__all__ = ["ApiError", "SwitchClient"]

POLL_S = 0.25


class ApiError(DemoError):
    def __init__(self, status: int, body: Any, what: str) -> None:
        super().__init__(f"{what}: {status} {body}")
        self.status = status
        self.body = body


class SwitchClient:
    def __init__(self, base_url: str, client: httpx.AsyncClient, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _request(self, method: str, path: str, body: Any = None, *, key: bool = False) -> Any:
        headers = dict(self.headers)
        if key:
            headers["Idempotency-Key"] = secrets.token_hex(16)
        what = f"{method} {path}"
        for attempt in range(3):  # a dropped connection is retried under the same key
            try:
                reply = await self.client.request(
                    method, self.base_url + path, json=body, headers=headers, timeout=30.0
                )
                break
            except httpx.TransportError as exc:
                if attempt == 2:
                    raise DemoError(f"{what}: {exc!r}") from None
                await trio.sleep(0.5)
        if reply.status_code >= 400:
            try:
                payload: Any = reply.json()
            except ValueError:
                payload = reply.text
            raise ApiError(reply.status_code, payload, what)
        return reply.json()

    async def create_order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        view: dict[str, Any] = await self._request("POST", "/v1/orders", dict(body), key=True)
        return view

    async def order(self, order_id: str) -> dict[str, Any]:
        view: dict[str, Any] = await self._request("GET", f"/v1/orders/{order_id}")
        return view

    async def cancel(self, order_id: str) -> dict[str, Any]:
        view: dict[str, Any] = await self._request("POST", f"/v1/orders/{order_id}/cancel")
        return view

    async def pumps(self, station_id: str) -> list[dict[str, Any]]:
        page = await self._request("GET", f"/v1/stations/{station_id}/pumps")
        items: list[dict[str, Any]] = page["items"]
        return items

    async def pay_pump(
        self, station_id: str, pump_no: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/v1/stations/{station_id}/pumps/{pump_no}/pay"
        view: dict[str, Any] = await self._request("POST", path, dict(body), key=True)
        return view

    async def wait_order(
        self,
        order_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        seen: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until ``done(view)`` or the order is terminal; DemoError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            view = await self.order(order_id)
            if seen is not None:
                seen(view)
            if done(view) or view["terminal"]:
                return view
            if time.monotonic() > deadline:
                raise DemoError(f"order {order_id} stuck in {view['state']}")
            await trio.sleep(POLL_S)

    async def wait_payable(
        self, station_id: str, pump_no: int, known: set[int], timeout: float
    ) -> dict[str, Any]:
        """The first sale in the pump's payable list that ``known`` does not hold yet."""
        deadline = time.monotonic() + timeout
        while True:
            for pump in await self.pumps(station_id):
                if pump["pump_no"] != pump_no:
                    continue
                for sale in pump["payable"]:
                    if sale["pump_sale_seq"] not in known and not sale.get("locked_by"):
                        return dict(sale)
            if time.monotonic() > deadline:
                raise DemoError(f"no payable sale appeared at {station_id}/{pump_no}")
            await trio.sleep(POLL_S)
