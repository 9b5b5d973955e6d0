"""The switch's HTTP API (FastAPI on hypercorn's trio worker): callbacks, health, metrics."""

from switch.http.app import PROBLEM_JSON, BodyLimits, create_app, problem
from switch.http.server import BoundServer, serve_http

__all__ = ["PROBLEM_JSON", "BodyLimits", "BoundServer", "create_app", "problem", "serve_http"]
