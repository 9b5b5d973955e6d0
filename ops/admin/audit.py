"""The audit log: one JSON line per operator action, on disk before the action's reply.

Each record opens the file, appends one line with a single ``write`` (O_APPEND keeps
lines whole even with another writer), fsyncs and closes, in a worker thread. Opening
per record costs little next to the fsync and means a rotated log (``mv`` then a new
file) needs no signal to the switch.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import trio

from .protocol import Caller, to_wire

__all__ = ["AuditLog"]


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = trio.Lock()  # one record at a time: lines go to disk in reply order

    async def record(
        self,
        caller: Caller,
        cmd: str | None,
        args: Mapping[str, Any],
        *,
        ok: bool,
        error: str | None,
    ) -> dict[str, Any]:
        """Append and fsync one record; returns it. ``cmd`` None records a refused connection."""
        entry = {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "uid": caller.uid,
            "pid": caller.pid,
            "cmd": cmd,
            "args": to_wire(dict(args)),
            "ok": ok,
            "error": error,
        }
        line = orjson.dumps(entry, default=_json_default) + b"\n"
        async with self._lock:
            await trio.to_thread.run_sync(self._append, line)
        return entry

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
