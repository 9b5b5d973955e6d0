"""Prometheus metrics of the switch, in a registry of the project's own.

A registry of our own (not prometheus_client's global one) keeps the exposition to what the
switch means to publish and lets a test build a fresh ``Metrics`` whose counts start at zero.
Label values are stable short codes; anything else is folded into ``other`` so that a bad
input can never grow the number of series.
"""

from __future__ import annotations

import re

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

__all__ = ["CONTENT_TYPE", "METRICS", "Metrics", "label"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")  # configured names: "wechatpay-main"


def label(value: str) -> str:
    """A label value as given when it is a short snake_case code, else ``other``."""
    return value if _LABEL.fullmatch(value) else "other"


def _channel(name: str) -> str:
    """A configured channel name as given (a bounded set), else ``other``."""
    return name if _CHANNEL_NAME.fullmatch(name) else "other"


class Metrics:
    """Every metric of one switch process. Issue 8 adds its own beside these."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self.callback_verifications = Counter(
            "fuelswitch_callback_verifications",
            "Provider callbacks by outcome: accepted, duplicate, ignored (old news), rejected, "
            "error (our side failed; the provider retries).",
            ["provider", "result", "reason"],
            registry=self.registry,
        )
        self.routing_decisions = Counter(
            "fuelswitch_routing_decisions",
            "Payment routing decisions by chosen channel and reason: cheapest, explore "
            "(the exploration share), least_bad (every eligible channel was down), only.",
            ["channel", "reason"],
            registry=self.registry,
        )

    def count_callback(self, provider: str, result: str, reason: str) -> None:
        self.callback_verifications.labels(
            provider=label(provider), result=label(result), reason=label(reason)
        ).inc()

    def callback_count(self, provider: str, result: str, reason: str) -> float:
        """The current count of one series (0 when it was never counted)."""
        value = self.registry.get_sample_value(
            "fuelswitch_callback_verifications_total",
            {"provider": provider, "result": result, "reason": reason},
        )
        return 0.0 if value is None else value

    def count_routing_decision(self, channel: str, reason: str) -> None:
        self.routing_decisions.labels(channel=_channel(channel), reason=label(reason)).inc()

    def routing_decision_count(self, channel: str, reason: str) -> float:
        """The current count of one series (0 when it was never counted)."""
        value = self.registry.get_sample_value(
            "fuelswitch_routing_decisions_total",
            {"channel": _channel(channel), "reason": reason},
        )
        return 0.0 if value is None else value

    def exposition(self) -> bytes:
        """The text format, for ``GET /metrics``."""
        return generate_latest(self.registry)


METRICS = Metrics()
