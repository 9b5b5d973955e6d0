"""Which processes make up the load test's world, and how much CPU each used.

A load test on one machine shares its cores between the switch, the simulators, the
databases and the load generator itself; the switch's CPU alone cannot tell whether the
switch or something else is the limit. A :class:`Component` names one part of the world and
how to find its root process now (the switch gets a new pid after a restart); the
component is that root and, unless told otherwise, all of its descendants (PostgreSQL is a
postmaster and one process per connection). The load generator is its own process only: its
children are the simulators and the switch, counted apart.

:class:`CpuMeter` measures by differences of each process's own CPU time (user + system)
between two samples, not with ``psutil.Process.cpu_percent``, so a process born between two
samples (a restarted switch, a new database connection) is counted from its birth rather than
from its second sample. Servers the run did not start are found by the TCP port they listen
on (:func:`listener_pid`): that covers the embedded servers and local external ones alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from .stats import ProcessSample

__all__ = [
    "OTHER",
    "Component",
    "CpuMeter",
    "affinities",
    "listener_pid",
    "local_port",
    "own_process",
]

OTHER = "other"  # everything on the machine outside the world (other users, the kernel)
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", ""})


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    pid: Callable[[], int | None]  # the root process now; None while it is down
    children: bool = True  # its descendants are part of it


def own_process() -> Component:
    return Component("loadgen", os.getpid, children=False)


def local_port(url: str) -> int | None:
    """The port of ``url`` when it names a server on this machine, else None."""
    parts = urlsplit(url)
    if (parts.hostname or "") not in _LOCAL_HOSTS:
        return None
    return parts.port


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` here (needs to see other users' sockets:
    root, or the same user)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            pid: int | None = conn.pid
            return pid
    return None


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """Per-process CPU time between calls of :meth:`measure`, summed per component."""

    def __init__(self, components: Sequence[Component], *, clock: Callable[[], float]) -> None:
        self.components = list(components)
        self._clock = clock
        self._processes: dict[int, psutil.Process] = {}
        self._last_cpu: dict[int, float] = {}
        self._last_t: float | None = None
        self._cores = psutil.cpu_count() or 1

    def _families(self) -> dict[str, list[int]]:
        """Each component's pids: its root and (if wanted) every descendant, from one pass
        over the machine's processes."""
        kids: dict[int, list[int]] = {}
        for process in psutil.process_iter(["ppid"]):
            ppid = process.info.get("ppid")
            if ppid is not None:
                kids.setdefault(int(ppid), []).append(process.pid)
        out: dict[str, list[int]] = {}
        for component in self.components:
            root = component.pid()
            if root is None:
                continue
            family, todo = [], [root]
            while todo:
                pid = todo.pop()
                family.append(pid)
                if component.children:
                    todo.extend(kids.get(pid, ()))
            out[component.name] = family
        return out

    def measure(self, t_s: float) -> ProcessSample | None:
        """Since the previous call, as the sample of the run's second ``t_s``; None on the
        first (which only takes the baseline: processes already running count from there)."""
        now = self._clock()
        first = self._last_t is None
        machine = float(psutil.cpu_percent(interval=None))
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        seen: dict[int, float] = {}
        for name, family in self._families().items():
            for pid in family:
                process = self._processes.get(pid)
                try:
                    if process is None:
                        process = self._processes[pid] = psutil.Process(pid)
                    total = _cpu_s(process)
                    memory = float(process.memory_info().rss)
                except psutil.Error:
                    self._processes.pop(pid, None)
                    continue
                seen[pid] = total
                # A process not seen before was born since the previous sample.
                used = total - self._last_cpu.get(pid, 0.0 if not first else total)
                cpu[name] = cpu.get(name, 0.0) + max(0.0, used)
                rss[name] = rss.get(name, 0.0) + memory / (1024 * 1024)
        for gone in set(self._processes) - set(seen):
            del self._processes[gone]
        self._last_cpu = seen
        last, self._last_t = self._last_t, now
        if last is None:
            return None
        interval = max(1e-6, now - last)
        busy = machine * self._cores / 100.0 * interval  # CPU seconds of the whole machine
        cpu[OTHER] = max(0.0, busy - sum(cpu.values()))
        return ProcessSample(t_s, interval, cpu, rss, machine)


def affinities(components: Sequence[Component]) -> dict[str, list[int]]:
    """The CPUs each component's root process may run on now (the check that pinning
    happened)."""
    out: dict[str, list[int]] = {}
    for component in components:
        pid = component.pid()
        if pid is None:
            continue
        try:
            out[component.name] = sorted(psutil.Process(pid).cpu_affinity() or [])
        except psutil.Error:
            continue
    return out
