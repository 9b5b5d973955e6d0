"""Opening a serial line for trio: pyserial configures the tty, trio does the I/O.

Shared by the Modbus RTU client and the DART line master. pyserial opens the port and
sets speed, framing, raw mode and the exclusive lock; trio then reads and writes a
duplicate of its file descriptor through ``trio.lowlevel.FdStream``, so no thread ever
blocks on the line. pyserial's and the OS's errors become :class:`SerialOpenError`.
"""

from __future__ import annotations

import os

import serial
import trio

from .modbus.rtu_codec import SerialSettings


class SerialOpenError(OSError):
    """The port could not be opened or configured."""


def open_serial(
    settings: SerialSettings, *, exclusive: bool = True
) -> tuple[serial.Serial, trio.lowlevel.FdStream]:
    """The open port (close it after the stream) and a trio stream on a duplicate fd."""
    try:
        port = serial.Serial(
            port=settings.port,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity.value,
            stopbits=settings.stopbits,
            # pyserial's only way to set VMIN=1, VTIME=0. Its default, VMIN=0, makes a
            # read on an idle tty return 0 bytes instead of EAGAIN, even non-blocking,
            # and FdStream would take that for end of file.
            inter_byte_timeout=0,
            exclusive=exclusive,
        )
    except (serial.SerialException, OSError) as exc:
        raise SerialOpenError(f"{settings.port}: cannot open: {exc}") from None
    try:
        stream = trio.lowlevel.FdStream(os.dup(port.fileno()))
    except OSError as exc:
        port.close()
        raise SerialOpenError(f"{settings.port}: cannot open: {exc}") from None
    return port, stream


def drain_input(stream: trio.lowlevel.FdStream) -> int:
    """Read and drop whatever input is waiting (never blocks); the bytes dropped."""
    dropped = 0
    while True:
        try:
            chunk = os.read(stream.fileno(), 4096)
        except BlockingIOError:
            return dropped
        if not chunk:
            return dropped
        dropped += len(chunk)
