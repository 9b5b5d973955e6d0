"""Helpers shared by the admin socket tests: a plain module, pytest collects nothing from it."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import trio

from ops.admin import (
    MAX_RESPONSE_FRAME,
    AdminServer,
    AuditLog,
    Caller,
    Command,
    FrameDecoder,
    Param,
    encode_frame,
)


def packed(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


class Recorder:
    """Canned handlers that remember what they were sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], Caller]] = []

    def handler(self, name: str, result: Any) -> Any:
        async def handle(args: Mapping[str, Any], caller: Caller) -> Any:
            self.calls.append((name, dict(args), caller))
            return result

        return handle

    def args_of(self, name: str) -> list[dict[str, Any]]:
        return [args for cmd, args, _ in self.calls if cmd == name]


async def boom(args: Mapping[str, Any], caller: Caller) -> Any:
    raise RuntimeError("the handler broke")


async def echo(args: Mapping[str, Any], caller: Caller) -> Any:
    return {"args": dict(args), "uid": caller.uid}


def basic_commands() -> list[Command]:
    return [
        Command(
            "echo",
            echo,
            (
                Param("n", int, required=True),
                Param("word", str, default="hi"),
                Param("flag", bool, default=False),
                Param("items", list, default=[]),
            ),
        ),
        Command("boom", boom),
        Command("act", echo, (Param("n", int, default=0),), action=True),
        Command("act_boom", boom, action=True),
    ]


@asynccontextmanager
async def serving(
    path: Path,
    commands: Sequence[Command] | None = None,
    *,
    allowed_uids: Sequence[int] = (),
    audit: AuditLog | None = None,
) -> AsyncIterator[AdminServer]:
    server = AdminServer(
        path,
        basic_commands() if commands is None else commands,
        allowed_uids=allowed_uids,
        audit=audit,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        nursery.cancel_scope.cancel()


class RawConnection:
    """Bytes on the socket, by hand: for what AdminClient would never send."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(MAX_RESPONSE_FRAME)

    @classmethod
    async def open(cls, path: Path) -> RawConnection:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.connect(os.fspath(path))
        return cls(trio.SocketStream(sock))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, value: Any) -> None:
        await self.send_raw(encode_frame(packed(value)))

    async def reply(self) -> Any:
        """The next reply as a map; None once the server closed the connection."""
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return msgpack.unpackb(frame, raw=False)
            data = await self.stream.receive_some(65_536)
            if not data:
                return None
            self.decoder.feed(data)

    async def aclose(self) -> None:
        await self.stream.aclose()
