"""The customers of a load test: open-loop arrivals, each one its own task.

An arrival starts at its scheduled time whatever happened before; sale time is measured from
that scheduled time to the moment the switch finished the sale (the order's ``updated_at``
when it is first seen terminal), so a slow switch, or a slow load generator, shows in the
figures instead of pushing later arrivals back. The load generator shares the machine with
what it measures, so every customer costs it little: prepay creates the order and lifts the
nozzle at once (the pump calls, and fuels as soon as the switch authorizes it: the providers
pay by themselves), then reads the order once near the expected end of the sale and then
every ``FOLLOW_S``; post-pay fuels at a stand-alone pump, reads the pump list once the fill
should be over, pays the sale and follows the order the same way. A customer's token is
issued once per pump and reused (one customer at a pump at a time); bodies go out and come
back through orjson, over the lean client of :mod:`loadtest.http_pool`.

A 503 ``overloaded`` answer to a prepay order creation is the switch turning the customer
away (admission control): the customer is counted as ``shed``, leaves (the pump is free
again) and is never retried: a retry would be load the switch just said it cannot take. A
post-pay customer has the fuel already and cannot leave: the payment is tried again after
the pause the switch asks for, as long as the sale's time allows. Requests
that fail in transport, or get another 503 (starting up, draining: a restart), are retried
under the same Idempotency-Key with a doubling pause (``RETRY_FIRST_S`` .. ``RETRY_MAX_S``)
until ``RETRY_FOR_S``, so a killed switch meets no retry storm; what still fails is an error
of its kind.
"""

from __future__ import annotations

import contextlib
import gc
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
import trio

from switch.api.auth import TokenSigner
from switch.demo.procs import DemoError
from switch.demo.sims import PumpControl

from .http_pool import HttpPool, Reply, TransportFailed
from .schedule import Arrival, Flow, PumpPool
from .stats import CREATE, LAG, Recorder

__all__ = ["OVERLOADED", "Driver", "DriverState", "Shed", "open_loop", "steady_gc"]

FOLLOW_S: Final = 2.0  # between reads of an order (or a pump list) not finished yet
RETRY_FOR_S: Final = 30.0  # a restart after SIGKILL fits well within this
RETRY_FIRST_S: Final = 0.2
RETRY_MAX_S: Final = 2.0
OWED_MAX_S: Final = 16.0  # a post-pay customer told to come back tries again at most this late
POSTPAY_TRIES: Final = 3  # payments a post-pay driver makes for one sale before giving up
OVERLOADED: Final = "overloaded"  # the last segment of the switch's problem type
GC_THRESHOLD: Final = 20_000  # allocations between young collections (Python's default: 700)
JSON_CONTENT: Final = ("Content-Type", "application/json")
SALE_TIMEOUT_S: Final = 180.0
FLOW_ML_S: Final = 600  # the simulator's mean flow rate (model mL per second)


class RequestFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Shed(Exception):
    """The switch refused to create the order: it is full (503 ``overloaded``)."""


@dataclass(slots=True)
class DriverState:
    """What the live display shows."""

    in_flight: int = 0
    retries: int = 0
    requests: int = 0  # HTTP requests sent to the switch (retries included)
    order_ids: list[str] = field(default_factory=list)


