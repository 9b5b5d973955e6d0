"""Prometheus metrics of the switch, in a registry of the project's own.

A registry of our own (not prometheus_client's global one) keeps the exposition to what the
switch means to publish and lets a test build a fresh ``Metrics`` whose counts start at zero;
``METRICS`` is the process's instance, and what instrumented code uses by default.

Every label value goes through a sanitizer that keeps it when it looks like what the label
holds (a short code, a configured channel or grade, a class name, a route template) and folds
anything else into ``other``, so that a bad input can never grow the number of series. There
is deliberately no station or pump label: 500 stations and 5,000 pumps times every other label
would be a series explosion; per-pump figures are in the admin socket's ``pumps`` view.

Hot paths (a pump poll, a journal commit, an HTTP request) observe through label children
cached here, which skips the sanitizer and prometheus_client's own lock-protected lookup.
Actor figures (mailbox depths, restarts) are not pushed at all: a collector reads them from
each watched :class:`~actors.ActorSystem` in one pass over its cells when ``/metrics`` is
scraped, so an idle switch pays nothing for them.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from actors import ActorSystem

__all__ = ["CONTENT_TYPE", "METRICS", "Metrics", "label"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")  # configured names: "wechatpay-main"
_GRADE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.#+-]{0,15}")  # configured codes: "92", "0#"
_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # an actor's class name
_ROUTE = re.compile(r"/[A-Za-z0-9_/{}.:-]{0,119}")  # a route template: "/api/orders/{order_id}"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Batches are 1 event when idle and up to JournalWriter.max_batch (2,000) under load.
JOURNAL_BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
# A commit is one round trip plus an fsync: milliseconds, up to the 15 s commit timeout.
JOURNAL_COMMIT_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
)  # fmt: skip
# A poll is one status read: ~100 µs on loopback Modbus, tens of ms on a serial DART line.
PUMP_POLL_BUCKETS: Final = (
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
HTTP_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def label(value: str) -> str:
    """A label value as given when it is a short snake_case code, else ``other``."""
    return value if _LABEL.fullmatch(value) else "other"


def _channel(name: str) -> str:
    """A configured channel name as given (a bounded set), else ``other``."""
    return name if _CHANNEL_NAME.fullmatch(name) else "other"


def _grade(code: str | None) -> str:
    """A configured grade code as given; ``unknown`` when the order has none."""
    if not code:
        return "unknown"
    return code if _GRADE.fullmatch(code) else "other"


def _kind(kind: str) -> str:
    """An actor class name (``PumpActor``); a factory's qualname before the first start
    (``channel_spec.<locals>.make``) is not one, and is ``other``."""
    return kind if _KIND.fullmatch(kind) else "other"


def _route(template: str | None) -> str:
    """The matched route's template (a bounded set the app declares); ``unmatched`` when no
    route matched, which is the only case where the raw path would be all there is."""
    if template is None:
        return "unmatched"
    return template if _ROUTE.fullmatch(template) else "other"


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class _ActorCollector(Collector):
    """Mailbox depths and restarts by actor kind, read from the watched systems at scrape
    time: one pass over each registry's cells, no per-message cost."""

    def __init__(self) -> None:
        self._systems: list[weakref.ref[ActorSystem]] = []

    def watch(self, system: ActorSystem) -> None:
        self._systems = [ref for ref in self._systems if ref() not in (None, system)]
        self._systems.append(weakref.ref(system))

    def unwatch(self, system: ActorSystem) -> None:
        self._systems = [ref for ref in self._systems if ref() not in (None, system)]

    def describe(self) -> Iterable[Metric]:
        return self._families()  # the names, for registration (auto_describe); no values

    def collect(self) -> Iterator[Metric]:
        actors: dict[str, int] = {}
        depth_sum: dict[str, int] = {}
        depth_max: dict[str, int] = {}
        restarts: dict[str, int] = {}
        for ref in self._systems:
            system = ref()
            if system is None:
                continue
            for cell in list(system.registry._cells.values()):
                kind = _kind(cell.kind)
                depth = cell.mailbox.queued
                actors[kind] = actors.get(kind, 0) + 1
                depth_sum[kind] = depth_sum.get(kind, 0) + depth
                depth_max[kind] = max(depth_max.get(kind, 0), depth)
                restarts[kind] = restarts.get(kind, 0) + cell.restarts
        families = self._families()
        for family, values in zip(families, (actors, depth_sum, depth_max, restarts), strict=True):
            for kind, value in sorted(values.items()):
                family.add_metric([kind], value)
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "fuelswitch_actors", "Registered actors by kind (class).", labels=["kind"]
            ),
            GaugeMetricFamily(
                "fuelswitch_mailbox_depth_sum",
                "Messages waiting in the mailboxes of all actors of a kind.",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                "fuelswitch_mailbox_depth_max",
                "The deepest mailbox among the actors of a kind.",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                "fuelswitch_actor_restarts",
                "Restarts of the actors of a kind now registered (a counter that falls when "
                "an actor goes away: use increase() with care, or alert on the level).",
                labels=["kind"],
            ),
        ]


