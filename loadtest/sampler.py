"""The switch's CPU and memory, sampled every second with psutil.

The process is looked up again whenever its pid changes (a restart after SIGKILL), and its
children are included (the switch runs none today; if it ever does, they are part of its
cost). CPU is in percent of one core, so 200 % is both cores of this machine busy.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil
import trio

from .stats import Recorder, ResourceSample

__all__ = ["sample_switch"]

PERIOD_S = 1.0


class _Tracked:
    def __init__(self) -> None:
        self.pid: int | None = None
        self.processes: dict[int, psutil.Process] = {}

    def measure(self, pid: int) -> tuple[float, float] | None:
        """CPU % since the previous call and RSS (MB); None on the first look at ``pid``
        (psutil's first CPU reading of a process has nothing to compare with)."""
        first = pid != self.pid
        if first:
            self.pid, self.processes = pid, {}
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
        cpu = rss = 0.0
        for process in family:
            known = self.processes.setdefault(process.pid, process)
            try:
                cpu += float(known.cpu_percent(interval=None))  # since the previous call
                rss += float(known.memory_info().rss)
            except psutil.Error:
                continue
        return None if first else (cpu, rss / (1024 * 1024))


async def sample_switch(
    pid: Callable[[], int | None], recorder: Recorder, now_s: Callable[[], float]
) -> None:
    """Every second until cancelled: one :class:`ResourceSample` of the switch process
    ``pid()`` (skipped while it is down)."""
    tracked = _Tracked()
    while True:
        current = pid()
        if current is not None:
            try:
                measured = tracked.measure(current)
            except psutil.Error:  # killed between two samples
                measured = None
            if measured is not None:
                recorder.sample(ResourceSample(now_s(), *measured))
        await trio.sleep(PERIOD_S)
