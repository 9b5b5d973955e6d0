"""The customer and station HTTP API (``/v1``): tokens, idempotency keys, routes, order events.

``mount_api`` adds the routes to the app made by ``switch.http.create_app``; the switch behind
them is any :class:`switch.service.SwitchService`.
"""

from .admission import Admission, AdmissionLimits, LagMeter, Overload, Shed, decide
from .auth import MIN_SECRET_BYTES, InvalidToken, Principal, Role, TokenSigner
from .deps import Api
from .events import KEEPALIVE, OrderEventStream, sse_event
from .idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    Claim,
    IdempotencyStore,
    StoredResponse,
    request_fingerprint,
)
from .problems import ApiProblem, Problem, problem_type, service_problem
from .routes import mount_api
from .views import (
    degrees_to_e6,
    e6_to_degrees,
    order_view_to_json,
    price_set_view_to_json,
    pump_view_to_json,
    refund_view_to_json,
    station_view_to_json,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "KEEPALIVE",
    "MIN_SECRET_BYTES",
    "REPLAYED_HEADER",
    "Admission",
    "AdmissionLimits",
    "Api",
    "ApiProblem",
    "Claim",
    "IdempotencyStore",
    "InvalidToken",
    "LagMeter",
    "OrderEventStream",
    "Overload",
    "Principal",
    "Problem",
    "Role",
    "Shed",
    "StoredResponse",
    "TokenSigner",
    "decide",
    "degrees_to_e6",
    "e6_to_degrees",
    "mount_api",
    "order_view_to_json",
    "price_set_view_to_json",
    "problem_type",
    "pump_view_to_json",
    "refund_view_to_json",
    "request_fingerprint",
    "service_problem",
    "sse_event",
    "station_view_to_json",
]
