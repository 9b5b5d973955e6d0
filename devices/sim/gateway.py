"""The Modbus TCP gateway of one simulated station: one port, unit id = pump number.

A thin trio adapter: bytes go through :class:`~devices.sim.framing.MbapServerCodec`,
requests through :meth:`Simulation.serve`, replies back through the codec. Per
connection, one task reads and decodes and one answers, strictly in the order the
requests arrived, so a client may pipeline and still gets its replies in order; a delayed
reply (a fault) holds up those behind it, as a gateway with a serial line behind it does.
Garbage is counted and skipped; it never closes the connection. A connection whose peer
goes away ends quietly; nothing it did can stop the server.

Unknown unit ids are answered with exception 0x0B, GATEWAY_TARGET_NO_RESPONSE, at once:
that is what a real gateway says when nothing answers behind it, and it keeps a client
that polls a pump missing from the station from piling up timeouts, which the switch's
client would read as a dead connection to every pump behind this gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
import trio

from devices.modbus.errors import ExceptionCode
from devices.modbus.pdu import Reply

from .framing import Garbage, Incoming, MbapServerCodec
from .simulation import Answer, Simulation

log = structlog.get_logger("devices.sim")

LINK_ERRORS: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
QUEUE: Final = 64  # requests read ahead per connection before the reader waits


@dataclass(frozen=True, slots=True)
class GatewayStatistics:
    station: int
    port: int
    connections: int  # accepted since start
    open_connections: int
    requests: int
    replies: int
    dropped: int  # replies withheld by the drop fault
    unknown_units: int
    garbage_runs: int
    dropped_bytes: int


class Gateway:
    """Serves one station's points on the listeners it is given."""

    def __init__(self, sim: Simulation, station: int, clock: Callable[[], float]) -> None:
        self.sim, self.station, self._clock = sim, station, clock
        self.port = 0
        self._connections = self._open = self._requests = self._replies = 0
        self._dropped = self._unknown = self._garbage = self._garbage_bytes = 0

    def statistics(self) -> GatewayStatistics:
        return GatewayStatistics(
            self.station,
            self.port,
            self._connections,
            self._open,
            self._requests,
            self._replies,
            self._dropped,
            self._unknown,
            self._garbage,
            self._garbage_bytes,
        )

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self.connection, listeners)

    async def connection(self, stream: trio.SocketStream) -> None:
        self._connections += 1
        self._open += 1
        codec = MbapServerCodec()
        send, receive = trio.open_memory_channel[Incoming](QUEUE)
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(self._answer, stream, receive, codec, nursery.cancel_scope)
                async with send:
                    await self._read(stream, send, codec)
        finally:
            self._open -= 1

    async def _read(
        self,
        stream: trio.SocketStream,
        requests: trio.MemorySendChannel[Incoming],
        codec: MbapServerCodec,
    ) -> None:
        try:
            while data := await stream.receive_some(65536):
                dropped = codec.dropped_bytes
                events = codec.feed(data)
                self._garbage_bytes += codec.dropped_bytes - dropped
                for event in events:
                    if isinstance(event, Garbage):
                        self._garbage += 1
                        log.info("sim.garbage", station=self.station, reason=event.reason)
                        continue
                    # Queue a burst without yielding between its requests (``send`` is a
                    # checkpoint): the answering task then finds them all and answers
                    # them in one write, instead of one write per request.
                    try:
                        requests.send_nowait(event)
                    except trio.WouldBlock:
                        await requests.send(event)
        except LINK_ERRORS as exc:
            log.info("sim.connection_lost", station=self.station, error=repr(exc))

    async def _answer(
        self,
        stream: trio.SocketStream,
        requests: trio.MemoryReceiveChannel[Incoming],
        codec: MbapServerCodec,
        connection: trio.CancelScope,
    ) -> None:
        try:
            async for first in requests:
                # Replies to requests that arrived together leave together: one write
                # for a burst instead of one per reply. A delayed reply flushes what is
                # ready first, so replies keep their order.
                batch = [first]
                while True:
                    try:
                        batch.append(requests.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                ready: list[bytes] = []
                for incoming in batch:
                    self._requests += 1
                    answer = self._answer_for(incoming)
                    if answer.reply is None:
                        self._dropped += 1
                        continue
                    if answer.delay_s:
                        await self._flush(stream, ready)
                        await trio.sleep(answer.delay_s)
                    ready.append(codec.encode(incoming.transaction_id, answer.reply))
                await self._flush(stream, ready)
        except LINK_ERRORS as exc:
            log.info("sim.connection_lost", station=self.station, error=repr(exc))
            connection.cancel()  # stop reading for a peer that is gone

    async def _flush(self, stream: trio.SocketStream, ready: list[bytes]) -> None:
        if ready:
            await stream.send_all(b"".join(ready))
            self._replies += len(ready)
            ready.clear()

    def _answer_for(self, incoming: Incoming) -> Answer:
        station, unit = self.station, incoming.unit
        if incoming.request is not None:
            answer = self.sim.serve(station, incoming.request, self._clock(), rtu=False)
        else:
            assert incoming.refusal is not None
            refusal = incoming.refusal
            answer = self.sim.refuse(station, unit, incoming.function, refusal, rtu=False)
        if answer is None:
            self._unknown += 1
            code = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
            return Answer(Reply(unit, incoming.function, exception_code=code))
        return answer