class Driver:
    def __init__(
        self,
        http: HttpPool,
        secret: bytes,
        pumps: Sequence[PumpControl],
        pool: PumpPool,
        recorder: Recorder,
        *,
        speed: float,
        wall_t0: float,
    ) -> None:
        self.http = http  # to the switch's API
        self.signer = TokenSigner(secret)
        self.pumps = list(pumps)
        self.pool = pool
        self.recorder = recorder
        self.speed = speed
        self.wall_t0 = wall_t0  # time.time() at the run's second 0
        self.trio_t0 = 0.0
        self.state = DriverState()
        self._tokens: dict[tuple[str, int], str] = {}

    # -- plumbing --------------------------------------------------------------------------

    def now_s(self) -> float:
        return trio.current_time() - self.trio_t0

    def _token(self, pump: tuple[str, int]) -> str:
        """The token of whoever stands at ``pump``: issued once, reused (an hour long)."""
        token = self._tokens.get(pump)
        if token is None:
            subject = f"load-{pump[0]}-{pump[1]}"
            token = self.signer.issue(subject, "customer", ttl_s=3 * 3600, now=time.time())
            self._tokens[pump] = token
        return token

    async def _request(
        self,
        token: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        create: bool = False,
        owed: bool = False,
    ) -> Any:
        """``create``: an order creation (an Idempotency-Key, kept across retries; a 503
        ``overloaded`` raises :class:`Shed`). ``owed``: a payment for fuel already in the
        tank: the customer cannot leave, so an ``overloaded`` answer is waited out (after
        ``RETRY_MAX_S``, doubling to ``OWED_MAX_S``, as long as the sale's own time allows)
        instead of counted as shed."""
        headers = [("Authorization", f"Bearer {token}")]
        content = b""
        if body is not None:
            headers.append(JSON_CONTENT)
            content = orjson.dumps(body)
        if create:
            headers.append(("Idempotency-Key", secrets.token_hex(16)))
        deadline = trio.current_time() + RETRY_FOR_S
        pause = RETRY_FIRST_S
        owed_pause = RETRY_MAX_S
        while True:
            self.state.requests += 1
            reply: Reply | None
            try:
                reply = await self.http.request(method, path, headers, content)
            except TransportFailed:
                reply = None
            if reply is not None and reply.status < 400:
                return orjson.loads(reply.content)
            if reply is not None and reply.status != 503:
                raise RequestFailed(f"http_{reply.status}_{_problem(reply)}")
            if reply is not None and create and _problem(reply) == OVERLOADED:
                if not owed:
                    raise Shed
                self.state.retries += 1
                await trio.sleep(owed_pause)  # as a person would: again, a little later
                owed_pause = min(OWED_MAX_S, owed_pause * 2)
                continue
            if trio.current_time() + pause > deadline:  # down too long, or 503 throughout
                raise RequestFailed("transport" if reply is None else "http_503_" + _problem(reply))
            self.state.retries += 1  # killed, starting up or draining: the same key again
            await trio.sleep(pause)
            pause = min(RETRY_MAX_S, pause * 2)

    async def _pump(self, index: int, cmd: str, **args: Any) -> None:
        try:
            await self.pumps[index % len(self.pumps)].call(cmd, **args)
        except (DemoError, OSError, trio.TooSlowError) as exc:
            raise RequestFailed("pump_control") from exc

    def _ended_at_s(self, view: dict[str, Any]) -> float:
        stamp = datetime.fromisoformat(str(view["updated_at"]).replace("Z", "+00:00"))
        return stamp.timestamp() - self.wall_t0

    # -- one customer ----------------------------------------------------------------------

    async def arrive(self, arrival: Arrival) -> None:
        """Play ``arrival``; never raises (failures are counted by kind)."""
        self.recorder.arrived += 1
        self.recorder.latency(LAG, max(0.0, self.now_s() - arrival.at_s))
        pump = self.pool.take(arrival.flow)
        if pump is None:
            self.recorder.error("no_free_pump", arrival.at_s)
            return
        self.state.in_flight += 1
        try:
            token = self._token(pump)
            with trio.fail_after(SALE_TIMEOUT_S):
                if arrival.flow is Flow.PREPAY:
                    view = await self._prepay(arrival, pump, token)
                else:
                    view = await self._postpay(arrival, pump, token)
            self._finished(arrival, view)
        except Shed:
            self.recorder.customer_shed(self.now_s())
            self.recorder.outcomes[f"{arrival.flow.value}:shed"] += 1
        except RequestFailed as failed:
            self.recorder.error(failed.kind, self.now_s())
        except trio.TooSlowError:
            self.recorder.error("sale_timeout", self.now_s())
        finally:
            self.state.in_flight -= 1
            self.pool.give(arrival.flow, pump)

    def _finished(self, arrival: Arrival, view: dict[str, Any]) -> None:
        state = str(view["state"])
        self.recorder.outcomes[f"{arrival.flow.value}:{state}"] += 1
        if state != "completed":
            self.recorder.error(f"order_{state}", self.now_s())
            return
        ended = self._ended_at_s(view)
        self.recorder.sale_completed(ended, ended - arrival.at_s, int(view.get("volume_ml") or 0))

    def _fill_s(self, arrival: Arrival) -> float:
        return arrival.litres_ml / FLOW_ML_S / self.speed

    async def _send(
        self, arrival: Arrival, token: str, path: str, body: Any, *, owed: bool = False
    ) -> dict[str, Any]:
        sent = self.now_s()
        view: dict[str, Any] = await self._request(
            token, "POST", path, body, create=True, owed=owed
        )
        self.recorder.latency(CREATE, self.now_s() - sent, sent)
        self.recorder.order_accepted(self.now_s())
        self.state.order_ids.append(str(view["id"]))
        return view

    async def _prepay(self, a: Arrival, pump: tuple[str, int], token: str) -> dict[str, Any]:
        sid, pump_no = pump
        body = {
            "station_id": sid,
            "pump_no": pump_no,
            "preset_kind": "amount",
            "preset_value": a.preset_fen,
            "method": a.method,
            "payer_id": a.payer_id,
            "nozzle_no": a.nozzle_no,
        }
        view = await self._send(a, token, "/v1/orders", body)
        where = {"station": sid, "pump": pump_no, "nozzle": a.nozzle_no}
        await self._pump(a.index, "customer", **where, hang_up_after_ml=a.litres_ml)
        return await self._follow(token, str(view["id"]), 1.0 + self._fill_s(a))

    async def _postpay(self, a: Arrival, pump: tuple[str, int], token: str) -> dict[str, Any]:
        sid, pump_no = pump
        where = {"station": sid, "pump": pump_no, "nozzle": a.nozzle_no}
        await self._pump(a.index, "customer", **where, hang_up_after_ml=a.litres_ml)
        await trio.sleep(0.5 + self._fill_s(a))
        path = f"/v1/stations/{sid}/pumps/{pump_no}/pay"
        for _ in range(POSTPAY_TRIES):
            # A payment that failed (the switch died before the order started, every
            # channel refused) leaves the fuel owed: the driver pays again, a new request.
            seq = await self._payable(token, sid, pump_no)
            body = {"method": a.method, "payer_id": a.payer_id, "pump_sale_seq": seq}
            view = await self._send(a, token, path, body, owed=True)
            view = await self._follow(token, str(view["id"]), 0.5)
            if view["state"] != "failed":
                break
        return view

    async def _payable(self, token: str, sid: str, pump_no: int) -> int:
        """The newest unlocked sale waiting at the pump (a pump serves one customer at a
        time, so it is this customer's)."""
        while True:
            page = await self._request(token, "GET", f"/v1/stations/{sid}/pumps")
            for item in page["items"]:
                if item["pump_no"] == pump_no:
                    sales = [s for s in item["payable"] if not s.get("locked_by")]
                    if sales:
                        return int(max(s["pump_sale_seq"] for s in sales))
            await trio.sleep(FOLLOW_S)

    async def _follow(self, token: str, order_id: str, first_s: float) -> dict[str, Any]:
        await trio.sleep(first_s)
        while True:
            view: dict[str, Any] = await self._request(token, "GET", f"/v1/orders/{order_id}")
            if view["terminal"]:
                return view
            await trio.sleep(FOLLOW_S)


