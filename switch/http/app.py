"""The switch's HTTP face: provider callbacks, health and metrics, errors as problem+json.

Callbacks are read as raw bytes, never parsed and re-serialised before verification (WeChat
signs the exact bytes), and they are read under two limits: a size (a callback is a few KiB,
so anything much larger is not one) and a deadline well inside WeChat's 5 s budget, so a slow
or stalled sender costs one request slot for a bounded time and never the server (case 18).

Every error the app produces is an RFC 9457 problem document (``application/problem+json``);
a 500 says nothing about what broke inside (that goes to the log).

Every request gets an id: the caller's ``X-Request-ID`` when it is sane (at most 64 characters
of ``[A-Za-z0-9._-]``: anything else could forge log lines or blow up an index), else a fresh
one. It is bound in structlog's contextvars while the request runs, so every line logged on
its behalf carries it, and echoed in the response, so a customer's complaint can be traced.
The same middleware times the request for ``fuelswitch_http_request_seconds``, labelled by the
matched route's template, never the raw path. It is plain ASGI, not Starlette's
``BaseHTTPMiddleware``: it binds and unbinds inside the one call, in the task hypercorn's trio
worker runs the request in, and adds no task of its own.

``GET /readyz`` asks the readiness probe (:mod:`switch.health`): 200 with the checks when the
switch can take traffic, 503 with the same shape (``status: not_ready``) when it cannot.
"""

from __future__ import annotations

import re
import time
import uuid
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actors import ActorError
from channels.model import HttpReply, Provider
from ops.metrics import CONTENT_TYPE, METRICS, Metrics
from switch.health import Readiness
from switch.payments.callbacks import CallbackProcessor, problem_reply
from switch.store.errors import StoreUnavailable

__all__ = ["PROBLEM_JSON", "REQUEST_ID", "BodyLimits", "create_app", "problem", "request_id"]

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REQUEST_ID_HEADER = REQUEST_ID.lower().encode()


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


def request_id(request: Request) -> str | None:
    """The id the middleware gave this request (None outside it)."""
    state = request.scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


class _RequestContext:
    """Request id (bound for the logs, echoed in the response) and the request's timing."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == _REQUEST_ID_HEADER), b"")
        text = given.decode("latin-1")
        rid = text if _SANE_REQUEST_ID.fullmatch(text) else uuid.uuid4().hex
        # In the scope too: the error handler outside this middleware answers 500s with it.
        scope.setdefault("state", {})["request_id"] = rid
        status = 500  # what the client gets if the app raises before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k != _REQUEST_ID_HEADER]
                headers.append((_REQUEST_ID_HEADER, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                self._observe(scope, 500, started)
                raise
        self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) if route is not None else None
        elapsed = time.perf_counter() - started
        self.metrics.observe_http(scope["method"], template, status, elapsed)


def _json(status: int, document: dict[str, Any]) -> Response:
    return Response(
        orjson.dumps(document),
        status,
        headers={"cache-control": "no-store"},
        media_type="application/json",
    )


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
    readiness: Callable[[], Awaitable[Readiness]] | None = None,
) -> FastAPI:
    """The app; ``callbacks`` mounts ``POST /callbacks/<provider>`` for every provider (a
    provider with no configured channel answers 404 there); ``readiness`` answers
    ``/readyz`` (without one, a switch that answers HTTP is ready)."""
    if metrics is None:
        metrics = METRICS if callbacks is None else callbacks.metrics
    app = FastAPI(title="fuelswitch", version="0.1.0")
    app.add_middleware(_RequestContext, metrics=metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            exc.status_code,
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(ActorError)
    async def overloaded(request: Request, exc: ActorError) -> Response:
        # An actor that did not answer in time (or whose mailbox is full) is a switch too
        # busy to take the request now: the client may try again; nothing was half done
        # that the journal and recovery do not already cover.
        log.warning("http.actor_unavailable", path=request.url.path, error=type(exc).__name__)
        return problem(
            503,
            "the switch is too busy to answer now; try again shortly",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> Response:
        # The database did not answer (in time): the outcome of a write in flight is
        # unknown, which the journal and recovery settle; the client retries with the same
        # Idempotency-Key and gets the one answer.
        log.warning("http.store_unavailable", path=request.url.path, error=str(exc))
        return problem(
            503,
            "the switch's database is not answering in time; try again shortly "
            "(with the same Idempotency-Key)",
            instance=request.url.path,
            headers={"Retry-After": "2"},
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
        # Outside the request-id middleware (Starlette runs this handler outermost): the id
        # comes from the scope, for the log line and the answer alike.
        rid = request_id(request)
        log.error(
            "http.unhandled",
            path=request.url.path,
            error=type(exc).__name__,
            request_id=rid,
            exc_info=exc,
        )
        return problem(
            500,
            "the server failed to handle the request",
            instance=request.url.path,
            headers={REQUEST_ID: rid} if rid else None,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/readyz")
    async def readyz() -> Response:
        if readiness is None:
            return _json(200, {"status": "ready", "checks": {}})
        answer = await readiness()
        document = answer.to_dict()
        if answer.ready:
            return _json(200, document)
        # Not an error of the request: the same shape as 200, with what failed in words.
        document["detail"] = "not ready: " + ", ".join(answer.failed)
        return _json(503, document)

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
