"""The switch's HTTP face: provider callbacks, health and metrics, errors as problem+json.

Callbacks are read as raw bytes, never parsed and re-serialised before verification (WeChat
signs the exact bytes), and they are read under two limits: a size (a callback is a few KiB,
so anything much larger is not one) and a deadline well inside WeChat's 5 s budget, so a slow
or stalled sender costs one request slot for a bounded time and never the server (case 18).

Every error the app produces is an RFC 9457 problem document (``application/problem+json``);
a 500 says nothing about what broke inside (that goes to the log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
import structlog
import trio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from channels.model import HttpReply, Provider
from ops.metrics import CONTENT_TYPE, METRICS, Metrics
from switch.payments.callbacks import CallbackProcessor, problem_reply

__all__ = ["PROBLEM_JSON", "BodyLimits", "create_app", "problem"]

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = 64 * 1024
    read_timeout_s: float = 2.0  # the whole body; WeChat waits 5 s for the entire answer


class _BodyRejected(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def problem(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    document: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        document["instance"] = instance
    document.update(extra)
    return Response(orjson.dumps(document), status, headers=headers, media_type=PROBLEM_JSON)


def _reply(reply: HttpReply) -> Response:
    return Response(reply.body, reply.status, media_type=reply.content_type)


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The raw body, or ``_BodyRejected`` (413 too large, 408 too slow)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _BodyRejected(
            413, "body_too_large", f"bodies are limited to {limits.max_bytes} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(limits.read_timeout_s) as scope:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_bytes:
                raise _BodyRejected(
                    413, "body_too_large", f"bodies are limited to {limits.max_bytes} bytes"
                )
            chunks.append(chunk)
    if scope.cancelled_caught:
        raise _BodyRejected(
            408, "body_timeout", f"the body did not arrive within {limits.read_timeout_s} s"
        )
    return b"".join(chunks)


def _callback_endpoint(
    processor: CallbackProcessor, provider: Provider, limits: BodyLimits
) -> Callable[[Request], Awaitable[Response]]:
    async def receive_callback(request: Request) -> Response:
        remote = None if request.client is None else f"{request.client.host}:{request.client.port}"
        try:
            body = await read_body(request, limits)
        except _BodyRejected as rejected:
            reply = problem_reply(
                rejected.status, HTTPStatus(rejected.status).phrase, rejected.detail
            )
            response = _reply(
                processor.reject(
                    provider, rejected.reason, rejected.detail, remote=remote, reply=reply
                )
            )
            # The rest of the body is never read, so this connection cannot carry another
            # request: say so, or a keep-alive client would send its next one into the void.
            response.headers["connection"] = "close"
            return response
        headers = {name.lower(): value for name, value in request.headers.items()}
        return _reply(await processor.handle(provider, headers, body, remote=remote))

    receive_callback.__name__ = f"callback_{provider.value}"
    return receive_callback


def create_app(
    *,
    callbacks: CallbackProcessor | None = None,
    metrics: Metrics | None = None,
    limits: BodyLimits = BodyLimits(),
) -> FastAPI:
    """The app; ``callbacks`` mounts ``POST /callbacks/<provider>`` for every provider (a
    provider with no configured channel answers 404 there)."""
    if metrics is None:
        metrics = METRICS if callbacks is None else callbacks.metrics
    app = FastAPI(title="fuelswitch", version="0.1.0")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            exc.status_code,
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Only where and what: echoing the rejected input back could leak it into logs.
        errors = [
            {
                "loc": [str(part) for part in e.get("loc", ())],
                "msg": e.get("msg"),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return problem(422, "the request is not valid", instance=request.url.path, errors=errors)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("http.unhandled", path=request.url.path, error=type(exc).__name__, exc_info=exc)
        return problem(500, "the server failed to handle the request", instance=request.url.path)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    if callbacks is not None:
        for provider in Provider:
            app.add_api_route(
                f"/callbacks/{provider.value}",
                _callback_endpoint(callbacks, provider, limits),
                methods=["POST"],
                summary=f"{provider.value} payment notifications",
                response_class=Response,
            )
    return app
