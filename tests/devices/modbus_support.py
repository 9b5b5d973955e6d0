"""Peers and plumbing for the Modbus client tests.

The byte-level helpers here (MBAP and RTU frames, the CRC) are written from the Modbus
specifications, not with pymodbus, so the raw peers check the client independently.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import subprocess
import sys
import tty
from pathlib import Path

import trio

SERVER_SCRIPT = Path(__file__).with_name("modbus_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """tests/devices/modbus_server.py in a subprocess (pymodbus's servers are asyncio)."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait (blocking) for its ``ready`` line."""
        proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self.proc = proc
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.stop()
                raise RuntimeError(f"modbus server {self.args} did not start in {timeout}s")
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"modbus server {self.args} failed to start: {line!r}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


# -- Modbus TCP, by hand ------------------------------------------------------------------


def mbap(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


def registers_pdu(function: int, values: list[int]) -> bytes:
    return struct.pack(f">BB{len(values)}H", function, 2 * len(values), *values)


class MbapRequests:
    """Reads whole MBAP request frames off a stream: (tid, unit, function, address, count)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            data = await self.stream.receive_some(4096)
            if not data:
                return False
            self.buffer += data
        return True

    async def next(self) -> tuple[int, int, int, int, int] | None:
        if not await self._fill(7):
            return None
        tid, _protocol, length, unit = struct.unpack(">HHHB", self.buffer[:7])
        if not await self._fill(6 + length):
            return None
        function, address, count = struct.unpack(">BHH", self.buffer[7:12])
        del self.buffer[: 6 + length]
        return tid, unit, function, address, count


# -- Modbus RTU, by hand ------------------------------------------------------------------


def crc16(data: bytes) -> bytes:
    """Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF), low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def rtu(frame: bytes) -> bytes:
    return frame + crc16(frame)


def open_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode: (master fd, slave fd, slave path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


async def relay(source: int, target: int) -> None:
    """Copy bytes from one pty master to another until cancelled: a null-modem cable."""
    async with (
        trio.lowlevel.FdStream(os.dup(source)) as reader,
        trio.lowlevel.FdStream(os.dup(target)) as writer,
    ):
        while data := await reader.receive_some(4096):
            await writer.send_all(data)


class RtuDevice:
    """A scripted RTU device on a pty master: reads requests, writes what the test says."""

    def __init__(self, master: int) -> None:
        self.stream = trio.lowlevel.FdStream(os.dup(master))
        self.buffer = bytearray()

    async def request(self, size: int = 8) -> bytes:
        """One request of ``size`` bytes (reads of FC 03/04 and FC 06 are 8), CRC checked."""
        while len(self.buffer) < size:
            self.buffer += await self.stream.receive_some(4096)
        frame = bytes(self.buffer[:size])
        del self.buffer[:size]
        assert crc16(frame[:-2]) == frame[-2:], f"bad CRC from the client: {frame.hex()}"
        return frame

    async def reply(self, frame: bytes) -> None:
        await self.stream.send_all(frame)

    async def aclose(self) -> None:
        await self.stream.aclose()
