"""An order's updates as server-sent events, for the app to follow an order live.

The route subscribes to the order's Redis channel *before* it reads the current view, so an
update published in between arrives on the subscription instead of being lost; the stream then
sends ``event: order`` with that view, then every update, and ends after a terminal one.

Redis updates are hints (``switch.store.bus``): when Redis cannot subscribe, or the
subscription breaks mid-stream, the stream falls back to re-reading the order from the switch
every ``poll_s`` and sends what changed. While subscribed it still re-reads the order once
``poll_s`` after the first view and at every keepalive: publishers skip orders nobody watches,
and a publisher in another process learns of a new subscription a moment late. A
``: keepalive`` comment every ``keepalive_s`` keeps proxies and the mini-program's socket from
timing an idle stream out.

This is a raw ASGI response rather than a Starlette ``StreamingResponse`` because it needs a
nursery of its own (the Redis reader, the client-disconnect watcher), and a nursery cannot be
held open across an async generator's ``yield``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
import trio
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from switch.service import ServiceError
from switch.store import OrderSubscription, StoreUnavailable

__all__ = ["EVENT_STREAM", "KEEPALIVE", "OrderEventStream", "StreamCounters", "sse_event"]

log = structlog.get_logger("api")

EVENT_STREAM = "text/event-stream"
KEEPALIVE = b": keepalive\n\n"

Reread = Callable[[], Awaitable[dict[str, Any]]]


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamCounters:
    """Shared by every stream of one API (its ``statistics()``)."""

    def __init__(self) -> None:
        self.open = 0
        self.counts = dict.fromkeys(["started", "events", "keepalives", "polling"], 0)
        self._idle = trio.Event()
        self._idle.set()

    def statistics(self) -> dict[str, int]:
        return {"open": self.open, **self.counts}

    def opened(self) -> None:
        self.open += 1
        self.counts["started"] += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no stream is open (a graceful shutdown waits for this, bounded)."""
        while self.open:
            await self._idle.wait()


class _Disconnected(Exception):
    pass


class OrderEventStream(Response):
    media_type = EVENT_STREAM

    def __init__(
        self,
        first: dict[str, Any],
        subscription: OrderSubscription | None,
        reread: Reread,
        *,
        counters: StreamCounters,
        keepalive_s: float,
        poll_s: float,
    ) -> None:
        super().__init__(status_code=200, media_type=EVENT_STREAM)
        self.headers["cache-control"] = "no-store"
        self.headers["x-accel-buffering"] = "no"  # nginx: pass each event through at once
        del self.headers["content-length"]
        self._first = first
        self._subscription = subscription
        self._reread = reread
        self._counters = counters
        self._keepalive_s = keepalive_s
        self._poll_s = poll_s
        self._gone = False  # the client disconnected: send nothing more
        self._last = first  # the last view sent (or queued) to the client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        counters = self._counters
        counters.opened()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_disconnect, receive, nursery.cancel_scope)
                await self._stream(send, nursery)
                nursery.cancel_scope.cancel()
            if not self._gone:
                with contextlib.suppress(OSError):  # gone between the last event and now
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        except* _Disconnected:  # raised inside the nursery, so it arrives in a group
            pass
        finally:
            try:
                if self._subscription is not None:
                    await self._subscription.aclose()
            finally:
                counters.closed()

    async def _watch_disconnect(self, receive: Receive, scope: trio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._gone = True
                scope.cancel()
                return

    async def _send(self, send: Send, chunk: bytes) -> None:
        try:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:  # the client went away (ASGI servers may raise instead of ignoring)
            self._gone = True
            raise _Disconnected from None

    async def _stream(self, send: Send, nursery: trio.Nursery) -> None:
        await self._send(send, sse_event("order", self._first))
        self._counters.counts["events"] += 1
        if self._first.get("terminal"):
            return
        updates_in, updates_out = trio.open_memory_channel[dict[str, Any]](64)
        nursery.start_soon(self._follow, updates_in)
        async with updates_out:
            while True:
                update: dict[str, Any] | None = None
                with trio.move_on_after(self._keepalive_s):  # only the wait, never a send
                    try:
                        update = await updates_out.receive()
                    except trio.EndOfChannel:
                        return
                if update is None:
                    await self._send(send, KEEPALIVE)
                    self._counters.counts["keepalives"] += 1
                    continue
                await self._send(send, sse_event("order", update))
                self._counters.counts["events"] += 1
                if update.get("terminal"):
                    return

    async def _follow(self, updates: trio.MemorySendChannel[dict[str, Any]]) -> None:
        """Redis updates while the subscription lasts (with a re-read now and then), then
        polling the switch."""
        async with updates:
            self._last = self._first
            if self._subscription is not None:
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._catch_up, updates)
                        async for update in self._subscription:
                            self._last = update
                            await updates.send(update)
                        nursery.cancel_scope.cancel()
                except* StoreUnavailable as group:
                    log.warning("api.order_events_redis_lost", error=str(group.exceptions[0]))
                else:
                    return  # closed: the stream is ending
            self._counters.counts["polling"] += 1
            await self._poll(updates, self._poll_s, self._poll_s)

    async def _catch_up(self, updates: trio.MemorySendChannel[dict[str, Any]]) -> None:
        """Publishers skip orders nobody watches, and one in another process learns of this
        subscription within ``OrderUpdates``' refresh: re-read the order once ``poll_s`` after
        the first view (an update in that window is then sent late, never lost), and at every
        keepalive after that, in case Redis dropped an update (they are hints)."""
        await self._poll(updates, self._poll_s, self._keepalive_s)

    async def _poll(
        self, updates: trio.MemorySendChannel[dict[str, Any]], first_s: float, every_s: float
    ) -> None:
        delay = first_s
        while True:
            await trio.sleep(delay)
            delay = every_s
            try:
                current = await self._reread()
            except ServiceError:  # the order is no longer visible: nothing more to say
                return
            if current != self._last:
                self._last = current
                await updates.send(current)
