"""Reading the switch's ``/metrics``: the pump poll latency is the switch's own figure.

Only the switch times its status reads (from the request to the decoded reply), so the load
test takes them from the Prometheus histogram ``fuelswitch_pump_poll_seconds`` rather than
guessing from outside. A histogram has buckets, not samples: the quantile is interpolated
inside its bucket, as Prometheus' ``histogram_quantile`` does. A SIGKILL resets the switch's
counters, so the caller scrapes before a kill and adds the two scrapes up. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

__all__ = ["POLL_METRIC", "add_buckets", "bucket_quantile", "parse_buckets"]

POLL_METRIC: Final = "fuelswitch_pump_poll_seconds"
_LE: Final = re.compile(r'le="([^"]+)"')

Buckets = dict[float, float]  # upper bound -> cumulative count


def parse_buckets(text: str, metric: str) -> Buckets:
    """The cumulative bucket counts of ``metric``, summed over its label sets."""
    out: Buckets = {}
    prefix = metric + "_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        match = _LE.search(line)
        if match is None:
            continue
        bound = math.inf if match.group(1) == "+Inf" else float(match.group(1))
        out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def add_buckets(a: Mapping[float, float], b: Mapping[float, float]) -> Buckets:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in set(a) | set(b)}


def bucket_quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation in its bucket; None without samples.
    A quantile in the +Inf bucket is the highest finite bound."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            if inside <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / inside
        lower, below = bound, count
    return lower
