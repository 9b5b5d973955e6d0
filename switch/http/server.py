"""Serving the app with hypercorn's trio worker, inside the switch's own nursery.

``serve_http`` is started with ``nursery.start`` and reports where it listens (port 0 picks a
free one, which is what tests and the simulators' callers need to know). It stops when its
``shutdown`` event is set (graceful: requests in flight may finish within ``graceful_timeout_s``)
or when its scope is cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import cast
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import Framework
from starlette.types import ASGIApp

__all__ = ["BoundServer", "serve_http"]


@dataclass(frozen=True, slots=True)
class BoundServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


async def serve_http(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown: trio.Event | None = None,
    graceful_timeout_s: float = 3.0,
    task_status: trio.TaskStatus[BoundServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    # hypercorn's own error log would add a plain-text stderr handler beside ours: route it
    # through the standard logger, which ops.logs renders like every other line.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = graceful_timeout_s
    trigger = None if shutdown is None else shutdown.wait
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, cast(Framework, app), config, shutdown_trigger=trigger)
        )
        bound = urlsplit(binds[0])
        if bound.port is None:
            raise RuntimeError(f"hypercorn reported no port: {binds}")
        task_status.started(BoundServer(host, bound.port))
