"""The simulators' control API: HTTP + JSON, for tests, load tests and people.

It is how a test plays the customer (POST /customer), breaks a provider (PUT /faults/{provider}),
moves time (POST /clock/advance), rotates a provider's keys and looks at what happened (GET
/ledger, GET /callbacks). Bad input is answered with 400 and ``{"error": code, "message": ..}``,
an unknown provider or trade with 404, a customer action the trade is not ready for with 409:
the control API never fails with a 500 because of what it was sent.

Endpoints::

    GET  /health
    POST /customer            {provider, merchant_id?, key, action: pay|decline|abandon}
    GET  /faults              every provider's settings
    GET  /faults/{provider}
    PUT  /faults/{provider}   the whole settings (fields left out: defaults)
    PATCH /faults/{provider}  only the fields given
    GET  /clock               {now, scale}
    POST /clock/advance       {seconds}
    POST /clock/scale         {scale}
    POST /keys/{provider}/rotate
    GET  /ledger              ?provider=&merchant_id=
    GET  /callbacks           ?provider=&event_key=&since=  (the delivery log, oldest first)
    GET  /material            what ``fuelswitch sim providers keys`` prints
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import orjson
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.model import Provider

from .base import CUSTOMER_ACTIONS, CustomerError, ProviderSim, SimContext
from .faults import FaultsError, ProviderFaults

__all__ = ["ControlError", "control_app"]

log = structlog.get_logger(__name__)

MAX_BODY: Final = 64 * 1024


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _json(data: object, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, default=str), status_code=status, media_type="application/json"
    )


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": code, "message": message}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ControlError(413, "too_large", f"the body exceeds {MAX_BODY} bytes")
    try:
        data = orjson.loads(bytes(raw) or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ControlError(400, "bad_json", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "bad_json", "the body must be a JSON object")
    return data


def _provider(value: object, status: int = 400) -> Provider:
    try:
        return Provider(value)
    except ValueError:
        names = ", ".join(p.value for p in Provider)
        raise ControlError(status, "unknown_provider", f"provider must be one of {names}") from None


def _string(data: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ControlError(400, "bad_request", f"{name} must be a non-empty string")
    return value


def _number(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(400, "bad_request", f"{name} must be a finite number")
    return float(value)


def control_app(ctx: SimContext, sims: Mapping[Provider, ProviderSim]) -> Starlette:
    """The control API over ``ctx`` and the running provider simulators."""

    def sim_of(provider: Provider) -> ProviderSim:
        sim = sims.get(provider)
        if sim is None:
            raise ControlError(404, "unknown_provider", f"{provider.value} is not simulated here")
        return sim

    async def health(request: Request) -> Response:
        return _json({"ok": True, "providers": [p.value for p in sims]})

    async def customer(request: Request) -> Response:
        data = await _body(request)
        sim = sim_of(_provider(data.get("provider")))
        key = _string(data, "key")
        action = _string(data, "action")
        if action not in CUSTOMER_ACTIONS:
            raise ControlError(400, "bad_request", f"action must be one of {CUSTOMER_ACTIONS}")
        merchant_id = _string(data, "merchant_id", required=False)
        if merchant_id is None:
            if not sim.merchants:
                raise ControlError(404, "unknown_merchant", "the provider has no merchants")
            merchant_id = sim.merchants[0].merchant_id
        elif ctx.merchant(sim.provider, merchant_id) is None:
            raise ControlError(404, "unknown_merchant", f"no merchant {merchant_id}")
        assert key is not None
        try:
            result = await sim.customer(merchant_id, key, action)
        except CustomerError as exc:
            raise ControlError(exc.status, exc.code, exc.message) from None
        return _json(result)

    async def all_faults(request: Request) -> Response:
        return _json(ctx.faults.to_json())

    async def faults(request: Request) -> Response:
        provider = _provider(request.path_params["provider"], 404)
        if request.method in ("PUT", "PATCH"):
            data = await _body(request)
            base = ctx.faults.get(provider) if request.method == "PATCH" else None
            try:
                ctx.faults.set(provider, ProviderFaults.from_json(data, base))
            except FaultsError as exc:
                raise ControlError(400, "bad_faults", str(exc)) from None
            log.info("sim.faults_set", provider=provider.value, settings=data)
        return _json(ctx.faults.get(provider).to_json())

    async def clock(request: Request) -> Response:
        return _json({"now": ctx.clock.now(), "scale": ctx.clock.scale})

    async def advance(request: Request) -> Response:
        seconds = _number(await _body(request), "seconds")
        try:
            now = ctx.clock.advance(seconds)
        except ValueError as exc:
            raise ControlError(400, "bad_request", str(exc)) from None
        return _json({"now": now, "scale": ctx.clock.scale})

    async def scale(request: Request) -> Response:
        value = _number(await _body(request), "scale")
        try:
            ctx.clock.set_scale(value)
        except ValueError as exc:
            raise ControlError(400, "bad_request", str(exc)) from None
        return _json({"now": ctx.clock.now(), "scale": ctx.clock.scale})

    async def rotate(request: Request) -> Response:
        sim = sim_of(_provider(request.path_params["provider"], 404))
        return _json(sim.rotate_keys())

    async def ledger(request: Request) -> Response:
        query = request.query_params
        provider = _provider(query["provider"]) if query.get("provider") else None
        merchant_id = query.get("merchant_id") or None
        return _json(ctx.ledger.snapshot(provider, merchant_id))

    async def callbacks(request: Request) -> Response:
        query = request.query_params
        provider = _provider(query["provider"]) if query.get("provider") else None
        since = query.get("since", "0")
        if not since.isdigit():
            raise ControlError(400, "bad_request", "since must be a sequence number")
        records = ctx.callbacks.records(provider, query.get("event_key") or None, int(since))
        engine = ctx.callbacks
        return _json(
            {
                "pending": engine.pending,
                "given_up": engine.given_up,
                "records": [r.to_json() for r in records],
            }
        )

    async def material(request: Request) -> Response:
        return _json(
            {"keys": str(ctx.keys_dir), **{p.value: s.public_material() for p, s in sims.items()}}
        )

    async def control_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ControlError)
        return _error(exc.status, exc.code, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "bad_request"
        )
        return _error(exc.status_code, code, str(exc.detail))

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("sim.control_failed", path=request.url.path, error=repr(exc))
        return _error(500, "internal", repr(exc))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/customer", customer, methods=["POST"]),
        Route("/faults", all_faults, methods=["GET"]),
        Route("/faults/{provider}", faults, methods=["GET", "PUT", "PATCH"]),
        Route("/clock", clock, methods=["GET"]),
        Route("/clock/advance", advance, methods=["POST"]),
        Route("/clock/scale", scale, methods=["POST"]),
        Route("/keys/{provider}/rotate", rotate, methods=["POST"]),
        Route("/ledger", ledger, methods=["GET"]),
        Route("/callbacks", callbacks, methods=["GET"]),
        Route("/material", material, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ControlError: control_error,
            HTTPException: http_error,
            Exception: internal,
        },
    )
