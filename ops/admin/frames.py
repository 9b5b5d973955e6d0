"""The admin socket's framing, sans-IO: a 4-byte big-endian length, then that many bytes.

The decoder never touches a socket: the server and the client feed it whatever
``receive_some`` returned and take complete frames out. A header announcing more than
the limit is an error at once, before any of its body is awaited or kept, so a peer
cannot make either side buffer an arbitrary amount by lying about a length.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "HEADER",
    "MAX_REQUEST_FRAME",
    "MAX_RESPONSE_FRAME",
    "FrameDecoder",
    "FrameTooLarge",
    "encode_frame",
]

HEADER: Final = struct.Struct(">I")
MAX_REQUEST_FRAME: Final = 65_536
MAX_RESPONSE_FRAME: Final = 16 * 2**20

_COMPACT_AT: Final = 65_536  # consumed bytes worth moving the rest of the buffer for


class FrameTooLarge(Exception):
    """A header announced (or a payload has) more bytes than the limit allows."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


def encode_frame(payload: bytes, limit: int | None = None) -> bytes:
    """``payload`` with its length header; ``FrameTooLarge`` when it exceeds ``limit``."""
    if limit is not None and len(payload) > limit:
        raise FrameTooLarge(len(payload), limit)
    if len(payload) > 0xFFFFFFFF:
        raise FrameTooLarge(len(payload), 0xFFFFFFFF)
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Feed bytes with :meth:`feed`; take frames with :meth:`next_frame` until it returns None.

    After ``FrameTooLarge`` the stream has lost its framing for good: the decoder drops
    what it holds, ignores further input and raises the same error again.
    """

    __slots__ = ("_buffer", "_error", "_start", "max_frame")

    def __init__(self, max_frame: int) -> None:
        if max_frame < 0:
            raise ValueError("max_frame must be >= 0")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._start = 0
        self._error: FrameTooLarge | None = None

    def feed(self, data: bytes) -> None:
        if self._error is None:
            self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a complete frame (0 at a frame boundary)."""
        return len(self._buffer) - self._start

    def next_frame(self) -> bytes | None:
        """The next complete frame, None when more bytes are needed, or ``FrameTooLarge``."""
        if self._error is not None:
            raise self._error
        buffer, start = self._buffer, self._start
        if len(buffer) - start < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(buffer, start)
        if size > self.max_frame:
            self._error = FrameTooLarge(size, self.max_frame)
            self._buffer = bytearray()
            self._start = 0
            raise self._error
        end = start + HEADER.size + size
        if len(buffer) < end:
            return None
        frame = bytes(buffer[start + HEADER.size : end])
        if end == len(buffer):
            buffer.clear()
            self._start = 0
        elif end >= _COMPACT_AT:
            del buffer[:end]
            self._start = 0
        else:
            self._start = end
        return frame
