"""Unix socket plumbing for the admin socket: binding it private, clearing a stale one,
and asking the kernel who the peer is."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Final

import trio

from .protocol import Caller

__all__ = [
    "MAX_SOCKET_PATH",
    "AdminSocketError",
    "bind_private",
    "check_path",
    "peer_caller",
    "remove_if_ours",
]

# sun_path is 108 bytes on Linux, and the kernel wants room for the terminating NUL.
MAX_SOCKET_PATH: Final = 107
_PEERCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AdminSocketError(OSError):
    """The admin socket cannot be served (or reached) at this path; the message says why."""


def check_path(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise AdminSocketError(
            f"admin socket path is {size} bytes, over the Unix socket limit of "
            f"{MAX_SOCKET_PATH}: {path} (configure a shorter admin.socket)"
        )


async def _clear_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse to touch a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AdminSocketError(f"{path} exists and is not a socket; not replacing it")
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(os.fspath(path))
    except ConnectionRefusedError:
        os.unlink(path)  # a server that died without cleaning up
        return
    except OSError as exc:
        if exc.errno in (errno.ENOENT,):
            return
        raise AdminSocketError(f"cannot check the existing socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise AdminSocketError(f"another admin server is already listening on {path}")


async def bind_private(path: Path, backlog: int = 128) -> tuple[trio.socket.SocketType, int]:
    """A listening socket at ``path`` with mode 0600, and the inode it got.

    The umask is narrowed around ``bind`` (no await in between), so the socket is never
    reachable by others, not even for the moment before the ``chmod``.
    """
    check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    await _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(backlog)
        inode = os.stat(path).st_ino
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AdminSocketError(f"another admin server took {path} meanwhile") from exc
        raise AdminSocketError(f"cannot serve the admin socket at {path}: {exc}") from exc
    return trio.socket.from_stdlib_socket(sock), inode


def remove_if_ours(path: Path, inode: int) -> None:
    """Unlink ``path`` only if it is still the socket we bound (a successor may own it now)."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def peer_caller(sock: trio.socket.SocketType) -> Caller:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return Caller(uid=uid, pid=pid, gid=gid)
