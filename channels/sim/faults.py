"""Fault injection for the provider simulators: settings per provider, and the HTTP middleware.

Each provider has one :class:`ProviderFaults`, changed at run time through the control API. The
HTTP faults are applied by :class:`FaultMiddleware`, which wraps the provider's ASGI app, so no
provider simulator has to implement them; the callback faults are read by the callback engine.
Every random choice draws from a ``random.Random`` seeded from ``--seed``, the provider and the
purpose, so a run with the same seed and the same traffic injects the same faults, and HTTP
traffic does not shift which callbacks get dropped.

What each HTTP fault means for the switch:

* ``latency_ms``: every request waits this long (real milliseconds) before it is handled.
* ``error_rate``: the request is *not* handled and the answer is ``error_status`` with the
  provider's own error body (``ProviderSim.error_body``) — a 5xx the switch must treat as UNKNOWN.
* ``timeout_rate``: the request *is* handled, then the answer is held back ``timeout_hold_s``
  (real seconds, longer than any client timeout): the provider did it, the switch never heard.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from channels.model import Provider

__all__ = ["FaultMiddleware", "Faults", "FaultsError", "ProviderFaults"]

log = structlog.get_logger(__name__)

_RATES = ("error_rate", "timeout_rate", "callback_drop", "callback_duplicate", "callback_reorder")
_MAX_LATENCY_MS = 600_000
_MAX_HOLD_S = 3600.0


class FaultsError(ValueError):
    """Fault settings that make no sense (the control API answers 400 with the message)."""


@dataclass(slots=True)
class ProviderFaults:
    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 500
    timeout_rate: float = 0.0
    timeout_hold_s: float = 60.0
    callback_drop: float = 0.0  # each send is lost with this probability (and retried)
    callback_duplicate: float = 0.0  # a send goes out twice: at once, or 1 s (sim) apart
    callback_delay_s: float = 0.0  # sim seconds a delivery is held before its first send
    callback_reorder: float = 0.0  # > 0: only this fraction is held, so the rest overtake
    auto_pay: bool = False  # the customer pays every new hold by themselves
    auto_pay_delay_ms: int = 0  # ... after this many real milliseconds

    def __post_init__(self) -> None:
        for name in _RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise FaultsError(f"{name} must be within 0..1")
        if not 0 <= self.latency_ms <= _MAX_LATENCY_MS:
            raise FaultsError(f"latency_ms must be within 0..{_MAX_LATENCY_MS}")
        if not 0 <= self.auto_pay_delay_ms <= _MAX_LATENCY_MS:
            raise FaultsError(f"auto_pay_delay_ms must be within 0..{_MAX_LATENCY_MS}")
        if not 500 <= self.error_status <= 599:
            raise FaultsError("error_status must be a 5xx status")
        if not 0.0 <= self.timeout_hold_s <= _MAX_HOLD_S:
            raise FaultsError(f"timeout_hold_s must be within 0..{_MAX_HOLD_S:g}")
        if not 0.0 <= self.callback_delay_s <= 7 * 86400.0:
            raise FaultsError("callback_delay_s must be within 0..604800")

    @classmethod
    def from_json(cls, data: object, base: ProviderFaults | None = None) -> ProviderFaults:
        """Settings from a JSON object; fields it lacks come from ``base`` (or the defaults).
        Raises FaultsError for unknown fields, wrong types and values out of range."""
        if not isinstance(data, Mapping):
            raise FaultsError("fault settings must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise FaultsError(f"unknown fault settings: {', '.join(map(str, unknown))}")
        values = dataclasses.asdict(base) if base is not None else {}
        for name, value in data.items():
            values[name] = _coerce(name, fields[name].type, value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, kind: object, value: object) -> object:
    """JSON value → field value, strictly: a bool is not a number, a float is not an int."""
    if kind in ("bool", bool):
        if not isinstance(value, bool):
            raise FaultsError(f"{name} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultsError(f"{name} must be a number")
    if kind in ("int", int):
        if isinstance(value, float) and not value.is_integer():
            raise FaultsError(f"{name} must be a whole number")
        return int(value)
    if not math.isfinite(value):
        raise FaultsError(f"{name} must be finite")
    return float(value)


class Faults:
    """The fault settings of every provider and the seeded random sources that apply them."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._settings: dict[Provider, ProviderFaults] = {p: ProviderFaults() for p in Provider}
        self._rngs: dict[tuple[Provider, str], random.Random] = {}

    def get(self, provider: Provider) -> ProviderFaults:
        return self._settings[provider]

    def set(self, provider: Provider, faults: ProviderFaults) -> ProviderFaults:
        self._settings[provider] = faults
        return faults

    def rng(self, provider: Provider, purpose: str) -> random.Random:
        """A random source of its own per provider and purpose ("http", "callbacks", ...)."""
        key = (provider, purpose)
        if key not in self._rngs:
            self._rngs[key] = random.Random(f"{self.seed}:{provider.value}:{purpose}")
        return self._rngs[key]

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {p.value: f.to_json() for p, f in self._settings.items()}


ErrorBody = Callable[[int], tuple[str, bytes]]


class FaultMiddleware:
    """ASGI middleware applying one provider's HTTP faults around its app."""

    def __init__(self, app: ASGIApp, provider: Provider, faults: Faults, error_body: ErrorBody):
        self.app = app
        self.provider = provider
        self.faults = faults
        self.error_body = error_body
        self._rng = faults.rng(provider, "http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.faults.get(self.provider)
        if settings.latency_ms:
            await trio.sleep(settings.latency_ms / 1000)
        if settings.error_rate and self._rng.random() < settings.error_rate:
            log.info("sim.fault_error", provider=self.provider.value, path=scope.get("path"))
            await self._send_error(send, settings.error_status)
            return
        if settings.timeout_rate and self._rng.random() < settings.timeout_rate:
            log.info("sim.fault_timeout", provider=self.provider.value, path=scope.get("path"))
            held: list[Message] = []

            async def keep(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, keep)
            await trio.sleep(settings.timeout_hold_s)
            for message in held:  # a client still waiting gets the real answer, late
                await send(message)
            return
        await self.app(scope, receive, send)

    async def _send_error(self, send: Send, status: int) -> None:
        content_type, body = self.error_body(status)
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
