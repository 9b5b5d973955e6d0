"""The door of admission control, in front of the whole web framework.

Shedding is only worth it if a refusal is much cheaper than the work it avoids. Through
FastAPI a refused create still cost its routing, header parsing, dependency resolution and
problem rendering (about 2 to 3 ms of the switch's one core); at 200 offered orders a second
the refusals alone took more than half the core, and the orders admitted starved. This ASGI
gate answers the refusal before any of that: a pure check of the bounds, the request's
``Idempotency-Key`` looked up in memory (a retry of a key already taken always goes in, to
get its stored answer), and a pre-rendered problem+json. What it lets through meets the
route's own gate (:mod:`switch.api.deps`), which does the counting of creates in progress.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from .admission import Admission

__all__ = ["ShedGate", "is_order_creation"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_CREATES = re.compile(r"^/v1/(orders|stations/[^/]+/pumps/[^/]+/pay)$")


def is_order_creation(method: str, path: str) -> bool:
    """Prepay creation and post-pay payment: what admission control may refuse."""
    return method == "POST" and _CREATES.match(path) is not None


class ShedGate:
    def __init__(
        self, app: App, admission: Admission, key_known: Callable[[str], Awaitable[bool]]
    ) -> None:
        self.app = app
        self.admission = admission
        self.key_known = key_known  # an Idempotency-Key taken lately, by anyone
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_order_creation(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        shed = self.admission.evaluate()
        if shed is None or await self._retry(scope):
            await self.app(scope, receive, send)
            return
        self.admission.refuse(shed)
        self.refused += 1
        body = orjson.dumps(
            {
                "type": "/problems/overloaded",
                "title": "Service Unavailable",
                "status": 503,
                "detail": shed.detail,
                "instance": scope["path"],
                "reason": shed.reason.value,
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(shed.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _retry(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                return await self.key_known(value.decode("latin-1"))
        return False
