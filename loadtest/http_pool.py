"""A lean HTTP/1.1 client for the load generator: kept-alive connections to one origin.

The load generator shares the machine's cores with the switch it measures, so every request
it makes should cost it as little as possible: httpx (with httpcore's connection pool, which
looks at every pooled connection for every request) measured 0.8-1.4 ms of CPU per request
here, which at 200 customers a second was most of a core. This client does only what the
customers need: one origin, HTTP/1.1 with keep-alive, ``h11`` as the sans-IO framing (the
same codec httpx and hypercorn use underneath), trio streams underneath, a LIFO of idle
connections (the most recently used one is the least likely to have been closed by the
server) and a bound on how many are open.

A kept-alive connection the server closed meanwhile fails on first use; a request that
fails on a reused connection before any answer is sent again once on a new one (safe:
the customers' GETs are reads and their POSTs carry an Idempotency-Key). Every other
failure, and no full answer within ``timeout_s``, is :class:`TransportFailed`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["HttpPool", "Reply", "TransportFailed"]

IDLE_MAX_S: Final = 4.0  # below hypercorn's keep-alive timeout (5 s): not closed under us
# A burst of customers must not open hundreds of connections at once: beyond the server's
# listen backlog (hypercorn: 100) connection attempts are dropped and retried by the kernel
# after 1, 3, 7... s. A few at a time, and whoever waits takes a connection that came back.
CONNECTING: Final = 16
CONNECT_TIMEOUT_S: Final = 5.0
RECEIVE_BYTES: Final = 65536

Headers = Sequence[tuple[str, str]]


class TransportFailed(Exception):
    """No answer: refused, reset, closed or too slow."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content: bytes


class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.used_at = time.monotonic()
        self.reused = False

    async def exchange(self, request: h11.Request, body: bytes) -> Reply:
        send = self.h11.send
        data = send(request) or b""
        if body:
            data += send(h11.Data(data=body)) or b""
        data += send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(RECEIVE_BYTES))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Reply(status, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportFailed("the server closed the connection")

    def reusable(self) -> bool:
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        self.used_at = time.monotonic()
        self.reused = True
        return True


class HttpPool:
    """Requests to ``base_url`` over at most ``size`` connections at a time."""

    def __init__(self, base_url: str, *, size: int = 1000, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"not an http:// URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._authority = parts.netloc
        self.timeout_s = timeout_s
        self._idle: deque[_Connection] = deque()  # oldest left, newest right
        self._slots = trio.Semaphore(size)
        self._connecting = trio.Semaphore(CONNECTING)
        self.opened = 0  # connections opened in all (a measure of churn)

    async def request(
        self, method: str, path: str, headers: Headers = (), body: bytes = b""
    ) -> Reply:
        """One request; :class:`TransportFailed` when no answer came."""
        fields = [("Host", self._authority), *headers, ("Content-Length", str(len(body)))]
        request = h11.Request(method=method, target=self.prefix + path, headers=fields)
        async with self._slots:
            for _ in range(2):
                connection = await self._connection()
                try:
                    with trio.fail_after(self.timeout_s):
                        reply = await connection.exchange(request, body)
                except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
                    await connection.stream.aclose()
                    if connection.reused:
                        continue  # closed by the server while idle: once more, on a new one
                    raise TransportFailed(str(exc) or type(exc).__name__) from exc
                except (trio.TooSlowError, TransportFailed) as exc:
                    await connection.stream.aclose()
                    raise TransportFailed(str(exc) or type(exc).__name__) from exc
                if connection.reusable():
                    self._idle.append(connection)
                else:
                    await connection.stream.aclose()
                return reply
        raise TransportFailed("the connection failed twice")

    async def _connection(self) -> _Connection:
        stale = time.monotonic() - IDLE_MAX_S
        while self._idle and self._idle[0].used_at < stale:
            await self._idle.popleft().stream.aclose()
        if self._idle:
            return self._idle.pop()
        async with self._connecting:
            if self._idle:  # one came back while this waited to connect
                return self._idle.pop()
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    stream = await trio.open_tcp_stream(self.host, self.port)
            except (OSError, trio.TooSlowError) as exc:
                raise TransportFailed(str(exc) or type(exc).__name__) from exc
        self.opened += 1
        return _Connection(stream)

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().stream.aclose()
