"""Modbus TCP client for one station gateway: one connection, many unit ids, pipelined.

The trio adapter around :mod:`devices.modbus.mbap`. Three kinds of task touch the stream,
and a fourth keeps the time:

* callers (any number) register a transaction id, queue their frame and wait for their
  reply; at most ``max_in_flight`` of them have a request outstanding at once;
* one writer task writes queued frames, so a caller cancelled mid-write can never leave
  half a frame on the stream; whatever is queued when it wakes goes out in one write;
* one reader task feeds received bytes to the codec and wakes the caller each reply is for;
* one expiry task times out requests that got no reply in time. A cancel scope per request
  would do the same, but registering and retiring a trio deadline costs some 6 us per
  request, and a switch polls thousands of pumps a second (``fuelswitch bench pumps``);
  a heap of deadlines per connection costs a push and a pop.

:meth:`ModbusTcpClient.run` keeps the connection up: it reconnects with exponential backoff
whenever the connection drops. While it is down, requests fail at once with
:class:`ModbusConnectionError` instead of waiting for a reconnect that may never come.

Run it in a nursery of your own (``await nursery.start(client.run)``, cancel to stop), or
use ``async with ModbusTcpClient(...) as client:``, which runs it in a nursery of its own;
as with any nursery, an exception that leaves the block leaves it inside an ExceptionGroup.
"""

from __future__ import annotations

import heapq
import itertools
import math
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import structlog
import trio

from actors import Backoff

from .client import LinkState, ModbusStatistics, RegisterClient
from .errors import ModbusConnectionError, ModbusError, ModbusFrameError, ModbusTimeout
from .mbap import MbapBadPdu, MbapCodec, MbapEvent, MbapGarbage, TransactionTable
from .pdu import Reply, Request

log = structlog.get_logger("devices.modbus")

