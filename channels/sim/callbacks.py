"""Callback delivery, as the providers do it: signed per send, retried on a schedule, faulty.

A provider simulator describes one notification as a :class:`Delivery` and hands it to
:meth:`CallbackEngine.submit`; the engine sends it at once and then after each delay of the
provider's retry schedule (simulated seconds, so a test that advances the clock sees a day of
WeChat retries in a moment) until the receiver's answer passes the provider's own success rule.
Every send is built anew by ``build(t)``: a WeChat retry carries a fresh timestamp and signature,
exactly as a real one does.

Faults come from the provider's :class:`~channels.sim.faults.ProviderFaults` at the moment of
each send: ``callback_drop`` loses a send (it is retried like a failed one), ``callback_duplicate``
sends the same bytes twice (concurrently, or 1 s of simulated time apart as over another network
path), ``callback_delay_s`` holds a delivery back before its first send, and with
``callback_reorder`` only that fraction is held, so later deliveries overtake them.

Every send is recorded in a bounded log (the control API's GET /callbacks).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import structlog
import trio

from channels.model import Provider

from .clock import SimClock
from .faults import Faults

__all__ = [
    "ALIPAY_RETRY_S",
    "RETRY_SCHEDULES",
    "UNIONPAY_RETRY_S",
    "WECHATPAY_RETRY_S",
    "CallbackEngine",
    "Delivery",
    "DeliveryRecord",
]

log = structlog.get_logger(__name__)

# Delays between sends, in simulated seconds (specs/providers.md); the first send is immediate.
WECHATPAY_RETRY_S: Final = (
    15.0, 15.0, 30.0, 180.0, 600.0, 1200.0, 1800.0, 1800.0, 1800.0, 3600.0,
    10800.0, 10800.0, 10800.0, 21600.0, 21600.0,
)  # fmt: skip
ALIPAY_RETRY_S: Final = (240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)
UNIONPAY_RETRY_S: Final = (60.0, 120.0, 240.0, 300.0)
RETRY_SCHEDULES: Final[Mapping[Provider, tuple[float, ...]]] = {
    Provider.WECHATPAY: WECHATPAY_RETRY_S,
    Provider.ALIPAY: ALIPAY_RETRY_S,
    Provider.UNIONPAY: UNIONPAY_RETRY_S,
}
# How long each provider waits for the receiver's answer (real seconds).
ANSWER_TIMEOUT_S: Final[Mapping[Provider, float]] = {
    Provider.WECHATPAY: 5.0,
    Provider.ALIPAY: 10.0,
    Provider.UNIONPAY: 10.0,
}
DUPLICATE_GAP_S: Final = 1.0  # simulated seconds between a send and its late duplicate

Build = Callable[[float], tuple[dict[str, str], bytes]]
Accepted = Callable[[int, bytes], bool]


@dataclass(frozen=True, slots=True)
class Delivery:
    provider: Provider
    merchant_id: str
    url: str
    event_key: str  # the provider's event id (WeChat id, notify_id, queryId...) for the log
    build: Build  # headers and body of a send at simulated time t, signed for that send
    accepted: Accepted  # the provider's success rule on (status, body) of the answer
    schedule: tuple[float, ...]  # delays between sends, simulated seconds


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    seq: int
    sim_time: float
    provider: Provider
    merchant_id: str
    event_key: str
    attempt: int  # 1 = the first send, 2 = the first retry, ...
    copy: int  # 2 for the second copy of a duplicated send
    duplicate: str | None  # "together" (both copies at once) or "late" (1 s apart)
    url: str
    status: int | None  # the receiver's HTTP status, None when there was no answer
    error: str | None  # "dropped", an httpx exception name, "build_failed", ...
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "sim_time": self.sim_time,
            "provider": self.provider.value,
            "merchant_id": self.merchant_id,
            "event_key": self.event_key,
            "attempt": self.attempt,
            "copy": self.copy,
            "duplicate": self.duplicate,
            "url": self.url,
            "status": self.status,
            "error": self.error,
            "accepted": self.accepted,
        }


class CallbackEngine:
    """Sends every provider's callbacks from one nursery with one httpx client.

    Deliveries submitted before :meth:`run` starts wait and go out once it runs; the engine's
    nursery also runs other background work of the simulators (:meth:`spawn`).
    """

    def __init__(
        self,
        clock: SimClock,
        faults: Faults,
        *,
        log_size: int = 10_000,
        timeouts: Mapping[Provider, float] | None = None,
    ) -> None:
        self.clock = clock
        self.faults = faults
        self.timeouts = dict(ANSWER_TIMEOUT_S if timeouts is None else timeouts)
        self._log: deque[DeliveryRecord] = deque(maxlen=log_size)
        self._seq = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None
        self._waiting: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = []
        self.pending = 0  # deliveries neither accepted nor given up yet
        self.held = 0  # of those, held back before their first send (delay, reorder)
        self.given_up = 0
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(limits=limits) as client, trio.open_nursery() as nursery:
            self._client, self._nursery = client, nursery
            try:
                waiting, self._waiting = self._waiting, []
                for fn, args in waiting:
                    nursery.start_soon(fn, *args)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def submit(self, delivery: Delivery) -> None:
        """Start delivering (returns at once)."""
        self.pending += 1
        self._start(self._deliver, delivery)

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` in the background; its failure is logged, never fatal."""
        self._start(self._guarded, fn, *args)

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` holds; it is checked after every send and every change of
        ``pending`` or ``held`` (for tests, and for tools that wait for the engine to settle)."""
        while not done():
            await self._changed.wait()

    def records(
        self, provider: Provider | None = None, event_key: str | None = None, since: int = 0
    ) -> list[DeliveryRecord]:
        """Logged sends, oldest first; ``since``: only those with a larger ``seq``."""
        return [
            r
            for r in self._log
            if r.seq > since
            and (provider is None or r.provider is provider)
            and (event_key is None or r.event_key == event_key)
        ]

    # -- delivery -------------------------------------------------------------------------

    def _start(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        if self._nursery is None:
            self._waiting.append((fn, args))
        else:
            self._nursery.start_soon(fn, *args)

    async def _guarded(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        try:
            await fn(*args)
        except Exception:
            log.exception("sim.background_failed", task=getattr(fn, "__name__", repr(fn)))

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            hold = self._hold_s(delivery.provider)
            if hold:
                self.held += 1
                self._notify()
                try:
                    await self.clock.sleep(hold)
                finally:
                    self.held -= 1
            for attempt, wait in enumerate((0.0, *delivery.schedule), start=1):
                if wait:
                    await self.clock.sleep(wait)
                outcome = await self._send(delivery, attempt)
                if outcome is True:
                    return
                if outcome is False:
                    break  # cannot be built: retrying would fail the same way
            self.given_up += 1
            log.info("sim.callback_given_up", event_key=delivery.event_key)
        finally:
            self.pending -= 1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _hold_s(self, provider: Provider) -> float:
        faults = self.faults.get(provider)
        if not faults.callback_delay_s:
            return 0.0
        if faults.callback_reorder:
            rng = self.faults.rng(provider, "callbacks")
            return faults.callback_delay_s if rng.random() < faults.callback_reorder else 0.0
        return faults.callback_delay_s

    async def _send(self, delivery: Delivery, attempt: int) -> bool | None:
        """One send (and its duplicate): True accepted, None not accepted, False unbuildable."""
        faults = self.faults.get(delivery.provider)
        rng = self.faults.rng(delivery.provider, "callbacks")
        if faults.callback_drop and rng.random() < faults.callback_drop:
            self._record(delivery, attempt, 1, None, None, "dropped", accepted=False)
            return None
        try:
            headers, body = delivery.build(self.clock.now())
        except Exception as exc:
            log.exception("sim.callback_build_failed", event_key=delivery.event_key)
            error = f"build_failed: {exc}"
            self._record(delivery, attempt, 1, None, None, error, accepted=False)
            return False
        if not (faults.callback_duplicate and rng.random() < faults.callback_duplicate):
            accepted = await self._post(delivery, attempt, 1, None, headers, body)
        elif rng.random() < 0.5:  # both copies at the same moment
            results: list[bool] = []

            async def post(copy: int) -> None:
                sent = await self._post(delivery, attempt, copy, "together", headers, body)
                results.append(sent)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post, 1)
                nursery.start_soon(post, 2)
            accepted = any(results)
        else:  # the late copy, over another path
            first = await self._post(delivery, attempt, 1, "late", headers, body)
            await self.clock.sleep(DUPLICATE_GAP_S)
            second = await self._post(delivery, attempt, 2, "late", headers, body)
            accepted = first or second
        return True if accepted else None

    async def _post(
        self,
        delivery: Delivery,
        attempt: int,
        copy: int,
        duplicate: str | None,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        assert self._client is not None
        timeout = self.timeouts.get(delivery.provider, 10.0)
        try:
            reply = await self._client.post(
                delivery.url, headers=headers, content=body, timeout=timeout
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is not an HTTPError
            error = type(exc).__name__
            self._record(delivery, attempt, copy, duplicate, None, error, accepted=False)
            return False
        try:
            accepted = bool(delivery.accepted(reply.status_code, reply.content))
        except Exception as exc:
            status, error = reply.status_code, repr(exc)
            self._record(delivery, attempt, copy, duplicate, status, error, accepted=False)
            return False
        self._record(delivery, attempt, copy, duplicate, reply.status_code, None, accepted=accepted)
        return accepted

    def _record(
        self,
        delivery: Delivery,
        attempt: int,
        copy: int,
        duplicate: str | None,
        status: int | None,
        error: str | None,
        *,
        accepted: bool,
    ) -> None:
        self._log.append(
            DeliveryRecord(
                seq=next(self._seq),
                sim_time=self.clock.now(),
                provider=delivery.provider,
                merchant_id=delivery.merchant_id,
                event_key=delivery.event_key,
                attempt=attempt,
                copy=copy,
                duplicate=duplicate,
                url=delivery.url,
                status=status,
                error=error,
                accepted=accepted,
            )
        )
        self._notify()
