"""A stand-in for the switch and the pump simulator: the load generator measured alone.

Whether the load generator keeps its schedule at 200 arrivals/s cannot be judged against a
real switch on the same two cores: the switch's slowness and the generator's own would mix.
The stand-in answers the few calls a customer makes (create or pay an order, read it, read
a station's pumps; the pump simulator's control commands) at once and at almost no cost, over
real sockets, so what is left is the generator's own cost and lag (``python -m
loadtest.gen_probe``). It also plays the switch's refusals, for the driver's tests: every
order creation turned away (503 ``/problems/overloaded``) or the first few answered as by a
switch that is starting up (503 ``/problems/unavailable``).

An order is created the first time its Idempotency-Key is seen (a retry under the same key
gets the same order) and is ``completed`` ``sale_s`` seconds later.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switch.http.server import serve_http

__all__ = ["StandIn", "serve_standin"]

VOLUME_ML = 3_000
STATION_PUMPS = 20  # pumps listed per station (more than any run's --pumps-per-station)


@dataclass(slots=True)
class StandIn:
    """What the stand-in does, and what it saw."""

    sale_s: float = 1.0
    shed_all: bool = False  # every order creation: 503 overloaded
    shed_first: int = 0  # the first N creation requests: 503 overloaded
    unavailable_first: int = 0  # the first N creation requests: 503 unavailable
    requests: Counter[str] = field(default_factory=Counter)  # "POST create", "GET order", ...
    keys: list[str] = field(default_factory=list)  # Idempotency-Key of every creation request
    control_calls: int = 0
    _orders: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> id, created
    _created: dict[str, float] = field(default_factory=dict)  # id -> created (time.time())
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def create(self, key: str) -> tuple[int, dict[str, Any]]:
        """The status and body answering a creation under ``key``."""
        self.keys.append(key)
        if self.shed_all or len(self.keys) <= self.shed_first:
            return 503, _problem("overloaded", "the switch is full")
        if len(self.keys) <= self.unavailable_first:
            return 503, _problem("unavailable", "the switch is starting")
        known = self._orders.get(key)
        if known is None:
            order_id = f"O{next(self._ids):016d}"
            known = self._orders[key] = (order_id, time.time())
            self._created[order_id] = known[1]
        return 201, _order(known[0], known[1], done=None)

    def order(self, order_id: str) -> tuple[int, dict[str, Any]]:
        created = self._created.get(order_id)
        if created is None:
            return 404, _problem("not-found", "no such order")
        done = created + self.sale_s
        return 200, _order(order_id, created, done=done if time.time() >= done else None)


def _problem(code: str, detail: str) -> dict[str, Any]:
    return {"type": f"/problems/{code}", "title": detail, "status": 503}


def _order(order_id: str, created: float, *, done: float | None) -> dict[str, Any]:
    at = datetime.fromtimestamp(created if done is None else done, UTC).isoformat()
    return {
        "id": order_id,
        "state": "created" if done is None else "completed",
        "terminal": done is not None,
        "updated_at": at,
        "volume_ml": None if done is None else VOLUME_ML,
    }


def _json(status: int, body: Any) -> Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    media = "application/problem+json" if status >= 400 else "application/json"
    return Response(orjson.dumps(body), status, headers=headers, media_type=media)


def _app(standin: StandIn) -> Starlette:
    async def create(request: Request) -> Response:
        standin.requests["POST create"] += 1
        await request.body()
        return _json(*standin.create(request.headers.get("idempotency-key", "")))

    async def order(request: Request) -> Response:
        standin.requests["GET order"] += 1
        return _json(*standin.order(request.path_params["order_id"]))

    async def pumps(request: Request) -> Response:
        standin.requests["GET pumps"] += 1
        items = [
            {"pump_no": n, "payable": [{"pump_sale_seq": 1}]} for n in range(1, STATION_PUMPS + 1)
        ]
        return _json(200, {"items": items})

    return Starlette(
        routes=[
            Route("/v1/orders", create, methods=["POST"]),
            Route("/v1/orders/{order_id}", order, methods=["GET"]),
            Route("/v1/stations/{sid}/pumps", pumps, methods=["GET"]),
            Route("/v1/stations/{sid}/pumps/{pump}/pay", create, methods=["POST"]),
        ]
    )


async def _control(standin: StandIn, stream: trio.SocketStream) -> None:
    """The pump simulator's JSON-lines control protocol: every command succeeds."""
    buffer = bytearray()
    async with stream:
        while data := await stream.receive_some(65536):
            buffer += data
            lines = buffer.count(b"\n")
            del buffer[: buffer.rfind(b"\n") + 1]
            standin.control_calls += lines
            await stream.send_all(b'{"ok":true}\n' * lines)


async def serve_standin(
    standin: StandIn, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; started with (HTTP base URL, control port)."""
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_http, _app(standin))
        serve_control = partial(trio.serve_tcp, partial(_control, standin), 0, host="127.0.0.1")
        listeners = await nursery.start(serve_control)
        port = int(listeners[0].socket.getsockname()[1])
        task_status.started((bound.url, port))


async def _main(sale_s: float) -> None:
    """Serve until killed; the ready line (as the simulators print it) on stdout."""
    async with trio.open_nursery() as nursery:
        url, port = await nursery.start(serve_standin, StandIn(sale_s=sale_s))
        sys.stdout.write(orjson.dumps({"http": url, "control_port": port}).decode() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m loadtest.standin")
    parser.add_argument("--sale-s", type=float, default=1.0, help="seconds until completed")
    trio.run(_main, parser.parse_args().sale_s)
