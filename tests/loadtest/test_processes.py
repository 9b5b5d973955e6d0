"""The per-process CPU sampler against real child processes: a busy process and its
descendants are counted, an idle one is not, a process born between two samples counts from
its birth, and a server is found by the port it listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from loadtest.load_report import cpu_figures
from loadtest.processes import OTHER, Component, CpuMeter, affinities, listener_pid, own_process
from loadtest.sampler import SWITCH, sample_world, server_component
from loadtest.stats import Recorder

BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"
IDLE = "import time\ntime.sleep(30)\n"


@contextmanager
def _spawn(*command: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def test_busy_children_are_counted_and_idle_ones_are_not() -> None:
    shell = ("/bin/sh", "-c", f"{sys.executable} -c '{BUSY}'; exit 0")
    with _spawn(*_python(IDLE)) as idle, _spawn(*shell) as parent:
        components = [
            Component("idle", lambda: idle.pid),
            Component("family", lambda: parent.pid),  # the shell and its busy child
            Component("root-only", lambda: parent.pid, children=False),
            Component("down", lambda: None),
        ]
        meter = CpuMeter(components, clock=trio.current_time)
        assert meter.measure(0.0) is None  # the baseline
        await trio.sleep(1.0)
        sample = meter.measure(1.0)
    assert sample is not None
    assert sample.cpu_s["family"] > 0.2  # a busy loop on a core for most of a second
    assert sample.cpu_s["idle"] < sample.cpu_s["family"] / 4
    assert sample.cpu_s["root-only"] < sample.cpu_s["family"] / 4  # the shell waits
    assert "down" not in sample.cpu_s
    assert sample.rss_mb["family"] > sample.rss_mb["root-only"] > 0
    assert sample.cpu_s[OTHER] >= 0.0
    assert 0.0 <= sample.machine_pct <= 100.0


async def test_a_process_born_between_samples_counts_from_its_birth() -> None:
    pids: list[int] = []
    meter = CpuMeter(
        [Component("late", lambda: pids[0] if pids else None)], clock=trio.current_time
    )
    assert meter.measure(0.0) is None
    with _spawn(*_python(BUSY)) as late:
        pids.append(late.pid)
        await trio.sleep(1.0)
        sample = meter.measure(1.0)
    assert sample is not None
    assert sample.cpu_s["late"] > 0.2


async def test_sampler_records_the_world_and_the_switch() -> None:
    recorder = Recorder()
    with _spawn(*_python(BUSY)) as switch, _spawn(*_python(IDLE)) as pumps:
        components = [
            Component(SWITCH, lambda: switch.pid),
            Component("pumps", lambda: pumps.pid),
            own_process(),
        ]
        assert set(affinities(components)) == {SWITCH, "pumps", "loadgen"}
        assert affinities(components)["loadgen"] == sorted(os.sched_getaffinity(0))
        t0 = trio.current_time()
        with trio.move_on_after(2.5):
            await sample_world(components, recorder, lambda: trio.current_time() - t0)
    assert len(recorder.processes) >= 1
    assert len(recorder.resources) == len(recorder.processes)  # the switch in every sample
    recorder.completed = 10
    figures = cpu_figures(recorder)
    pct = figures["cpu_pct_by_process"]
    assert set(pct) == {SWITCH, "pumps", "loadgen", OTHER}
    assert pct[SWITCH] > pct["pumps"]
    per_sale = figures["cpu_ms_per_sale_by_process"]
    assert per_sale[SWITCH] > 10.0  # over a second of CPU for 10 sales
    assert figures["machine_cpu_pct"] is not None


async def test_a_server_is_found_by_its_listening_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listener_pid(port) == os.getpid()
        component = server_component("postgres", f"postgresql://u@127.0.0.1:{port}/db")
        assert component is not None and component.pid() == os.getpid()
    assert server_component("remote", "postgresql://u@db.example.com:5432/db") is None
