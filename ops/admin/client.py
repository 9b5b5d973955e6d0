"""The admin socket client: ``async with await AdminClient.connect(path) as client``.

Every way of not reaching the switch (no socket file, nobody listening, no permission,
refused by uid) is one :class:`AdminUnavailable` whose message tells the operator what
to check; an error the switch answered with is :class:`AdminReplyError` with its code.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from .frames import MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, FrameDecoder, FrameTooLarge, encode_frame
from .protocol import ErrorCode, Reply, pack, parse_reply, to_wire
from .unix import AdminSocketError, check_path

__all__ = [
    "AdminClient",
    "AdminClientError",
    "AdminForbidden",
    "AdminReplyError",
    "AdminUnavailable",
]


class AdminClientError(Exception):
    """Base of the client's errors."""


class AdminUnavailable(AdminClientError):
    """The switch cannot be reached through this socket (the message says what to check)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class AdminForbidden(AdminUnavailable):
    """The switch is there but refused this uid (SO_PEERCRED)."""


class AdminReplyError(AdminClientError):
    """The switch answered ``ok: false``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _owner(path: Path) -> str:
    try:
        return f"uid {os.stat(path).st_uid}"
    except OSError:
        return "the switch's user"


def _unavailable(path: Path, exc: OSError) -> AdminUnavailable:
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        text = f"no admin socket at {path}: is the switch running, with this admin socket?"
    elif isinstance(exc, ConnectionRefusedError):
        text = f"nothing listens on {path} (a stale socket): is the switch running?"
    elif isinstance(exc, PermissionError):
        text = (
            f"permission denied on {path}: run as {_owner(path)}, or have uid {os.getuid()} "
            "added to admin.allowed_uids and the socket made reachable"
        )
    else:
        text = f"cannot connect to {path}: {exc}"
    return AdminUnavailable(text, path)


class AdminClient:
    def __init__(self, stream: trio.SocketStream, path: Path) -> None:
        self.path = path
        self._stream = stream
        self._decoder = FrameDecoder(MAX_RESPONSE_FRAME)
        self._ids = itertools.count(1)
        self._lock = trio.Lock()  # one request on the wire at a time: replies come in order

    @classmethod
    async def connect(cls, path: Path | str) -> AdminClient:
        path = Path(path)
        try:
            check_path(path)
        except AdminSocketError as exc:
            raise AdminUnavailable(str(exc), path) from None
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.connect(os.fspath(path))
        except OSError as exc:
            sock.close()
            raise _unavailable(path, exc) from None
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock), path)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def request(self, cmd: str, /, **args: Any) -> Any:
        """Send ``cmd`` with ``args``; the result, or ``AdminReplyError`` / ``AdminUnavailable``."""
        return await self.call(cmd, args)

    async def call(self, cmd: str, args: Mapping[str, Any]) -> Any:
        """:meth:`request` with the arguments as a mapping (names need not be identifiers)."""
        async with self._lock:
            request_id = next(self._ids)
            payload = pack({"id": request_id, "cmd": cmd, "args": to_wire(dict(args))})
            try:
                frame = encode_frame(payload, MAX_REQUEST_FRAME)
            except FrameTooLarge as exc:
                raise AdminReplyError(ErrorCode.TOO_LARGE, f"request not sent: {exc}") from None
            try:
                # A refused peer is hung up on, but the reason may still be waiting to be read.
                with contextlib.suppress(trio.BrokenResourceError):
                    await self._stream.send_all(frame)
            except BaseException:
                # Cancelled part way: half a frame may be on the wire, the connection is done.
                await trio.aclose_forcefully(self._stream)
                raise
            reply = await self._receive()
            while 0 < reply.id < request_id:
                reply = await self._receive()  # the answer to a request abandoned by a cancel
        code, message = reply.code or ErrorCode.FAILED, reply.message or ""
        if not reply.ok and code == ErrorCode.FORBIDDEN:
            raise AdminForbidden(
                f"the switch at {self.path} refused this user: {message}", self.path
            )
        # Id 0: an error about a request whose own id could not be read.
        if reply.id != request_id and (reply.ok or reply.id != 0):
            raise AdminReplyError(
                ErrorCode.MALFORMED, f"reply {reply.id} does not answer request {request_id}"
            )
        if reply.ok:
            return reply.result
        raise AdminReplyError(code, message)

    async def _receive(self) -> Reply:
        while True:
            try:
                frame = self._decoder.next_frame()
            except FrameTooLarge as exc:
                await self.aclose()
                raise AdminReplyError(ErrorCode.TOO_LARGE, f"reply not read: {exc}") from None
            if frame is not None:
                try:
                    return parse_reply(frame)
                except ValueError as exc:
                    raise AdminReplyError(ErrorCode.MALFORMED, f"bad reply: {exc}") from None
            try:
                data = await self._stream.receive_some(65_536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                raise AdminUnavailable(
                    f"the switch closed the connection on {self.path} before replying", self.path
                )
            self._decoder.feed(data)
