"""The customer and station API under ``/v1``: stations, pumps, orders, refunds, prices.

Routes are thin: authenticate, validate (pydantic), call :class:`switch.service.SwitchService`,
write the view as JSON. Requests that move money or create things (create an order, pay a pump
sale, refund) run under an ``Idempotency-Key`` (:mod:`switch.api.idempotency`); the others are
idempotent by nature (reads, cancel, open/close, setting prices).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import Response

from ops.metrics import METRICS, Metrics
from switch.service import NotFound, OrderView, SwitchService
from switch.store import Database, OrderSubscription, OrderUpdates, StoreUnavailable

from .admission import Admission
from .admission_metrics import publish_admission
from .auth import TokenSigner
from .deps import (
    IDEMPOTENCY_PARAMETER,
    Admitted,
    Api,
    ApiDep,
    Authenticated,
    Customer,
    StationStaff,
    json_response,
)
from .events import EVENT_STREAM, OrderEventStream
from .idempotency import IDEMPOTENCY_HEADER, Claim, IdempotencyStore, request_fingerprint
from .models import (
    CreateOrderBody,
    OrderOut,
    PayPumpSaleBody,
    PricesBody,
    PriceSetOut,
    PumpList,
    PumpOut,
    RefundBody,
    RefundOut,
    StationList,
    StationOut,
)
from .problems import API_PREFIX, ApiProblem, install_problem_handlers, problem_responses
from .shed_gate import ShedGate
from .views import (
    degrees_to_e6,
    order_view_to_json,
    price_set_view_to_json,
    pump_view_to_json,
    refund_view_to_json,
    station_view_to_json,
)

__all__ = ["mount_api", "router"]

log = structlog.get_logger("api")

router = APIRouter(prefix=API_PREFIX)

StationId = Annotated[str, Path(min_length=1, max_length=64)]
PumpNo = Annotated[int, Path(ge=1, le=99)]
OrderId = Annotated[str, Path(pattern=r"^O[0-9A-F]{16}$", examples=["O3FA29C0B7D11E402"])]
_IDEMPOTENT = {"parameters": [IDEMPOTENCY_PARAMETER]}
_MONEY = (400, 401, 404, 409, 422, 428, 503)


def _coordinate(text: str, name: str, limit: int) -> int:
    try:
        return degrees_to_e6(text, limit)
    except ValueError as invalid:
        error = {"loc": ["query", name], "msg": str(invalid), "type": "value_error"}
        raise ApiProblem(422, "invalid-request", f"{name}: {invalid}", errors=[error]) from None


@router.get(
    "/stations",
    response_model=StationList,
    responses=problem_responses(401, 422),
    summary="Stations near a point, nearest first",
)
async def stations_near(
    api: ApiDep,
    _: Authenticated,
    lat: Annotated[str, Query(description="decimal degrees, <= 6 decimals", examples=["31.2"])],
    lon: Annotated[str, Query(description="decimal degrees, <= 6 decimals", examples=["121.4"])],
    radius_m: Annotated[int, Query(ge=1, le=200_000)] = 5_000,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    lat_e6, lon_e6 = _coordinate(lat, "lat", 90), _coordinate(lon, "lon", 180)
    views = await api.service.stations_near(lat_e6, lon_e6, radius_m, limit)
    return json_response({"items": [station_view_to_json(view) for view in views]})


@router.get(
    "/stations/{station_id}",
    response_model=StationOut,
    responses=problem_responses(401, 404, 422),
    summary="One station: position, opening, prices, free pumps",
)
async def station(api: ApiDep, _: Authenticated, station_id: StationId) -> Response:
    return json_response(station_view_to_json(await api.service.station(station_id)))


@router.get(
    "/stations/{station_id}/pumps",
    response_model=PumpList,
    responses=problem_responses(401, 404, 422),
    summary="The station's pumps, live: state, free, sales waiting to be paid",
)
async def pumps(api: ApiDep, _: Authenticated, station_id: StationId) -> Response:
    views = await api.service.pumps(station_id)
    return json_response({"items": [pump_view_to_json(view) for view in views]})


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderOut,
    responses=problem_responses(*_MONEY),
    openapi_extra=_IDEMPOTENT,
    summary="Create a prepay order: hold the preset, then authorize the pump",
)
async def create_order(
    _: Admitted, api: ApiDep, customer: Customer, body: CreateOrderBody, request: Request
) -> Response:
    async def operation(claim: Claim) -> Response:
        order_id = claim.resource_id("O")
        view = await _made_before(api, customer.subject, claim, order_id)
        if view is None:
            view = await api.service.create_order(customer.subject, body.to_request(order_id))
        location = f"/v1/orders/{view.id}"
        return json_response(order_view_to_json(view), 201, headers={"Location": location})

    return await _idempotent(api, request, customer.key, body.model_dump(mode="json"), operation)


@router.post(
    "/stations/{station_id}/pumps/{pump_no}/pay",
    status_code=201,
    response_model=OrderOut,
    responses=problem_responses(*_MONEY),
    openapi_extra=_IDEMPOTENT,
    summary="Post-pay: pay for the completed sale waiting at the pump",
)
async def pay_pump_sale(
    _: Admitted,
    api: ApiDep,
    customer: Customer,
    station_id: StationId,
    pump_no: PumpNo,
    body: PayPumpSaleBody,
    request: Request,
) -> Response:
    async def operation(claim: Claim) -> Response:
        order_id = claim.resource_id("O")
        view = await _made_before(api, customer.subject, claim, order_id)
        if view is None:
            paid = body.to_request(station_id, pump_no, order_id)
            view = await api.service.pay_pump_sale(customer.subject, paid)
        location = f"/v1/orders/{view.id}"
        return json_response(order_view_to_json(view), 201, headers={"Location": location})

    return await _idempotent(api, request, customer.key, body.model_dump(mode="json"), operation)


@router.get(
    "/orders/{order_id}",
    response_model=OrderOut,
    responses=problem_responses(401, 404, 422),
    summary="One of the customer's orders",
)
async def order(api: ApiDep, customer: Customer, order_id: OrderId) -> Response:
    return json_response(order_view_to_json(await api.service.order(customer.subject, order_id)))


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses=problem_responses(401, 404, 409, 422),
    summary="Cancel before fuelling starts (the hold is released)",
)
async def cancel_order(api: ApiDep, customer: Customer, order_id: OrderId) -> Response:
    view = await api.service.cancel_order(customer.subject, order_id)
    return json_response(order_view_to_json(view))


@router.post(
    "/orders/{order_id}/refunds",
    status_code=202,
    response_model=RefundOut,
    responses=problem_responses(*_MONEY),
    openapi_extra=_IDEMPOTENT,
    summary="Refund part or all of a completed order (the key is the refund's request key)",
)
async def refund_order(
    api: ApiDep, customer: Customer, order_id: OrderId, body: RefundBody, request: Request
) -> Response:
    async def operation(claim: Claim) -> Response:
        view = await api.service.refund_order(
            customer.subject, order_id, body.amount_fen, body.reason, claim.key
        )
        return json_response(refund_view_to_json(view), 202)

    return await _idempotent(api, request, customer.key, body.model_dump(mode="json"), operation)


@router.get(
    "/orders/{order_id}/events",
    status_code=200,
    response_class=OrderEventStream,
    responses={
        200: {
            "description": "`event: order` with the order (as OrderOut) now and on every "
            "change; `: keepalive` comments; ends after a terminal order",
            "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 404, 422),
    },
    summary="Follow an order live (server-sent events)",
)
async def order_events(api: ApiDep, customer: Customer, order_id: OrderId) -> Response:
    subscription: OrderSubscription | None = None
    try:  # before reading the order: an update in between is then queued, not lost
        subscription = await api.updates.subscribe(order_id)
    except StoreUnavailable as exc:
        log.warning("api.order_events_polling", order_id=order_id, error=str(exc))

    async def reread() -> dict[str, Any]:
        return order_view_to_json(await api.service.order(customer.subject, order_id))

    handed_over = False
    try:
        first = await reread()
        stream = OrderEventStream(
            first,
            subscription,
            reread,
            counters=api.streams,
            keepalive_s=api.keepalive_s,
            poll_s=api.poll_s,
        )
        handed_over = True
        return stream
    finally:
        if not handed_over and subscription is not None:
            await subscription.aclose()


@router.put(
    "/stations/{station_id}/prices",
    response_model=PriceSetOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Staff: set the station's prices (now or at effective_at)",
)
async def set_prices(
    api: ApiDep, staff: StationStaff, station_id: StationId, body: PricesBody
) -> Response:
    items = [item.to_item() for item in body.items]
    view = await api.service.set_prices(staff.subject, station_id, items, body.effective_at)
    return json_response(price_set_view_to_json(view))


async def _set_open(api: Api, staff_id: str, station_id: str, pump_no: int, open: bool) -> Response:
    view = await api.service.set_pump_open(staff_id, station_id, pump_no, open)
    return json_response(pump_view_to_json(view))


@router.post(
    "/stations/{station_id}/pumps/{pump_no}/close",
    response_model=PumpOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Staff: close a pump (no new orders; a sale in progress finishes)",
)
async def close_pump(
    api: ApiDep, staff: StationStaff, station_id: StationId, pump_no: PumpNo
) -> Response:
    return await _set_open(api, staff.subject, station_id, pump_no, False)


@router.post(
    "/stations/{station_id}/pumps/{pump_no}/open",
    response_model=PumpOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Staff: open a pump again",
)
async def open_pump(
    api: ApiDep, staff: StationStaff, station_id: StationId, pump_no: PumpNo
) -> Response:
    return await _set_open(api, staff.subject, station_id, pump_no, True)


async def _made_before(api: Api, customer_id: str, claim: Claim, order_id: str) -> OrderView | None:
    """The order this request made on its first run, when this is a second run (the first
    one's process died before answering): the customer learns what became of it, and no
    second order is made. Asked of taken-over claims only: a first run has nothing to find,
    and every create would pay a database read for it."""
    if not claim.taken_over:
        return None
    try:
        return await api.service.order(customer_id, order_id)
    except NotFound:
        return None


async def _idempotent(
    api: Api,
    request: Request,
    principal: str,
    body: dict[str, Any],
    operation: Callable[[Claim], Awaitable[Response]],
) -> Response:
    fingerprint = request_fingerprint(request.method, request.url.path, body)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    return await api.idempotency.run(principal, key, fingerprint, request.url.path, operation)


def mount_api(
    app: FastAPI,
    *,
    service: SwitchService,
    signer: TokenSigner,
    db: Database,
    updates: OrderUpdates,
    clock: Callable[[], float] = time.time,
    keepalive_s: float = 15.0,
    poll_s: float = 2.0,
    idempotency_ttl_s: float = 24 * 3600,
    admission: Admission | None = None,
    metrics: Metrics | None = None,
) -> Api:
    """Add the ``/v1`` routes to ``app`` (made by ``switch.http.create_app``); the returned
    :class:`Api` has the counters (``statistics()``) for the process's snapshot.
    ``admission`` gates new orders (None: every one is admitted); its figures go to
    ``metrics`` (default: the process's)."""
    api = Api(
        service=service,
        signer=signer,
        idempotency=IdempotencyStore(db, ttl_s=idempotency_ttl_s, clock=clock),
        updates=updates,
        clock=clock,
        keepalive_s=keepalive_s,
        poll_s=poll_s,
        admission=admission,
    )
    if admission is not None:
        publish_admission(METRICS if metrics is None else metrics, admission)
        app.add_middleware(ShedGate, admission=admission, key_known=api.idempotency.key_taken)
    app.state.fuelswitch_api = api
    install_problem_handlers(app)
    app.include_router(router)
    return api
