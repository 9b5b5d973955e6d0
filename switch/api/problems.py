"""Refusals as RFC 9457 problem documents, with a stable ``type`` per kind of refusal.

Two sources: :class:`ApiProblem`, raised by the API layer itself (authentication, idempotency
keys, query parsing), and :class:`switch.service.ServiceError`, raised by the switch. Both
become ``application/problem+json`` through :func:`switch.http.app.problem`, so the API and the
rest of the app answer errors in one shape; ``type`` is ``/problems/<code>`` so that a client
can branch on it without parsing the English ``detail``.
"""

from __future__ import annotations

import inspect
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from switch.http.app import PROBLEM_JSON, problem
from switch.service import ServiceError

__all__ = [
    "ApiProblem",
    "Problem",
    "install_problem_handlers",
    "problem_responses",
    "problem_type",
    "service_problem",
]


API_PREFIX = "/v1"


def problem_type(code: str) -> str:
    return f"/problems/{code}"


class ApiProblem(Exception):
    """A refusal decided by the API layer (raise it from a route or a dependency)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def response(self, instance: str) -> Response:
        return problem(
            self.status,
            self.detail,
            instance=instance,
            headers=self.headers,
            type=problem_type(self.code),
            **self.extra,
        )


def service_problem(error: ServiceError, instance: str) -> Response:
    # ``extra`` first: a domain error may add members, never replace the standard ones.
    members = {k: v for k, v in error.extra.items() if k not in _STANDARD_MEMBERS}
    return problem(
        error.status, error.detail, instance=instance, **members, type=problem_type(error.code)
    )


_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "headers"})


def validation_problem(exc: RequestValidationError, instance: str) -> Response:
    """422 naming every invalid field; the rejected input is never echoed (it may be a
    secret, and it would end up in logs)."""
    errors = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": e.get("msg"),
            "type": e.get("type"),
        }
        for e in exc.errors()
    ]
    named = "; ".join(
        f"{'.'.join(error['loc'][1:]) or error['loc'][0]}: {error['msg']}" for error in errors
    )
    return problem(
        422,
        f"the request is not valid: {named}",
        instance=instance,
        type=problem_type("invalid-request"),
        errors=errors,
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> Response:
        return exc.response(request.url.path)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return service_problem(exc, request.url.path)

    # The app's own validation handler (switch.http.app) stays for its routes; the API's
    # answers name the invalid fields in ``detail`` and carry the API's problem type.
    fallback = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if fallback is not None and not request.url.path.startswith(API_PREFIX + "/"):
            answer = fallback(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return validation_problem(exc, request.url.path)

    # The routes refer to the Problem schema by reference (see ``problem_responses``); FastAPI
    # registers only the models of its own ``response_model``s, so add it to the document.
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(ref_template=_REF_TEMPLATE)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class Problem(BaseModel):
    """An RFC 9457 problem document (OpenAPI only: the handlers write it with orjson)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_REF_TEMPLATE = "#/components/schemas/{model}"
_WHEN: dict[int, str] = {
    400: "the request is malformed (a missing or unusable Idempotency-Key)",
    401: "no usable bearer token (missing, malformed, forged, expired, wrong role)",
    403: "the token does not cover this station or order",
    404: "no such station, pump or order (for this customer)",
    409: "the world does not allow it now, or the first request with this key is in progress",
    422: "the body or query is not valid, or the Idempotency-Key was used for another request",
    428: "this request moves money or creates something: an Idempotency-Key is required",
    503: "nothing can take the request now; retry later with the same Idempotency-Key",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route: each status it may refuse with, as problem+json."""
    schema = {"$ref": _REF_TEMPLATE.format(model="Problem")}
    return {
        status: {
            "description": _WHEN.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }
