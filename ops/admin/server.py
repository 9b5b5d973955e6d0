"""The admin socket server: one trio task per connection, requests answered in order.

Nothing a client sends can stop the server: bad bytes get an error reply, a handler
that raises gets ``failed`` (and a logged traceback), an oversized frame gets
``too_large`` and a closed connection. Who may talk is decided by the kernel's
SO_PEERCRED, not by anything the client says, on top of the socket's 0600 mode.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import structlog
import trio

from .audit import AuditLog
from .commands import Command, CommandTable
from .frames import MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, FrameDecoder, FrameTooLarge, encode_frame
from .protocol import AdminError, Caller, ErrorCode, Reply, pack, parse_request, to_wire
from .unix import bind_private, peer_caller, remove_if_ours

__all__ = ["AdminServer"]

log = structlog.get_logger("ops.admin")

_RECEIVE_CHUNK: Final = 65_536
# Out of file descriptors or buffers: wait a little instead of spinning on accept.
_ACCEPT_CAPACITY_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_RETRY_S: Final = 0.1


class AdminServer:
    def __init__(
        self,
        path: Path,
        commands: Sequence[Command],
        *,
        allowed_uids: Collection[int] = (),
        audit: AuditLog | None = None,
    ) -> None:
        self.path = Path(path)
        self.table = CommandTable(commands)
        self.allowed_uids = frozenset({os.getuid(), *allowed_uids})
        self.audit = audit
        self._open = 0
        self._total = 0
        self._requests = 0
        self._refused = 0
        self._errors: Counter[str] = Counter()

    def statistics(self) -> dict[str, Any]:
        return {
            "connections_open": self._open,
            "connections_total": self._total,
            "requests": self._requests,
            "errors_by_code": dict(self._errors),
            "refused": self._refused,
        }

    async def run(self, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``started(path)`` once the socket listens. Removes the
        socket file at exit (if it is still ours)."""
        sock, inode = await bind_private(self.path)
        listener = trio.SocketListener(sock)
        try:
            log.info("admin.listening", path=str(self.path))
            task_status.started(self.path)
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_CAPACITY_ERRORS:
                            raise
                        log.warning("admin.accept_failed", error=str(exc))
                        await trio.sleep(_ACCEPT_RETRY_S)
                        continue
                    nursery.start_soon(self._connection, stream)
        finally:
            remove_if_ours(self.path, inode)
            with trio.CancelScope(shield=True):
                await listener.aclose()

    # -- one connection ----------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        self._open += 1
        self._total += 1
        try:
            async with stream:
                caller = peer_caller(stream.socket)
                if caller.uid not in self.allowed_uids:
                    await self._refuse(stream, caller)
                else:
                    await self._converse(stream, caller)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("admin.connection_lost", error=str(exc))
        except Exception:
            log.exception("admin.connection_error")
        finally:
            self._open -= 1

    async def _refuse(self, stream: trio.SocketStream, caller: Caller) -> None:
        self._refused += 1
        log.warning("admin.refused", uid=caller.uid, pid=caller.pid, gid=caller.gid)
        if self.audit is not None:
            await self._audit(caller, None, {}, ok=False, error=str(ErrorCode.FORBIDDEN))
        message = f"uid {caller.uid} may not use this admin socket (see admin.allowed_uids)"
        await self._send(stream, Reply.failure(0, ErrorCode.FORBIDDEN, message))

    async def _converse(self, stream: trio.SocketStream, caller: Caller) -> None:
        decoder = FrameDecoder(MAX_REQUEST_FRAME)
        while True:
            data = await stream.receive_some(_RECEIVE_CHUNK)
            if not data:
                return
            decoder.feed(data)
            while True:
                try:
                    frame = decoder.next_frame()
                except FrameTooLarge as exc:
                    await self._send(stream, Reply.failure(0, ErrorCode.TOO_LARGE, str(exc)))
                    return
                if frame is None:
                    break
                await self._send(stream, await self.handle(frame, caller))
                # Pipelined requests arrive in one chunk: let other clients have a turn.
                await trio.lowlevel.checkpoint()

    async def _send(self, stream: trio.SocketStream, reply: Reply) -> None:
        try:
            payload = pack(reply.to_map())
        except Exception as exc:
            log.exception("admin.unpackable_result", id=reply.id)
            reply = Reply.failure(reply.id, ErrorCode.FAILED, f"{type(exc).__name__}: {exc}")
            payload = pack(reply.to_map())
        if len(payload) > MAX_RESPONSE_FRAME:
            message = (
                f"the result is {len(payload)} bytes, over the reply limit of "
                f"{MAX_RESPONSE_FRAME}: ask for a smaller page"
            )
            reply = Reply.failure(reply.id, ErrorCode.FAILED, message)
            payload = pack(reply.to_map())
        if not reply.ok and reply.code is not None:
            self._errors[reply.code] += 1
        await stream.send_all(encode_frame(payload))

    # -- one request -------------------------------------------------------------------

    async def handle(self, frame: bytes, caller: Caller) -> Reply:
        """The reply to one request frame (public for tests of the dispatch alone)."""
        self._requests += 1
        try:
            request = parse_request(frame)
        except AdminError as exc:
            return Reply.failure(exc.request_id, exc.code, exc.message)
        try:
            command = self.table.lookup(request.cmd)
        except AdminError as exc:
            return Reply.failure(request.id, exc.code, exc.message)
        args: Mapping[str, Any] = request.args
        try:
            args = command.bind(request.args)
            reply = Reply.success(request.id, to_wire(await command.handler(args, caller)))
        except AdminError as exc:
            reply = Reply.failure(request.id, exc.code, exc.message)
        except Exception as exc:
            log.exception("admin.command_failed", cmd=command.name, uid=caller.uid)
            reply = Reply.failure(request.id, ErrorCode.FAILED, f"{type(exc).__name__}: {exc}")
        if command.action:
            log.info(
                "admin.action",
                cmd=command.name,
                uid=caller.uid,
                pid=caller.pid,
                args=to_wire(dict(args)),
                ok=reply.ok,
                error=reply.code,
            )
            if self.audit is not None:
                await self._audit(caller, command.name, args, ok=reply.ok, error=reply.code)
        return reply

    async def _audit(
        self,
        caller: Caller,
        cmd: str | None,
        args: Mapping[str, Any],
        *,
        ok: bool,
        error: str | None,
    ) -> None:
        if self.audit is None:
            return
        try:
            await self.audit.record(caller, cmd, args, ok=ok, error=error)
        except OSError:
            # The action already happened: its reply must still go out. Shout instead.
            log.critical("admin.audit_failed", path=str(self.audit.path), cmd=cmd, exc_info=True)
