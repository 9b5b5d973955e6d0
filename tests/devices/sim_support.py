"""The dispenser simulator as the tests run it: a real ``fuelswitch sim pumps`` process,
its control API over TCP, and Modbus helpers that read GFD-1 blocks."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from devices.gfd1 import (
    COMMAND_START,
    STATUS_COUNT,
    TOTALS_COUNT,
    TOTALS_START,
    CommandBlock,
    NozzleTotals,
    StatusBlock,
    decode_status,
    decode_totals,
    encode_command,
)
from devices.modbus import RegisterClient

ROOT = Path(__file__).resolve().parents[2]
SAFE = 10.0  # a bound for what must happen, never a measurement


class SimProcess:
    """``python -m switch.cli sim pumps ARGS`` in a subprocess; ``ready`` is its JSON line."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        # stderr to a file, which never fills up as a pipe nobody reads would
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the object)

    def start(self, timeout: float = 30.0) -> dict[str, Any]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "sim", "pumps", *self.args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.proc = proc
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
        line = proc.stdout.readline() if ready else b""
        if not line:
            self.kill()
            raise RuntimeError(f"simulator {self.args} did not start: {self.stderr()}")
        self.ready = json.loads(line)
        return self.ready

    def port(self, station: int = 0) -> int:
        port: int = self.ready["stations"][station]["port"]
        return port

    @property
    def control_port(self) -> int:
        port: int = self.ready["control_port"]
        return port

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout)
        self._close()
        return status

    def kill(self) -> None:
        """SIGKILL: no chance to write anything."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._close()

    def _close(self) -> None:
        assert self.proc is not None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


class Control:
    """A connection to the simulator's control API."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, port: int) -> Control:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def raw(self, line: bytes) -> dict[str, Any]:
        """Send ``line`` as it is; return the next reply."""
        await self.stream.send_all(line)
        return await self.reply()

    async def reply(self) -> dict[str, Any]:
        with trio.fail_after(SAFE):
            while (end := self.buffer.find(b"\n")) < 0:
                data = await self.stream.receive_some(65536)
                assert data, "the simulator closed the control connection"
                self.buffer += data
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """One command that must succeed."""
        reply = await self.raw(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        assert reply["ok"], reply
        return reply


async def read_status(client: RegisterClient, unit: int) -> StatusBlock:
    return decode_status(await client.read_input_registers(unit, 0, STATUS_COUNT))


async def read_totals(
    client: RegisterClient, unit: int, nozzles: int = 2
) -> tuple[NozzleTotals, ...]:
    return decode_totals(
        await client.read_input_registers(unit, TOTALS_START, TOTALS_COUNT), nozzles
    )


async def send_command(
    client: RegisterClient, unit: int, block: CommandBlock, *, timeout: float | None = None
) -> None:
    await client.write_registers(unit, COMMAND_START, encode_command(block), timeout=timeout)


async def wait_for(
    client: RegisterClient, unit: int, *states: int, seen: set[int] | None = None
) -> StatusBlock:
    """Poll the status block until the point is in one of ``states``; record what it was."""
    return await poll_status(client, unit, lambda s: s.fp_state in states, seen)


async def poll_status(
    client: RegisterClient,
    unit: int,
    done: Callable[[StatusBlock], bool],
    seen: set[int] | None = None,
) -> StatusBlock:
    """Poll the status block until ``done`` holds (a pump is polled: it has no events)."""
    with trio.fail_after(SAFE):
        while True:
            status = await read_status(client, unit)
            if seen is not None:
                seen.add(status.fp_state)
            if done(status):
                return status
            await trio.sleep(0.01)


def close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
