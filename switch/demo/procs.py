"""The demo's child processes: a ``fuelswitch`` command that prints one JSON ready line.

Every long-running piece of the demo (pump simulator, provider simulators, the switch) is a
separate ``python -m switch.cli ...`` process, exactly as an operator would start it, so the
demo exercises the real start-up, signal and shutdown paths rather than an in-process shortcut.
The protocol is the one of :mod:`ops.process`: one JSON line on stdout once listening, logs on
stderr (here: a file in the run directory, so a failed run can be read afterwards), SIGTERM
stops it with status 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import trio

__all__ = ["ChildProcess", "DemoError"]

READY_TIMEOUT_S = 180.0  # the first start of the provider simulators generates RSA keys
STOP_GRACE_S = 15.0


class DemoError(Exception):
    """The demo cannot go on (a process did not start, a step timed out)."""


class ChildProcess:
    """One ``fuelswitch`` command, its ready document and its stderr log file."""

    def __init__(
        self, name: str, args: Sequence[str], log_dir: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **env}
        self.process: trio.Process | None = None
        self.ready: dict[str, Any] = {}
        self.status: int | None = None

    def snapshot(self) -> dict[str, Any]:
        pid = None if self.process is None else self.process.pid
        return {"name": self.name, "pid": pid, "status": self.status, "log": str(self.log_path)}

    async def start(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Start the process and wait for its ready line; DemoError (with the log's tail)
        when it exits or stays silent instead."""
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "switch.cli", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
            )
        stdout = self.process.stdout
        assert stdout is not None
        buffer = bytearray()
        with trio.move_on_after(timeout):
            while b"\n" not in buffer:
                chunk = await stdout.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
        line = bytes(buffer).split(b"\n", 1)[0]
        try:
            ready = orjson.loads(line) if line else None
        except orjson.JSONDecodeError:
            ready = None
        if not isinstance(ready, dict):
            await self.stop()
            raise DemoError(f"{self.name} did not start ({self.describe()}):\n{self.log_tail()}")
        self.ready = ready
        return ready

    def describe(self) -> str:
        return f"fuelswitch {' '.join(self.args)}; log {self.log_path}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds. Shielded: a
        demo interrupted with Ctrl-C still stops what it started."""
        process = self.process
        if process is None:
            return self.status
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                with trio.move_on_after(grace):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()
        self.status = process.returncode
        self.process = None
        return self.status
