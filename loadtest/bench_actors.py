"""``fuelswitch bench actors``: the actor runtime against raw trio, in one process run.

Each figure is measured next to its raw-trio equivalent so the ratios hold on any
machine: a ``call`` round trip against a request/reply pair of memory channels, cast
throughput against ``send_nowait`` into a memory channel, both in batches of one
mailbox's capacity. Ten thousand idle actors under one dynamic supervisor give the
memory and start-up figures; a crash/restart/ping loop gives the restart latency.
Each timing takes the best of several rounds, alternating runtime and raw, so a
noisy neighbour hurts both sides alike.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from actors import (
    Actor,
    ActorCrashed,
    ActorSystem,
    ChildSpec,
    DynamicSupervisor,
    MailboxConfig,
    Reply,
    Supervisor,
    open_system,
)

TARGETS: dict[str, tuple[str, float]] = {
    "call_ratio": ("<=", 2.0),
    "cast_ratio": (">=", 0.5),
    "idle_rss_mb_10k": ("<=", 100.0),
    "start_s_10k": ("<=", 1.0),
}


@dataclass(frozen=True, slots=True)
class BenchConfig:
    calls: int = 20_000
    casts: int = 200_000
    batch: int = 1024
    actors: int = 10_000
    restarts: int = 500
    rounds: int = 5

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(calls=500, casts=5_000, batch=256, actors=500, restarts=20, rounds=1)


def rss_bytes() -> int:
    """Resident set size now (Linux /proc), not the peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


class Echo(Actor):
    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        return msg


class Idle(Actor):
    """What an idle pump or order costs: an actor with a little state, waiting for mail."""

    def __init__(self) -> None:
        self.state: dict[str, int] = {}


class Counter(Actor):
    def __init__(self, box: _Box) -> None:
        self.box = box

    async def handle_cast(self, msg: Any) -> None:
        box = self.box
        box.count += 1
        if box.count >= box.target:
            box.done.set()


class Crashy(Actor):
    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        if msg == "crash":
            raise RuntimeError("benchmark crash")
        return msg


class _Box:
    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = trio.Event()

    def arm(self, target: int) -> None:
        self.target = target
        self.done = trio.Event()


# -- calls ----------------------------------------------------------------------------


async def _raw_call(n: int) -> float:
    req_send, req_recv = trio.open_memory_channel[int](1024)
    rep_send, rep_recv = trio.open_memory_channel[int](1)

    async def server() -> None:
        async for msg in req_recv:
            await rep_send.send(msg)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        t0 = time.perf_counter()
        for i in range(n):
            await req_send.send(i)
            await rep_recv.receive()
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return elapsed / n


async def _actor_call(system: ActorSystem, n: int) -> float:
    call = system.call
    t0 = time.perf_counter()
    for i in range(n):
        await call("bench/echo", i)
    return (time.perf_counter() - t0) / n


# -- casts ----------------------------------------------------------------------------


async def _raw_cast(n: int, batch: int) -> float:
    send, recv = trio.open_memory_channel[int](batch)
    box = _Box()

    async def consumer() -> None:
        async for _ in recv:
            box.count += 1
            if box.count >= box.target:
                box.done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        send_nowait = send.send_nowait
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            k = min(batch, n - sent)
            box.arm(sent + k)
            for i in range(k):
                send_nowait(i)
            sent += k
            await box.done.wait()
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return n / elapsed


async def _actor_cast(system: ActorSystem, box: _Box, n: int, batch: int) -> float:
    cast = system.cast
    box.count = 0
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        k = min(batch, n - sent)
        box.arm(sent + k)
        for i in range(k):
            cast("bench/counter", i)
        sent += k
        await box.done.wait()
    return n / (time.perf_counter() - t0)


# -- restarts and idle actors -----------------------------------------------------------


async def _restart_latency(system: ActorSystem, n: int) -> list[float]:
    samples: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        with contextlib.suppress(ActorCrashed):
            await system.call("bench/crashy", "crash")
        await system.call("bench/crashy", "ping")
        samples.append(time.perf_counter() - t0)
    return samples


async def _start_idle(system: ActorSystem, n: int, name: str) -> float:
    await system.start_child(ChildSpec(name, DynamicSupervisor), supervisor="bench")
    t0 = time.perf_counter()
    for i in range(n):
        await system.start_child(ChildSpec(f"a{i:05d}", Idle), supervisor=f"bench/{name}")
    elapsed = time.perf_counter() - t0
    if system.snapshot(f"bench/{name}").children != n:
        raise RuntimeError("not every idle actor started")
    return elapsed


async def _idle_actors(system: ActorSystem, n: int) -> tuple[float, float, float]:
    """RSS growth and start time for ``n`` idle actors; then the start time again under
    CPython's default GC thresholds, for comparison with the process's own."""
    gc.collect()
    before = rss_bytes()
    start_s = await _start_idle(system, n, "idle")
    gc.collect()
    rss_mb = (rss_bytes() - before) / 2**20
    await system.terminate_child("bench", "idle")
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        default_s = await _start_idle(system, n, "idle-default-gc")
    finally:
        gc.set_threshold(*thresholds)
    await system.terminate_child("bench", "idle-default-gc")
    return rss_mb, start_s, default_s


async def run_bench(config: BenchConfig) -> dict[str, Any]:
    box = _Box()
    children = [
        ChildSpec("echo", Echo),
        ChildSpec("counter", lambda: Counter(box), mailbox=MailboxConfig(capacity=config.batch)),
        ChildSpec("crashy", Crashy),
    ]
    sup = ChildSpec("bench", lambda: Supervisor(children, intensity=10**9, period=1.0))
    async with open_system([sup]) as system:
        idle_rss_mb, start_s, start_default_s = await _idle_actors(system, config.actors)
        raw_call = actor_call = raw_cast = actor_cast = 0.0
        best_raw_call = best_actor_call = float("inf")
        best_raw_cast = best_actor_cast = 0.0
        for _ in range(config.rounds):
            raw_call = await _raw_call(config.calls)
            actor_call = await _actor_call(system, config.calls)
            raw_cast = await _raw_cast(config.casts, config.batch)
            actor_cast = await _actor_cast(system, box, config.casts, config.batch)
            best_raw_call = min(best_raw_call, raw_call)
            best_actor_call = min(best_actor_call, actor_call)
            best_raw_cast = max(best_raw_cast, raw_cast)
            best_actor_cast = max(best_actor_cast, actor_cast)
        restarts = await _restart_latency(system, config.restarts)
    return {
        "call_us": best_actor_call * 1e6,
        "raw_call_us": best_raw_call * 1e6,
        "call_ratio": best_actor_call / best_raw_call,
        "cast_per_s": best_actor_cast,
        "raw_cast_per_s": best_raw_cast,
        "cast_ratio": best_actor_cast / best_raw_cast,
        "idle_rss_mb_10k": idle_rss_mb * 10_000 / config.actors,
        "idle_bytes_per_actor": idle_rss_mb * 2**20 / config.actors,
        "start_s_10k": start_s * 10_000 / config.actors,
        "start_s_10k_default_gc": start_default_s * 10_000 / config.actors,
        "restart_us": statistics.median(restarts) * 1e6,
        "restart_p99_us": sorted(restarts)[int(len(restarts) * 0.99) - 1] * 1e6,
        "actors": config.actors,
        "calls": config.calls,
        "casts": config.casts,
        "rounds": config.rounds,
    }


def quiet_logs() -> None:
    """The restart loop crashes an actor hundreds of times on purpose."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