DEFAULT_BACKOFF = Backoff(min_delay=0.1, max_delay=10.0, jitter=0.2, reset_after=30.0)
_LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class _Pending:
    """One caller waiting for its reply (mutable, owned by the client).

    The caller parks on its own task rather than on a ``trio.Event``: an Event is a
    parking lot with a dict per request, and a poll of thousands of pumps a second
    builds one per poll; this is the same park and reschedule without the lot.
    """

    __slots__ = ("error", "finished", "reply", "request", "rtt", "sent_at", "task")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.finished = False
        self.task: trio.lowlevel.Task | None = None  # parked in wait()
        self.reply: Reply | None = None
        self.error: ModbusError | None = None
        self.sent_at: float | None = None
        self.rtt = 0.0

    def finish(self) -> None:
        """Wake the caller (idempotent): reply, error, or neither (timed out)."""
        if not self.finished:
            self.finished = True
            task, self.task = self.task, None
            if task is not None:
                trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        self.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.task = None  # cancelled: finish() must not reschedule a task gone on
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class _Link:
    """One live connection: its outbox, its requests' deadlines, and the scope that tears
    it down."""

    __slots__ = (
        "deadlines",
        "expiry_due",
        "expiry_wakeup",
        "lost_reason",
        "outbox",
        "scope",
        "silent_timeouts",
    )

    def __init__(self, scope: trio.CancelScope, outbox: trio.MemorySendChannel[int]) -> None:
        self.scope = scope
        self.outbox = outbox
        self.lost_reason: str | None = None
        self.silent_timeouts = 0  # timeouts since the last frame received
        # (deadline, tie-breaker, tid, waiter); answered entries are dropped lazily
        self.deadlines: list[tuple[float, int, int, _Pending]] = []
        self.expiry_due = math.inf  # when the expiry task wakes next
        self.expiry_wakeup = trio.Event()

    def lose(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
        self.scope.cancel()

    def watch(self, deadline: float, order: int, tid: int, pending: _Pending) -> None:
        heapq.heappush(self.deadlines, (deadline, order, tid, pending))
        if deadline < self.expiry_due:
            self.expiry_wakeup.set()


class ModbusTcpClient(RegisterClient):
    """A pipelining Modbus TCP client with reconnects; see the module docstring.

    ``timeout`` is the default per-request reply timeout, from queueing the request to its
    reply. ``max_in_flight`` bounds the requests outstanding at once; peers that cannot
    pipeline (pymodbus's own server among them) need 1. After ``drop_after_timeouts``
    timeouts in a row with no frame received in between, the connection is presumed dead
    (a gateway that rebooted without a reset leaves a half-open socket) and is re-made.
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        *,
        timeout: float = 1.0,
        connect_timeout: float = 3.0,
        max_in_flight: int = 4,
        backoff: Backoff = DEFAULT_BACKOFF,
        drop_after_timeouts: int = 3,
    ) -> None:
        super().__init__(timeout)
        if max_in_flight < 1 or drop_after_timeouts < 1:
            raise ValueError("max_in_flight and drop_after_timeouts must be >= 1")
        self.host, self.port = host, port
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._drop_after = drop_after_timeouts
        self._free_slots = max_in_flight
        self._slot_queue = trio.lowlevel.ParkingLot()  # callers waiting for a free slot
        self._codec = MbapCodec()
        self._table: TransactionTable[_Pending] = TransactionTable()
        self._frames: dict[int, bytes] = {}  # queued frames by transaction id
        self._order = itertools.count()  # breaks ties between equal deadlines
        self._state = LinkState.CLOSED
        self._state_changed = trio.Event()
        self._link: _Link | None = None
        self._started = False
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"<ModbusTcpClient {self.host}:{self.port} {self._state.value}>"

    @property
    def state(self) -> LinkState:
        return self._state

    def statistics(self) -> ModbusStatistics:
        self._counters.dropped_bytes = self._codec.dropped_bytes
        return self._counters.snapshot(self._state, len(self._table))

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(self.run)
            stack.callback(nursery.cancel_scope.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None, "__aexit__ without __aenter__"
        return await stack.__aexit__(exc_type, exc, tb)

    async def wait_connected(self) -> None:
        """Wait until the connection is up (callers own the timeout)."""
        while self._state is not LinkState.CONNECTED:
            if self._state is LinkState.CLOSED and self._started:
                raise ModbusConnectionError(f"{self.host}:{self.port}: client closed")
            await self._state_changed.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connection up until cancelled. Reports started at once, before connecting:
        requests made during the first attempt wait for its outcome."""
        if self._started:
            raise RuntimeError("ModbusTcpClient.run() may be called only once")
        self._started = True
        self._set_state(LinkState.CONNECTING)
        task_status.started()
        attempt, ever_connected = 0, False
        try:
            while True:
                self._set_state(LinkState.CONNECTING)
                stream = await self._connect()
                if stream is not None:
                    self._counters.reconnects += ever_connected
                    ever_connected = True
                    up_since = trio.current_time()
                    await self._serve(stream)
                    if trio.current_time() - up_since >= self._backoff.reset_after:
                        attempt = 0
                self._set_state(LinkState.DISCONNECTED)
                await trio.sleep(self._backoff.delay(attempt))
                attempt += 1
        finally:
            self._set_state(LinkState.CLOSED)
            self._fail_pending("client closed")

    async def execute(self, request: Request, *, timeout: float | None = None) -> tuple[int, ...]:
        timeout = self._timeout_for(timeout)
        await self._take_slot()
        try:
            link = await self._ready_link()
            pending = _Pending(request)
            tid = self._table.open(pending)
            self._frames[tid] = self._codec.encode(tid, request)
            self._counters.requests += 1
            try:
                link.outbox.send_nowait(tid)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The link went down between _ready_link and here: nothing was written.
                self._table.pop(tid)
                self._frames.pop(tid, None)
                self._counters.connection_errors += 1
                raise ModbusConnectionError(
                    f"{self.host}:{self.port}: connection lost before sending"
                ) from None
            if timeout < math.inf:
                # From here on the expiry task abandons the request and wakes us if the
                # deadline passes first.
                link.watch(trio.current_time() + timeout, next(self._order), tid, pending)
            try:
                await pending.wait()
            finally:
                self._frames.pop(tid, None)
                if self._table.get(tid) is pending:  # cancelled from outside
                    self._table.abandon(tid)  # a late reply is now recognised and dropped
        finally:
            self._give_slot()
        reply, pending.reply = pending.reply, None  # the deadline heap may hold the waiter
        if reply is not None:  # a while longer: not its registers
            return self._counters.settle(request, reply, pending.rtt)
        if pending.error is not None:
            raise pending.error
        self._counters.timeouts += 1
        link.silent_timeouts += 1
        if link.silent_timeouts >= self._drop_after:
            self._lose(link, f"{link.silent_timeouts} timeouts with nothing received")
        raise ModbusTimeout(request.unit, request.function, timeout)

    async def _take_slot(self) -> None:
        """One of ``max_in_flight`` slots. A free slot is taken without yielding (a
        Semaphore yields on every acquire, an extra pass of the scheduler per request);
        a freed slot is handed to the longest waiter, so no caller is overtaken."""
        if self._free_slots and not self._slot_queue:
            self._free_slots -= 1
            return
        await self._slot_queue.park()  # woken by _give_slot, the slot handed over

    def _give_slot(self) -> None:
        if self._slot_queue:
            self._slot_queue.unpark()
        else:
            self._free_slots += 1

    # -- the connection -------------------------------------------------------------

    def _set_state(self, state: LinkState) -> None:
        if state is not self._state:
            self._state = state
            self._state_changed.set()
            self._state_changed = trio.Event()

    async def _ready_link(self) -> _Link:
        while self._state is LinkState.CONNECTING:
            await self._state_changed.wait()
        if self._state is LinkState.CONNECTED and self._link is not None:
            return self._link
        self._counters.connection_errors += 1
        why = f": {self._counters.last_error}" if self._counters.last_error else ""
        raise ModbusConnectionError(f"{self.host}:{self.port}: {self._state.value}{why}")

    async def _connect(self) -> trio.SocketStream | None:
        try:
            with trio.fail_after(self._connect_timeout):
                return await trio.open_tcp_stream(self.host, self.port)
        except (OSError, trio.TooSlowError) as exc:
            self._link_down(f"connect failed: {exc!r}")
        return None

    async def _serve(self, stream: trio.SocketStream) -> None:
        """Run one connection until it is lost; then fail what was in flight on it."""
        self._codec.reset()
        outbox, inbox = trio.open_memory_channel[int](math.inf)
        link = _Link(trio.CancelScope(), outbox)
        async with stream:
            try:
                with link.scope:
                    self._link = link
                    self._set_state(LinkState.CONNECTED)
                    log.info("modbus.connected", peer=f"{self.host}:{self.port}")
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._write_loop, stream, inbox, link)
                        nursery.start_soon(self._expiry_loop, link)
                        await self._read_loop(stream, link)
            finally:
                # No checkpoint from here to the end of _link_down: no caller can slip a
                # request onto a link that is going away.
                self._link = None
                outbox.close()
                inbox.close()
                self._link_down(link.lost_reason)

    def _lose(self, link: _Link, reason: str) -> None:
        """Tear a link down. New requests fail fast from now on, not once run() notices."""
        link.lose(reason)
        if self._link is link:
            self._link = None
            self._set_state(LinkState.DISCONNECTED)

    def _link_down(self, reason: str | None) -> None:
        """The link is gone (reason None: the client is closing it)."""
        self._set_state(LinkState.DISCONNECTED)
        self._fail_pending(reason or "client closed")
        if reason is not None:
            self._counters.last_error = reason
            log.warning("modbus.link_down", peer=f"{self.host}:{self.port}", reason=reason)

    def _fail_pending(self, reason: str) -> None:
        for pending in self._table.drain():
            pending.error = ModbusConnectionError(
                f"{self.host}:{self.port}: {reason}", outcome_unknown=pending.sent_at is not None
            )
            pending.finish()
            self._counters.connection_errors += 1

    async def _write_loop(
        self, stream: trio.SocketStream, inbox: trio.MemoryReceiveChannel[int], link: _Link
    ) -> None:
        try:
            async for first in inbox:
                batch = [first]
                while True:  # whatever else is queued already goes out in the same write
                    try:
                        batch.append(inbox.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                now = trio.current_time()
                frames = []
                for tid in batch:
                    pending, frame = self._table.get(tid), self._frames.get(tid)
                    if pending is None or frame is None:
                        continue  # the caller gave up before its turn: do not send it late
                    pending.sent_at = now
                    frames.append(frame)
                if frames:
                    await stream.send_all(frames[0] if len(frames) == 1 else b"".join(frames))
        except _LINK_ERRORS as exc:
            self._lose(link, f"send failed: {exc!r}")

    async def _expiry_loop(self, link: _Link) -> None:
        """Abandon requests whose deadline passed unanswered, and wake their callers.

        Sleeps until the earliest deadline of a request still waiting; answered requests
        are only popped off the heap's top on the way, so each costs O(log n) once.
        """
        heap = link.deadlines
        while True:
            now = trio.current_time()
            while heap and (heap[0][0] <= now or heap[0][3].finished):
                _, _, tid, pending = heapq.heappop(heap)
                if not pending.finished:
                    if self._table.get(tid) is pending:
                        self._table.abandon(tid)  # a late reply is now recognised and dropped
                    pending.finish()  # neither reply nor error: the caller times out
            link.expiry_due = heap[0][0] if heap else math.inf
            link.expiry_wakeup = trio.Event()
            with trio.move_on_at(link.expiry_due):
                await link.expiry_wakeup.wait()

    async def _read_loop(self, stream: trio.SocketStream, link: _Link) -> None:
        try:
            while data := await stream.receive_some(65536):
                for event in self._codec.feed(data):
                    self._dispatch(event, link)
            self._lose(link, "connection closed by the peer")
        except _LINK_ERRORS as exc:
            self._lose(link, f"receive failed: {exc!r}")

    def _dispatch(self, event: MbapEvent, link: _Link) -> None:
        peer = f"{self.host}:{self.port}"
        link.silent_timeouts = 0  # whatever it is, the peer is sending: the link is alive
        if isinstance(event, MbapGarbage):
            self._counters.frame_errors += 1
            log.warning("modbus.garbage", peer=peer, reason=event.reason)
            return
        pending = self._table.pop(event.transaction_id)
        if isinstance(event, MbapBadPdu):
            self._counters.frame_errors += 1
            log.warning("modbus.bad_pdu", peer=peer, tid=event.transaction_id, unit=event.unit)
            if pending is not None:
                pending.error = ModbusFrameError(f"{peer}: unit {event.unit}: undecodable reply")
                pending.finish()
        elif pending is not None:
            pending.reply = event.reply
            pending.rtt = trio.current_time() - (pending.sent_at or trio.current_time())
            pending.finish()
        elif self._table.was_abandoned(event.transaction_id):
            self._counters.late_responses += 1
            log.info("modbus.late_reply", peer=peer, tid=event.transaction_id)
        else:
            self._counters.unknown_responses += 1
            log.warning("modbus.unknown_reply", peer=peer, tid=event.transaction_id)
