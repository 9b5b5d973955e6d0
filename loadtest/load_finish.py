"""The end of a load run: let the switch settle, check the books, gather every figure.

After the last customer the switch still closes what is open (captures, releases, sweeps);
the books are only meaningful once no order is open (or ``SETTLE_S`` has passed: then the
open orders are violations of their own). The pumps' totalizers read before the first
arrival and after the settling say how far each nozzle moved; :func:`books.audit_books`
holds that and the simulators' ledgers against the switch's journal. The switch's own poll
latency comes from its ``/metrics`` (added up across a kill, which resets the counters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from rich.console import Console

from switch.demo.sims import PumpControl
from switch.store import open_database

from . import books
from .load_report import figures
from .scrape import POLL_METRIC, add_buckets, bucket_quantile, parse_buckets
from .stats import Recorder
from .world import LoadWorld

__all__ = [
    "SETTLE_S",
    "KillRecord",
    "RunFacts",
    "Totals",
    "finish",
    "read_totals",
    "scrape_poll",
]

SETTLE_S = 120.0  # after the last customer: the switch closes what is still open

Totals = dict[tuple[str, int, int], int]  # (station, pump, nozzle) -> volume totalizer, mL


@dataclass(slots=True)
class KillRecord:
    at_s: float | None = None
    ready_s: float | None = None
    recovery_s: float | None = None
    in_flight: int = 0
    buckets: dict[float, float] = field(default_factory=dict)  # poll histogram before the kill


async def read_totals(controls: Sequence[PumpControl], pumps: int) -> Totals:
    """Every nozzle's volume totalizer, read over all the control connections at once."""
    out: Totals = {}
    stations = list(controls[0].stations.values())

    async def read(control: PumpControl, part: Sequence[str]) -> None:
        for sid in part:
            for pump in range(1, pumps + 1):
                snap = await control.call("snapshot", station=sid, pump=pump)
                for nozzle, totals in enumerate(snap["totals"], start=1):
                    out[(sid, pump, nozzle)] = int(totals["volume_ml"])

    async with trio.open_nursery() as nursery:
        for i, control in enumerate(controls):
            nursery.start_soon(read, control, stations[i :: len(controls)])
    return out


async def scrape_poll(http: httpx.AsyncClient, api_url: str) -> dict[float, float]:
    """The switch's pump poll histogram buckets now; empty when it does not answer."""
    try:
        reply = await http.get(api_url + "/metrics", timeout=10.0)
    except httpx.HTTPError:
        return {}
    return parse_buckets(reply.text, POLL_METRIC) if reply.status_code == 200 else {}


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the run knew beside the recorder, for the report."""

    scenario: str
    stations: int
    pumps: int  # per station
    rate: float
    duration_s: float
    faults: dict[str, Any]
    kill_asked: bool
    extra: Mapping[str, Any] = field(default_factory=dict)


async def finish(
    world: LoadWorld,
    facts: RunFacts,
    recorder: Recorder,
    kill: KillRecord,
    database_url: str,
    before: Mapping[tuple[str, int, int], int],
    err: Console,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Settle, audit and sum up: the result (``_violations`` holds the violations
    themselves) and the per-second series."""
    buckets = add_buckets(kill.buckets, await scrape_poll(world.http, world.api_url))
    poll = {"p50": _ms(bucket_quantile(buckets, 0.5)), "p99": _ms(bucket_quantile(buckets, 0.99))}
    async with open_database(database_url, max_size=2) as db:
        with trio.move_on_after(SETTLE_S):
            while await books.open_orders(db):  # noqa: ASYNC110 - polling the database
                await trio.sleep(0.5)
        still_open = await books.open_orders(db)
        err.print(f"settled; {still_open} orders still open; checking the books")
        after = await read_totals(world.pumps, facts.pumps)
        moved = {key: after[key] - before.get(key, 0) for key in after}
        violations = await books.audit_books(
            db, world.config, world.pumps[0], world.providers, moved
        )
        callbacks = await books.callback_latencies(db)
    extra: dict[str, Any] = {
        "scenario": facts.scenario,
        "stations": facts.stations,
        "pumps": facts.stations * facts.pumps,
        "faults": facts.faults,
        "authorized_before_callback": callbacks.authorized_first,
        "authorized_without_callback": callbacks.no_callback,
        "orders_open_at_end": still_open,
        **facts.extra,
    }
    if facts.kill_asked:
        extra |= {
            "kill_at_s": kill.at_s,
            "restart_ready_s": None if kill.ready_s is None else round(kill.ready_s, 3),
            "recovery_s": kill.recovery_s,
            "in_flight_at_kill": kill.in_flight,
        }
    result = figures(
        recorder,
        rate=facts.rate,
        duration_s=facts.duration_s,
        callback_s=callbacks.seconds,
        poll_ms=poll,
        violations=violations,
        extra=extra,
    )
    result["_violations"] = violations
    return result, recorder.series(max(1, round(facts.duration_s)))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
