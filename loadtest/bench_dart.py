"""``fuelswitch bench dart``: how close the DART line master comes to the line's limit.

The simulator (``fuelswitch sim pumps --dart pty``, its own process) answers as pumps on
one RS-485 line at 9600 baud would: each reply arrives no sooner than the request and the
reply would take on the wire (8N1: 10 bits a character, 960 characters a second). The
switch's :class:`~devices.dart.line.DartLine` polls every pump round robin, as it does in
service, over the simulator's pty. The line limit is the rate at which those bytes could
cross the wire back to back: ``line_ratio`` = polls per second ÷ (960 ÷ bytes per poll),
i.e. the share of the wire's time the master keeps busy. Whatever the master wastes
between a reply and its next frame (reading, decoding, deciding, writing) is what drags
the ratio below 1. Measured over a window after a warm-up, in this one run.

Two mixes are measured: every pump idle (POLL / EOT), and the same with one pump
fuelling (its DATA blocks with DC2 on every poll, ACKPOLLs), the busier line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import trio

from devices.dart import CD1, AllowedNozzles, Command, PresetVolume
from devices.dart.line import DartLine
from devices.modbus import Parity
from loadtest.pump_meter import run_simulator

TARGETS: dict[str, tuple[str, float]] = {"line_ratio": (">=", 0.8)}


@dataclass(frozen=True, slots=True)
class DartBenchConfig:
    pumps: int = 16
    baudrate: int = 9600
    warmup_s: float = 1.0
    window_s: float = 5.0

    @classmethod
    def quick(cls) -> DartBenchConfig:
        return cls(pumps=4, warmup_s=0.3, window_s=1.0)


async def _window(line: DartLine, config: DartBenchConfig) -> dict[str, float]:
    await trio.sleep(config.warmup_s)
    before = line.statistics()
    t0 = time.perf_counter()
    await trio.sleep(config.window_s)
    after = line.statistics()
    wall = time.perf_counter() - t0
    polls = after["exchanges"] - before["exchanges"]
    wire = (after["bytes_out"] + after["bytes_in"]) - (before["bytes_out"] + before["bytes_in"])
    chars_per_s = config.baudrate / 10  # 8N1
    bytes_per_poll = wire / max(1, polls)
    polls_per_s = polls / wall
    limit = chars_per_s / bytes_per_poll
    return {
        "polls_per_s": polls_per_s,
        "bytes_per_poll": bytes_per_poll,
        "limit_polls_per_s": limit,
        "line_ratio": polls_per_s / limit,
        "silent": after["silent"] - before["silent"],
        "bad_frames": after["bad_frames"] - before["bad_frames"],
    }


async def run_dart_bench(config: DartBenchConfig) -> dict[str, Any]:
    extra = (
        "--dart", "pty", "--dart-pumps", str(config.pumps),
        "--dart-baudrate", str(config.baudrate), "--dart-parity", "N",
        "--control-port", "0", "--speed", "5",
    )  # fmt: skip
    async with run_simulator(1, 1, *extra) as sim:
        dart = sim.ready["dart"]
        addresses = list(dart["addresses"])
        line = DartLine(dart["path"], addresses, baudrate=config.baudrate, parity=Parity.NONE)
        async with trio.open_nursery() as nursery:
            await nursery.start(line.run)
            idle = await _window(line, config)
            await _start_a_sale(sim.ready, line, addresses[0])
            busy = await _window(line, config)
            nursery.cancel_scope.cancel()
    return {
        "line_ratio": min(idle["line_ratio"], busy["line_ratio"]),
        "line_ratio_idle": idle["line_ratio"],
        "line_ratio_fuelling": busy["line_ratio"],
        "polls_per_s_idle": idle["polls_per_s"],
        "limit_polls_per_s_idle": idle["limit_polls_per_s"],
        "bytes_per_poll_idle": idle["bytes_per_poll"],
        "polls_per_s_fuelling": busy["polls_per_s"],
        "limit_polls_per_s_fuelling": busy["limit_polls_per_s"],
        "bytes_per_poll_fuelling": busy["bytes_per_poll"],
        "silent_polls": idle["silent"] + busy["silent"],
        "bad_frames": idle["bad_frames"] + busy["bad_frames"],
        "pumps": config.pumps,
        "baudrate": config.baudrate,
        "window_s": config.window_s,
    }


async def _start_a_sale(ready: dict[str, Any], line: DartLine, address: int) -> None:
    """A customer at the first pump, authorized for a long fill: its DC2 blocks keep
    coming for the whole window."""
    port = ready["control_port"]
    station = ready["dart"]["station"]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = b'{"cmd": "customer", "station": %d, "pump": 1, "nozzle": 1}\n' % station
        await stream.send_all(request)
        await stream.receive_some(4096)
    await line.command(
        address, [AllowedNozzles((1,)), PresetVolume(900_000), Command(CD1.AUTHORIZE)]
    )
