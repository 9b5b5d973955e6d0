"""Admission control in ``/metrics``: requests shed by reason, event-loop lag, open orders.

Read at scrape time from the :class:`~switch.api.admission.Admission` objects published here
(held weakly, as ``ops.metrics`` holds actor systems), so a shed costs one integer increment
and nothing else. One collector per :class:`~ops.metrics.Metrics` registry: several apps in
one process (the tests) add up instead of registering the same names twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ops.metrics import Metrics

from .admission import Admission, Overload

__all__ = ["publish_admission"]

_COLLECTORS: weakref.WeakKeyDictionary[Metrics, _AdmissionCollector] = weakref.WeakKeyDictionary()


class _AdmissionCollector(Collector):
    def __init__(self) -> None:
        self._gates: weakref.WeakSet[Admission] = weakref.WeakSet()

    def add(self, admission: Admission) -> None:
        self._gates.add(admission)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        shed, lag, open_orders = self._families()
        gates = list(self._gates)
        for reason in Overload:
            shed.add_metric([reason.value], sum(g.shed[reason.value] for g in gates))
        lag.add_metric([], max((g.lag_s() for g in gates), default=0.0))
        open_orders.add_metric([], sum(g.open_orders() for g in gates))
        yield from (shed, lag, open_orders)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            CounterMetricFamily(
                "fuelswitch_orders_shed",
                "New orders (prepay creates, post-pay payments) refused with 503 overloaded, "
                "by reason: open_orders (over [orders] max_open), creating (max_creating), "
                "loop_lag (max_lag_ms), store_latency (max_store_ms).",
                labels=["reason"],
            ),
            GaugeMetricFamily(
                "fuelswitch_event_loop_lag_seconds",
                "How late the event loop wakes a sleeping task (smoothed): the switch's load.",
            ),
            GaugeMetricFamily(
                "fuelswitch_open_orders", "Live (non-terminal) orders in the switch now."
            ),
        )


def publish_admission(metrics: Metrics, admission: Admission) -> None:
    """Add ``admission``'s figures to ``metrics`` (kept while the admission lives)."""
    collector = _COLLECTORS.get(metrics)
    if collector is None:
        collector = _COLLECTORS[metrics] = _AdmissionCollector()
        metrics.registry.register(collector)
    collector.add(admission)
