"""What every route needs: the mounted :class:`Api`, the caller's verified principal, JSON.

The ``Api`` object lives in ``app.state`` and dependencies find it there, so the routes can be
declared once at import time (and typed for FastAPI and mypy) while the service, signer and
stores they use are chosen by ``mount_api`` at start-up.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, cast

import orjson
from fastapi import Depends, Path, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from switch.service import SwitchService
from switch.store import OrderUpdates

from .admission import Admission
from .auth import InvalidToken, Principal, Role, TokenSigner
from .events import StreamCounters
from .idempotency import IDEMPOTENCY_HEADER, KEY_PATTERN, IdempotencyStore
from .problems import ApiProblem

__all__ = [
    "IDEMPOTENCY_PARAMETER",
    "Admitted",
    "Api",
    "ApiDep",
    "Authenticated",
    "Customer",
    "StationStaff",
    "json_response",
]


class Api:
    """The API's runtime: what ``mount_api`` was given, and its counters."""

    def __init__(
        self,
        *,
        service: SwitchService,
        signer: TokenSigner,
        idempotency: IdempotencyStore,
        updates: OrderUpdates,
        clock: Callable[[], float] = time.time,
        keepalive_s: float = 15.0,
        poll_s: float = 2.0,
        admission: Admission | None = None,
    ) -> None:
        self.service = service
        self.signer = signer
        self.idempotency = idempotency
        self.updates = updates
        self.clock = clock
        self.keepalive_s = keepalive_s
        self.poll_s = poll_s
        self.streams = StreamCounters()
        self.admission = admission

    def statistics(self) -> dict[str, Any]:
        return {
            "admission": None if self.admission is None else self.admission.statistics(),
            "tokens": self.signer.statistics(),
            "idempotency": self.idempotency.statistics(),
            "order_streams": self.streams.statistics(),
        }


def _api(request: Request) -> Api:
    return cast(Api, request.app.state.fuelswitch_api)


ApiDep = Annotated[Api, Depends(_api)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="fuelswitch HMAC token",
    description="`fuelswitch token --customer ID` or `--staff ID --station S` prints one.",
)


def _unauthorized(detail: str, *, error: bool = True) -> ApiProblem:
    # RFC 6750: no error code when no credentials came at all, invalid_token otherwise.
    challenge = 'Bearer error="invalid_token"' if error else 'Bearer realm="fuelswitch"'
    return ApiProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


async def _authenticated(
    api: ApiDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthorized("an Authorization: Bearer token is required", error=False)
    try:
        return api.signer.verify(credentials.credentials, api.clock())
    except InvalidToken as invalid:
        raise _unauthorized(invalid.detail) from None


Authenticated = Annotated[Principal, Depends(_authenticated)]


async def _customer(principal: Authenticated) -> Principal:
    if principal.role is not Role.CUSTOMER:
        raise _unauthorized(f"this route needs a customer token, not a {principal.role} token")
    return principal


Customer = Annotated[Principal, Depends(_customer)]


async def _station_staff(
    principal: Authenticated, station_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> Principal:
    if principal.role is not Role.STAFF:
        raise _unauthorized(f"this route needs a staff token, not a {principal.role} token")
    if not principal.manages(station_id):
        raise ApiProblem(
            403, "forbidden", f"staff {principal.subject} has no role at station {station_id}"
        )
    return principal


StationStaff = Annotated[Principal, Depends(_station_staff)]


async def _admitted(api: ApiDep) -> AsyncIterator[None]:
    """Count an order creation as in progress until its route is done (admission control's
    ``creating`` bound). Refusals are answered before the framework, by
    :class:`switch.api.shed_gate.ShedGate`: what reaches the route was let in."""
    admission = api.admission
    if admission is None:
        yield
        return
    admission.admit()
    try:
        yield
    finally:
        admission.done()


Admitted = Annotated[None, Depends(_admitted)]


def json_response(
    data: dict[str, Any], status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": True,
    "description": "A fresh random value per request; retry the same request with the same "
    "key to get its answer again (kept 24 h). Another request with a used key is a 422; a "
    "retry while the first is still running is a 409.",
    "schema": {"type": "string", "pattern": KEY_PATTERN, "maxLength": 255},
}