@contextlib.contextmanager
def steady_gc() -> Iterator[None]:
    """While customers arrive: what exists already (the planned arrivals, the imported
    modules) frozen out of the collector's reach, and collections rarer. A full collection
    over everything stalled the event loop for up to 0.6 s here, and every arrival due in
    that time started late (the generator's lag p99 went from ~0.2 s to ~0.9 s)."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, thresholds[1], max(thresholds[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def open_loop(
    nursery: trio.Nursery,
    arrivals: Sequence[Arrival],
    t0: float,
    play: Callable[[Arrival], Awaitable[None]],
) -> None:
    """Start ``play(arrival)`` at ``t0 + arrival.at_s`` (trio clock), each as its own task
    in ``nursery``: nothing here waits for an earlier arrival to finish."""
    for arrival in arrivals:
        await trio.sleep_until(t0 + arrival.at_s)
        nursery.start_soon(play, arrival)


def _problem(reply: Reply) -> str:
    """The last segment of a problem+json ``type`` (``/problems/overloaded``: overloaded)."""
    try:
        body = orjson.loads(reply.content)
    except orjson.JSONDecodeError:
        return "unknown"
    kind = str(body.get("type", "")).rsplit("/", 1)[-1] if isinstance(body, dict) else ""
    return kind or "unknown"
