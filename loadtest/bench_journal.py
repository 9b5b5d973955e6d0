"""``fuelswitch bench journal``: the journal writer against raw ``copy_records_to_table``.

All in one process run, on a scratch database of the configured (or embedded) server:

1. throughput: ``streams`` concurrent streams, each appending one event at a time and
   waiting for it to be durable before the next, as actors do;
2. the same events written by raw asyncpg COPY into an identical table, twice: in
   batches of the size the writer formed (the same number of durable commits: the
   cost of the journal's machinery itself), and as one bulk COPY (the database's
   ingest ceiling);
3. latency at a steady offered rate (open loop: appends start on schedule whether or
   not earlier ones have finished), p50/p99 over the whole run.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from actors import open_system
from switch.store import Database, migrate, open_database
from switch.store.admin import create_database, drop_database
from switch.store.journal import Event, Journal, journal_writer_spec

TARGETS: dict[str, tuple[str, float]] = {
    "append_ratio": (">=", 0.5),
    "steady_p99_ms": ("<=", 20.0),
}


@dataclass(frozen=True, slots=True)
class JournalBenchConfig:
    streams: int = 1000
    appends_per_stream: int = 30
    steady_rate: int = 5000
    steady_s: float = 10.0

    @classmethod
    def quick(cls) -> JournalBenchConfig:
        return cls(streams=100, appends_per_stream=5, steady_rate=500, steady_s=1.0)


def _payload(stream: int, k: int) -> dict[str, Any]:
    return {"sale": f"s{stream}-{k}", "volume_ml": 40_000 + k, "amount_fen": 31_200 + k, "n": k}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _throughput(journal: Journal, config: JournalBenchConfig) -> float:
    async def stream(i: int) -> None:
        seq = 0
        for k in range(config.appends_per_stream):
            seq = await journal.append(
                f"bench:{i}", [Event("sample", _payload(i, k))], expected_seq=seq
            )

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(config.streams):
            nursery.start_soon(stream, i)
    return time.perf_counter() - t0


async def _copy(db: Database, config: JournalBenchConfig, batch: int) -> float:
    """COPY the same events (same streams, seqs, types, JSON payloads) in batches."""
    await db.execute("DROP TABLE IF EXISTS journal_copy")
    # Same columns, identity, defaults, constraints and indexes as the journal.
    await db.execute("CREATE TABLE journal_copy (LIKE journal INCLUDING ALL)")

    records = [
        (f"bench:{i}", k + 1, "sample", orjson.dumps(_payload(i, k)).decode())
        for k in range(config.appends_per_stream)
        for i in range(config.streams)
    ]
    columns = ["stream_id", "seq", "type", "payload"]
    t0 = time.perf_counter()
    for start in range(0, len(records), batch):
        await db.copy_records("journal_copy", records[start : start + batch], columns)
    return time.perf_counter() - t0


async def _steady(journal: Journal, config: JournalBenchConfig) -> list[float]:
    """Open loop: one append every 1/rate seconds, round-robin over the streams."""
    latencies: list[float] = []
    heads = [0] * config.streams
    busy = [False] * config.streams
    total = int(config.steady_rate * config.steady_s)
    interval = 1.0 / config.steady_rate

    async def one(i: int, k: int) -> None:
        busy[i] = True
        t0 = time.perf_counter()
        heads[i] = await journal.append(
            f"steady:{i}", [Event("sample", _payload(i, k))], expected_seq=heads[i]
        )
        latencies.append(time.perf_counter() - t0)
        busy[i] = False

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in range(total):
            await trio.sleep_until(start + n * interval)
            i = n % config.streams
            while busy[i]:  # this stream's previous append is still in flight: next stream
                i = (i + 1) % config.streams
            nursery.start_soon(one, i, n)
    return latencies


async def run_journal_bench(server_url: str, config: JournalBenchConfig) -> dict[str, Any]:
    name = f"bench_journal_{secrets.token_hex(4)}"
    url = await create_database(server_url, name)
    try:
        async with open_database(url, max_size=4) as db:
            await migrate(db)
            async with open_system([journal_writer_spec(db)]) as system:
                journal = Journal(system, db)
                elapsed = await _throughput(journal, config)
                writer = system.snapshot("journal").state
                events = config.streams * config.appends_per_stream
                mean_batch = max(1, round(writer["mean_batch"]))
                copy_batched = await _copy(db, config, mean_batch)
                copy_bulk = await _copy(db, config, events)
                latencies = await _steady(journal, config)
                steady_writer = system.snapshot("journal").state
    finally:
        await drop_database(server_url, name)
    journal_rate = events / elapsed
    return {
        "events": events,
        "streams": config.streams,
        "journal_events_per_s": journal_rate,
        "copy_events_per_s": events / copy_batched,
        "copy_bulk_events_per_s": events / copy_bulk,
        "append_ratio": journal_rate / (events / copy_batched),
        "append_ratio_vs_bulk": journal_rate / (events / copy_bulk),
        "mean_batch": writer["mean_batch"],
        "steady_rate": config.steady_rate,
        "steady_events": len(latencies),
        "steady_p50_ms": percentile(latencies, 0.50) * 1000,
        "steady_p99_ms": percentile(latencies, 0.99) * 1000,
        "steady_max_ms": max(latencies) * 1000,
        "steady_mean_batch": (steady_writer["events"] - writer["events"])
        / max(1, steady_writer["batches"] - writer["batches"]),
    }
