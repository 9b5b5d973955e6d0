"""The provider simulators as tests run them: a real ``fuelswitch sim providers`` process with
a temporary FUELSWITCH_HOME, and a client for its control API (sync for fixtures, async for
trio tests)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parents[2]
SAFE = 10.0  # a bound for what must happen, never a measurement
START_TIMEOUT = 120.0  # the first start generates RSA keys on a busy machine


class ControlError(AssertionError):
    """The control API refused a call the test expected to succeed."""


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)


class ControlClient:
    """Every control endpoint, as ``name(...)`` (blocking) and ``aname(...)`` (trio)."""

    def __init__(self, base_url: str, timeout: float = SAFE) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    # -- the calls ---------------------------------------------------------------------------

    @staticmethod
    def _customer(provider: str, key: str, action: str, merchant_id: str | None) -> _Call:
        body = {"provider": provider, "key": key, "action": action}
        if merchant_id is not None:
            body["merchant_id"] = merchant_id
        return _Call("POST", "/customer", body)

    @staticmethod
    def _set_faults(provider: str, settings: dict[str, Any], merge: bool) -> _Call:
        return _Call("PATCH" if merge else "PUT", f"/faults/{provider}", settings)

    @staticmethod
    def _ledger(provider: str | None, merchant_id: str | None) -> _Call:
        params = {"provider": provider or "", "merchant_id": merchant_id or ""}
        return _Call("GET", "/ledger", params={k: v for k, v in params.items() if v})

    @staticmethod
    def _callbacks(provider: str | None, event_key: str | None, since: int) -> _Call:
        params = {"provider": provider or "", "event_key": event_key or "", "since": str(since)}
        return _Call("GET", "/callbacks", params={k: v for k, v in params.items() if v})

    # blocking

    def customer(
        self, provider: str, key: str, action: str = "pay", merchant_id: str | None = None
    ) -> dict[str, Any]:
        return self._sync(self._customer(provider, key, action, merchant_id))

    def set_faults(self, provider: str, *, merge: bool = False, **settings: Any) -> dict[str, Any]:
        """PUT (fields left out go back to their defaults) or, with ``merge``, PATCH."""
        return self._sync(self._set_faults(provider, settings, merge))

    def clear_faults(self) -> None:
        for provider in ("wechatpay", "alipay", "unionpay"):
            self._sync(self._set_faults(provider, {}, False))

    def faults(self, provider: str) -> dict[str, Any]:
        return self._sync(_Call("GET", f"/faults/{provider}"))

    def clock(self) -> dict[str, Any]:
        return self._sync(_Call("GET", "/clock"))

    def advance(self, seconds: float) -> float:
        now: float = self._sync(_Call("POST", "/clock/advance", {"seconds": seconds}))["now"]
        return now

    def rotate_keys(self, provider: str) -> dict[str, Any]:
        return self._sync(_Call("POST", f"/keys/{provider}/rotate"))

    def ledger(
        self, provider: str | None = None, merchant_id: str | None = None
    ) -> list[dict[str, Any]]:
        trades: list[dict[str, Any]] = self._sync_any(self._ledger(provider, merchant_id))
        return trades

    def callbacks(
        self, provider: str | None = None, event_key: str | None = None, since: int = 0
    ) -> dict[str, Any]:
        return self._sync(self._callbacks(provider, event_key, since))

    def material(self) -> dict[str, Any]:
        return self._sync(_Call("GET", "/material"))

    # trio

    async def acustomer(
        self, provider: str, key: str, action: str = "pay", merchant_id: str | None = None
    ) -> dict[str, Any]:
        return await self._async(self._customer(provider, key, action, merchant_id))

    async def aset_faults(
        self, provider: str, *, merge: bool = False, **settings: Any
    ) -> dict[str, Any]:
        return await self._async(self._set_faults(provider, settings, merge))

    async def afaults(self, provider: str) -> dict[str, Any]:
        return await self._async(_Call("GET", f"/faults/{provider}"))

    async def aclear_faults(self) -> None:
        for provider in ("wechatpay", "alipay", "unionpay"):
            await self._async(self._set_faults(provider, {}, False))

    async def aadvance(self, seconds: float) -> float:
        reply = await self._async(_Call("POST", "/clock/advance", {"seconds": seconds}))
        now: float = reply["now"]
        return now

    async def aclock(self) -> dict[str, Any]:
        return await self._async(_Call("GET", "/clock"))

    async def arotate_keys(self, provider: str) -> dict[str, Any]:
        return await self._async(_Call("POST", f"/keys/{provider}/rotate"))

    async def aledger(
        self, provider: str | None = None, merchant_id: str | None = None
    ) -> list[dict[str, Any]]:
        trades: list[dict[str, Any]] = await self._async_any(self._ledger(provider, merchant_id))
        return trades

    async def acallbacks(
        self, provider: str | None = None, event_key: str | None = None, since: int = 0
    ) -> dict[str, Any]:
        return await self._async(self._callbacks(provider, event_key, since))

    async def amaterial(self) -> dict[str, Any]:
        return await self._async(_Call("GET", "/material"))

    async def await_callbacks(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        *,
        provider: str | None = None,
        event_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Poll the delivery log until ``done(records)`` holds (bounded by SAFE)."""
        with trio.fail_after(SAFE):
            while True:
                records: list[dict[str, Any]] = (await self.acallbacks(provider, event_key))[
                    "records"
                ]
                if done(records):
                    return records
                await trio.sleep(0.02)

    async def await_ledger(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        *,
        provider: str | None = None,
        merchant_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Poll the ledger until ``done(trades)`` holds (bounded by SAFE)."""
        with trio.fail_after(SAFE):
            while True:
                trades = await self.aledger(provider, merchant_id)
                if done(trades):
                    return trades
                await trio.sleep(0.02)

    # -- plumbing ----------------------------------------------------------------------------

    def raw(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """Any request, answered as it is (for tests of the API's own errors)."""
        return httpx.request(method, self.base_url + path, content=body, timeout=self.timeout)

    async def araw(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            return await client.request(method, self.base_url + path, content=body)

    def _sync(self, call: _Call) -> dict[str, Any]:
        data: dict[str, Any] = self._sync_any(call)
        return data

    async def _async(self, call: _Call) -> dict[str, Any]:
        data: dict[str, Any] = await self._async_any(call)
        return data

    def _sync_any(self, call: _Call) -> Any:
        with httpx.Client(timeout=self.timeout) as client:
            reply = client.request(
                call.method, self.base_url + call.path, json=call.json, params=call.params
            )
        return _checked(call, reply)

    async def _async_any(self, call: _Call) -> Any:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            reply = await client.request(
                call.method, self.base_url + call.path, json=call.json, params=call.params
            )
        return _checked(call, reply)


def _checked(call: _Call, reply: httpx.Response) -> Any:
    if reply.status_code != 200:
        raise ControlError(f"{call.method} {call.path}: {reply.status_code} {reply.text}")
    return reply.json()


class ProviderSimProcess:
    """``python -m switch.cli sim providers ARGS`` in a subprocess; ``ready`` is its JSON line.

    ``home`` is FUELSWITCH_HOME (a temporary directory, removed on :meth:`terminate`, unless
    one is given, which is kept so a second process can reuse its keys)."""

    def __init__(self, *args: str, home: Path | None = None) -> None:
        self.args = args
        self._own_home = home is None
        self.home = Path(tempfile.mkdtemp(prefix="fs-providers-")) if home is None else home
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        # stderr to a file, which never fills up as a pipe nobody reads would
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the object)

    def __enter__(self) -> ProviderSimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.terminate()
        self.cleanup()

    @property
    def control(self) -> ControlClient:
        return ControlClient(self.ready["control"])

    def url(self, provider: str) -> str:
        url: str = self.ready[provider]
        return url

    @property
    def keys(self) -> Path:
        return Path(self.ready["keys"])

    def env(self) -> dict[str, str]:
        return {**os.environ, "FUELSWITCH_HOME": str(self.home)}

    def start(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "sim", "providers", *self.args],
            cwd=ROOT,
            env=self.env(),
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
            raise RuntimeError(f"provider simulators {self.args} did not start: {self.stderr()}")
        self.ready = json.loads(line)
        return self.ready

    def keys_command(self, *args: str) -> dict[str, Any]:
        """``fuelswitch sim providers keys``: the public material it prints."""
        done = subprocess.run(
            [sys.executable, "-m", "switch.cli", "sim", "providers", "keys", *args],
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"keys failed ({done.returncode}): {done.stderr.decode()}")
        material: dict[str, Any] = json.loads(done.stdout)
        return material

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._close()
        return status

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._close()

    def cleanup(self) -> None:
        """Remove the temporary home (the process must be stopped)."""
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _close(self) -> None:
        assert self.proc is not None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
