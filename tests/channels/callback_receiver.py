"""A real HTTP server that receives the simulators' callbacks, for tests: it records every
request and answers as the test scripts it (hypercorn on a free loopback port)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.types import Receive, Scope, Send

SAFE = 10.0  # a bound for what must happen, never a measurement


@dataclass(frozen=True, slots=True)
class Received:
    n: int  # 1 for the first request the receiver saw
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


Answer = Callable[[Received], tuple[int, bytes]]


def accept_all(request: Received) -> tuple[int, bytes]:
    return 204, b""


class Receiver:
    def __init__(self, answer: Answer = accept_all) -> None:
        self.answer = answer
        self.requests: list[Received] = []
        self.base_url = ""
        self._changed = trio.Event()

    def url(self, path: str = "/notify") -> str:
        return self.base_url + path

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 0.5

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(serve, self._app, config)
            self.base_url = binds[0]
            task_status.started(self.base_url)

    async def wait_for(self, count: int) -> list[Received]:
        """Until at least ``count`` requests have arrived (bounded by SAFE)."""
        with trio.fail_after(SAFE):
            while len(self.requests) < count:
                await self._changed.wait()
        return self.requests

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = Received(len(self.requests) + 1, scope["method"], scope["path"], headers, body)
        self.requests.append(request)
        self._changed.set()
        self._changed = trio.Event()
        status, reply = self.answer(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(reply)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": reply})
