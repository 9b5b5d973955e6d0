"""The per-pump poll latency ring operators see in ``fuelswitch ops pumps``."""

from __future__ import annotations

from devices.poll_stats import PollLatency


def test_nothing_before_the_first_poll() -> None:
    assert PollLatency().snapshot() is None


def test_last_and_percentiles_over_the_ring() -> None:
    stats = PollLatency(size=100)
    for ms in range(1, 101):
        stats.observe(ms / 1000)
    stats.failed()
    snap = stats.snapshot()
    assert snap == {"last_ms": 100.0, "p50_ms": 51.0, "p99_ms": 100.0, "polls": 100, "errors": 1}


def test_the_ring_forgets_old_polls() -> None:
    stats = PollLatency(size=4)
    for seconds in (9.0, 9.0, 9.0, 9.0, 0.001, 0.001, 0.001, 0.001):
        stats.observe(seconds)
    snap = stats.snapshot()
    assert snap is not None
    assert snap["p99_ms"] == 1.0 and snap["polls"] == 8
