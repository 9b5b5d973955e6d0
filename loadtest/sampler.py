"""Every second, the CPU of each part of the world and of the machine, with psutil.

The switch keeps its own figures (CPU and RSS, as issue 9 names them: ``switch_cpu_pct``,
``switch_rss_mb``); next to it every other component (:mod:`loadtest.processes`) is sampled
the same way, so the report can say where the machine's CPU went. CPU is in percent of one
core (200 % is both cores of this machine busy); the machine's own figure is
``psutil.cpu_percent`` (100 % = every core busy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import trio

from switch.demo.procs import ChildProcess
from switch.store.servers import pid_alive

from .processes import Component, CpuMeter, listener_pid, local_port, own_process
from .stats import Recorder, ResourceSample
from .world import LoadWorld

__all__ = [
    "SWITCH",
    "load_components",
    "sample_world",
    "server_component",
    "world_components",
]

PERIOD_S = 1.0
SWITCH = "switch"


def server_component(name: str, url: str) -> Component | None:
    """A server the run did not start (PostgreSQL, Valkey), found by the port it listens
    on; None when it is not on this machine. Looked up again only when it went away."""
    port = local_port(url)
    if port is None:
        return None
    found: list[int | None] = [None]

    def pid() -> int | None:
        if found[0] is None or not pid_alive(found[0]):
            found[0] = listener_pid(port)
        return found[0]

    return Component(name, pid)


def world_components(
    switch: Callable[[], int | None],
    children: Sequence[tuple[str, Callable[[], int | None]]],
    servers: Sequence[tuple[str, str]],
) -> list[Component]:
    """The switch, the simulators (``children``: name and current pid), the servers
    (``servers``: name and URL) and the load generator itself."""
    out = [Component(SWITCH, switch)]
    out += [Component(name, pid) for name, pid in children]
    out += [c for name, url in servers if (c := server_component(name, url)) is not None]
    out.append(own_process())
    return out


def _child_pid(child: ChildProcess) -> Callable[[], int | None]:
    return lambda: None if child.process is None else child.process.pid


def load_components(
    world: LoadWorld,
    database_url: str,
    redis_url: str | None,
    controls: tuple[int | None, Sequence[str]] = (None, ()),
) -> list[Component]:
    """A load run's world: the processes it started, or (with ``--target``: ``controls``,
    the pump simulator's control port and the provider simulators' control URLs) the ones
    listening there; the servers by their ports."""
    children = [(c.name, _child_pid(c)) for c in world.children if c is not world.switch]
    servers = [("postgres", database_url)]
    if redis_url:
        servers.append(("valkey", redis_url))
    pump_control, provider_controls = controls
    if pump_control is not None:
        servers.append(("pumps", f"tcp://127.0.0.1:{pump_control}"))
    servers += [(f"providers-{i + 1}", url) for i, url in enumerate(provider_controls)]
    return world_components(lambda: world.switch_pid, children, servers)


async def sample_world(
    components: Sequence[Component], recorder: Recorder, now_s: Callable[[], float]
) -> None:
    """Every second until cancelled: one ``ProcessSample`` of the whole world and one
    :class:`ResourceSample` of the switch (skipped while it is down). psutil reads /proc:
    quick, so it runs on the event loop rather than in a thread."""
    meter = CpuMeter(components, clock=trio.current_time)
    tick = trio.current_time()
    while True:
        sample = meter.measure(now_s())
        if sample is not None:
            recorder.sample_processes(sample)
            if SWITCH in sample.rss_mb:
                switch = ResourceSample(sample.t_s, sample.cpu_pct(SWITCH), sample.rss_mb[SWITCH])
                recorder.sample(switch)
        # On a fixed beat, not a sleep after the work: each second of the run gets its
        # sample (a drifting one skips a second now and then: a hole in the chart).
        now = trio.current_time()
        tick += PERIOD_S * max(1, math.ceil((now - tick) / PERIOD_S))
        await trio.sleep_until(tick)
