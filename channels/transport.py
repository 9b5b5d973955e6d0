"""HTTP for the adapters: httpx on trio, with httpx's exceptions mapped to ``ChannelError``.

The only distinction the switch needs from a failed exchange is whether the provider may have
received the request. A refused or failed connection means it did not (TECHNICAL_FAILURE, safe
to fail over); a timeout or a broken connection after the request went out means it may have
(UNKNOWN: query before anything else). httpx reports the two as different exception classes,
and this module is the one place that knows them.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from channels.model import ChannelError

__all__ = ["HttpLimits", "Request", "Response", "Transport"]


@dataclass(frozen=True, slots=True)
class Request:
    """A request as a provider core builds it: ``target`` is path plus query string."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 32
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 10.0
    write_timeout_s: float = 5.0
    pool_timeout_s: float = 5.0
    max_body_bytes: int = 64 * 1024 * 1024  # bills can be large; API replies are small


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every channel: building one loads the CA bundle
    (about 70 ms), and httpx builds a new one per client unless it is given one."""
    return httpx.create_ssl_context()


class Transport:
    """One httpx.AsyncClient per channel, so one slow provider cannot starve another's pool."""

    def __init__(self, base_url: str, limits: HttpLimits | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits or HttpLimits()
        lim = self.limits
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            verify=_tls_context(),
            limits=httpx.Limits(
                max_connections=lim.max_connections,
                max_keepalive_connections=lim.max_connections,
            ),
            timeout=httpx.Timeout(
                connect=lim.connect_timeout_s,
                read=lim.read_timeout_s,
                write=lim.write_timeout_s,
                pool=lim.pool_timeout_s,
            ),
        )
        self.requests = 0
        self.failures = 0

    async def send(self, request: Request) -> Response:
        self.requests += 1
        try:
            reply = await self._client.request(
                request.method,
                request.target,
                headers=dict(request.headers),
                content=request.body or None,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self.failures += 1
            raise ChannelError("connect", f"{type(exc).__name__}: {exc}", sent=False) from exc
        except httpx.TimeoutException as exc:
            self.failures += 1
            raise ChannelError("timeout", f"{type(exc).__name__}: {exc}", sent=True) from exc
        except httpx.HTTPError as exc:
            self.failures += 1
            raise ChannelError("transport", f"{type(exc).__name__}: {exc}", sent=True) from exc
        if len(reply.content) > self.limits.max_body_bytes:
            raise ChannelError("oversized", f"{len(reply.content)} bytes", sent=True)
        return Response(
            status=reply.status_code,
            headers={k.lower(): v for k, v in reply.headers.items()},
            body=reply.content,
        )

    async def fetch_url(self, url: str) -> bytes:
        """GET an absolute URL (bill downloads), unsigned."""
        response = await self.send(Request("GET", url))
        if response.status != 200:
            raise ChannelError("http_status", f"download answered {response.status}", sent=True)
        return response.body

    def statistics(self) -> dict[str, int]:
        return {"requests": self.requests, "failures": self.failures}

    async def aclose(self) -> None:
        await self._client.aclose()