class Metrics:
    """Every metric of one switch process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        registry = self.registry
        self.callback_verifications = Counter(
            "fuelswitch_callback_verifications",
            "Provider callbacks by outcome: accepted, duplicate, ignored (old news), rejected, "
            "error (our side failed; the provider retries).",
            ["provider", "result", "reason"],
            registry=registry,
        )
        self.routing_decisions = Counter(
            "fuelswitch_routing_decisions",
            "Payment routing decisions by chosen channel and reason: cheapest, explore "
            "(the exploration share), least_bad (every eligible channel was down), only.",
            ["channel", "reason"],
            registry=registry,
        )
        sale_labels = ["flow", "grade"]
        self.sales = Counter(
            "fuelswitch_sales",
            "Sales paid for (counted once, when the capture is recorded), by flow and grade.",
            sale_labels,
            registry=registry,
        )
        self.sales_volume = Counter(
            "fuelswitch_sales_volume_ml",
            "Volume of the sales paid for, in millilitres (integer increments).",
            sale_labels,
            registry=registry,
        )
        self.sales_amount = Counter(
            "fuelswitch_sales_amount_fen",
            "Amount captured for the sales paid for (net of discounts), in fen.",
            sale_labels,
            registry=registry,
        )
        self.payment_attempts = Counter(
            "fuelswitch_payment_attempts",
            "Provider calls by channel, operation (hold, capture, release, refund, query, "
            "close, refund_query, bill, probe) and outcome (success, pending, declined, "
            "unknown, error).",
            ["channel", "operation", "outcome"],
            registry=registry,
        )
        self.journal_batch_size = Histogram(
            "fuelswitch_journal_batch_size",
            "Events per committed journal batch (group commit).",
            buckets=JOURNAL_BATCH_BUCKETS,
            registry=registry,
        )
        self.journal_commit_seconds = Histogram(
            "fuelswitch_journal_commit_seconds",
            "Time to commit one journal batch.",
            buckets=JOURNAL_COMMIT_BUCKETS,
            registry=registry,
        )
        self.pump_poll_seconds = Histogram(
            "fuelswitch_pump_poll_seconds",
            "Time of one answered pump status read, by protocol.",
            ["protocol"],
            buckets=PUMP_POLL_BUCKETS,
            registry=registry,
        )
        self.pump_poll_errors = Counter(
            "fuelswitch_pump_poll_errors",
            "Pump status reads that failed (no answer, link down, bad frame), by protocol.",
            ["protocol"],
            registry=registry,
        )
        self.http_request_seconds = Histogram(
            "fuelswitch_http_request_seconds",
            "HTTP requests by method, route template and status class.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self._actors = _ActorCollector()
        registry.register(self._actors)
        # Label children of the hot paths, by their raw label values.
        self._polls: dict[str, Histogram] = {}
        self._poll_errors: dict[str, Counter] = {}
        self._attempts: dict[tuple[str, str, str], Counter] = {}
        self._requests: dict[tuple[str, str | None, int], Histogram] = {}

    # -- callbacks and routing ---------------------------------------------------------------

    def count_callback(self, provider: str, result: str, reason: str) -> None:
        self.callback_verifications.labels(
            provider=label(provider), result=label(result), reason=label(reason)
        ).inc()

    def callback_count(self, provider: str, result: str, reason: str) -> float:
        """The current count of one series (0 when it was never counted)."""
        return self.sample(
            "fuelswitch_callback_verifications_total",
            provider=provider,
            result=result,
            reason=reason,
        )

    def count_routing_decision(self, channel: str, reason: str) -> None:
        self.routing_decisions.labels(channel=_channel(channel), reason=label(reason)).inc()

    def routing_decision_count(self, channel: str, reason: str) -> float:
        """The current count of one series (0 when it was never counted)."""
        return self.sample(
            "fuelswitch_routing_decisions_total", channel=_channel(channel), reason=reason
        )

    # -- sales and payments ------------------------------------------------------------------

    def count_sale(self, flow: str, grade: str | None, volume_ml: int, amount_fen: int) -> None:
        """One sale paid for: call once per sale, when its capture is recorded."""
        labels = {"flow": label(flow), "grade": _grade(grade)}
        self.sales.labels(**labels).inc()
        if volume_ml > 0:
            self.sales_volume.labels(**labels).inc(volume_ml)
        if amount_fen > 0:
            self.sales_amount.labels(**labels).inc(amount_fen)

    def count_payment_attempt(self, channel: str, operation: str, outcome: str) -> None:
        key = (channel, operation, outcome)
        child = self._attempts.get(key)
        if child is None:
            child = self._attempts[key] = self.payment_attempts.labels(
                channel=_channel(channel), operation=label(operation), outcome=label(outcome)
            )
        child.inc()

    # -- the journal, pumps, HTTP --------------------------------------------------------------

    def observe_journal_commit(self, events: int, seconds: float) -> None:
        """One committed batch of ``events`` events that took ``seconds``."""
        self.journal_batch_size.observe(events)
        self.journal_commit_seconds.observe(seconds)

    def observe_pump_poll(self, protocol: str, seconds: float) -> None:
        child = self._polls.get(protocol)
        if child is None:
            child = self._polls[protocol] = self.pump_poll_seconds.labels(label(protocol))
        child.observe(seconds)

    def count_pump_poll_error(self, protocol: str) -> None:
        child = self._poll_errors.get(protocol)
        if child is None:
            child = self._poll_errors[protocol] = self.pump_poll_errors.labels(label(protocol))
        child.inc()

    def observe_http(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One HTTP request; ``route`` is the matched route's template (None: no match)."""
        key = (method, route, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.http_request_seconds.labels(
                method=_method(method), route=_route(route), status=_status_class(status)
            )
        child.observe(seconds)

    # -- actors ------------------------------------------------------------------------------

    def watch_system(self, system: ActorSystem) -> None:
        """Publish ``system``'s actors (counts, mailbox depths, restarts by kind), read at
        scrape time. Held weakly: a system that is gone drops out by itself."""
        self._actors.watch(system)

    def unwatch_system(self, system: ActorSystem) -> None:
        self._actors.unwatch(system)

    # -- reading -----------------------------------------------------------------------------

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 when the series does not exist yet)."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def exposition(self) -> bytes:
        """The text format, for ``GET /metrics``."""
        return generate_latest(self.registry)


METRICS = Metrics()
