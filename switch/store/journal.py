"""The journal: append-only event streams in PostgreSQL, written by one group-committing actor.

Theory of operation
-------------------
Actors journal their intent before any side effect and the result after it
(ARCHITECTURE.md, "Write-ahead"), so an ``await journal.append(...)`` must mean
*durable*. Committing each append on its own would cost one fsync per event; instead
every append goes, as a call, to a single :class:`JournalWriter` actor, whose committer
task takes everything that queued up while the previous commit was in flight (plus a
linger of a few milliseconds at most, bounded by ``max_batch`` events) and writes it in
one transaction: one round trip to ``journal_append()`` (migration 0002), with
``synchronous_commit`` on. Only when that transaction has committed does each caller's
``append`` return; when it fails, every caller in the batch gets the error. Nothing is
acknowledged that is not durable.

Each stream carries a sequence number. A caller passes the head it last saw
(``expected_seq``); if the stream has moved on (a second writer), the database refuses
the batch and names the stream, that caller gets ``ConflictError``, and the rest of the
batch is committed again without it. ``expected_seq=None`` appends at whatever the head
is. A stream appears at most once in a batch; a second append to it waits for the next.

When PostgreSQL goes away, the batch's callers (and those waiting for the next batch)
get ``StoreUnavailable`` - the outcome of a commit in flight is unknown, so they reload
the stream before deciding - and the writer crashes, to be restarted by its supervisor
with backoff. Appends still queued in its mailbox wait for the next incarnation.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import trio

from actors import (
    NOREPLY,
    Actor,
    ActorSystem,
    AddressLike,
    Backoff,
    ChildSpec,
    Exit,
    MailboxConfig,
    Overflow,
    Reply,
)
from ops.metrics import METRICS

from .bridge import Database
from .errors import ConflictError, QueryError, StoreError, StoreUnavailable, UniqueViolation

_STREAM = re.compile(r"[a-z][a-z0-9_]{0,31}:[A-Za-z0-9_.:@+-]{1,160}")
CONFLICT_SQLSTATE = "FJ409"


@dataclass(frozen=True, slots=True)
class Event:
    """One event to append. ``payload`` must be JSON-serialisable (integers for money)."""

    type: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    stream_id: str
    seq: int
    type: str
    payload: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StreamHead:
    stream_id: str
    kind: str
    last_seq: int
    terminal: bool
    last_recorded_at: datetime | None


@dataclass(frozen=True, slots=True)
class Append:
    """The call message to the writer; payloads are already JSON text (encoded by the caller)."""

    stream_id: str
    expected_seq: int | None
    types: tuple[str, ...]
    payloads: tuple[str, ...]
    terminal: bool


def validate_stream_id(stream_id: str) -> str:
    if not isinstance(stream_id, str) or not _STREAM.fullmatch(stream_id):
        raise ValueError(f"stream id must look like 'kind:id', not {stream_id!r}")
    return stream_id


class JournalWriter(Actor):
    """Group commit for every actor's appends (see the module's theory of operation).

    Up to ``max_inflight`` batches commit at once, on separate connections, over disjoint
    streams: the next batch forms while the previous one is still at the server, so an
    append waits for at most about one commit, not two.
    """

    linked_tasks = True
    terminate_timeout = 20.0

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 2000,
        max_inflight: int = 2,
        linger_s: float = 0.0,
        commit_timeout_s: float = 15.0,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.linger_s = linger_s
        self.commit_timeout_s = commit_timeout_s
        self._pending: deque[tuple[Append, Reply]] = deque()
        self._busy: set[str] = set()  # streams in a batch being committed
        self._inflight = 0
        self._changed = trio.Event()  # new work arrived, or a commit finished
        self._idle = trio.Event()  # nothing pending, nothing in flight
        self.batches = 0
        self.events = 0
        self.conflicts = 0
        self.failed_batches = 0
        self.last_batch = 0
        self.max_batch_seen = 0
        self.last_commit_s = 0.0
        self.max_commit_s = 0.0

    async def init(self) -> None:
        self.start_soon(self._committer)

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        if isinstance(msg, Append):
            self._pending.append((msg, reply))
            self._changed.set()
            return NOREPLY
        return await super().handle_call(msg, reply)

    async def terminate(self, reason: Exit) -> None:
        """On a graceful stop, flush what was accepted (the committer still runs during
        ``terminate``); whatever is left then, or after a crash, fails its caller."""
        if not reason.abnormal and (self._pending or self._inflight):
            self._idle = trio.Event()
            await self._idle.wait()
        self._fail_pending(StoreUnavailable("the journal writer stopped before committing"))

    def _fail_pending(self, error: BaseException) -> None:
        while self._pending:
            _, reply = self._pending.popleft()
            reply.fail(error)

    async def _committer(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                batch = self._take() if self._inflight < self.max_inflight else []
                if not batch:
                    if not self._pending and not self._inflight:
                        self._idle.set()
                    self._changed = trio.Event()
                    await self._changed.wait()
                    if self.linger_s > 0 and len(self._pending) < self.max_batch:
                        await trio.sleep(self.linger_s)
                    continue
                self._inflight += 1
                self._busy.update(append.stream_id for append, _ in batch)
                nursery.start_soon(self._run, batch)

    async def _run(self, batch: list[tuple[Append, Reply]]) -> None:
        try:
            await self._commit(batch)
        except StoreUnavailable as exc:
            for _, reply in batch:
                reply.fail(exc)
            self._fail_pending(exc)
            self.failed_batches += 1
            raise  # crash: the supervisor restarts the writer with backoff
        finally:
            self._inflight -= 1
            self._busy.difference_update(append.stream_id for append, _ in batch)
            self._changed.set()

    def _take(self) -> list[tuple[Append, Reply]]:
        """Up to ``max_batch`` events, at most one append per stream and none for a stream
        whose previous batch is still committing; callers who gave up are skipped."""
        batch: list[tuple[Append, Reply]] = []
        later: list[tuple[Append, Reply]] = []
        taken: set[str] = set()
        busy = self._busy
        events = 0
        pending = self._pending
        while pending and events < self.max_batch:
            append, reply = pending.popleft()
            if reply.abandoned:
                continue
            stream = append.stream_id
            if stream in taken or stream in busy:
                later.append((append, reply))
                continue
            taken.add(stream)
            batch.append((append, reply))
            events += len(append.types)
        pending.extendleft(reversed(later))
        return batch

    async def _commit(self, batch: list[tuple[Append, Reply]]) -> None:
        races = 0
        while batch:
            streams, expected, terminal = [], [], []
            event_stream: list[int] = []
            types: list[str] = []
            payloads: list[str] = []
            for i, (append, _) in enumerate(batch, start=1):
                streams.append(append.stream_id)
                expected.append(append.expected_seq)
                terminal.append(append.terminal)
                event_stream.extend([i] * len(append.types))
                types.extend(append.types)
                payloads.extend(append.payloads)
            started = trio.current_time()
            try:
                with trio.fail_after(self.commit_timeout_s):
                    rows = await self.db.fetch(
                        "SELECT stream_id, last_seq FROM journal_append($1, $2, $3, $4, $5, $6)",
                        streams,
                        expected,
                        terminal,
                        event_stream,
                        types,
                        payloads,
                    )
            except trio.TooSlowError:
                raise StoreUnavailable(
                    f"journal commit took over {self.commit_timeout_s:g}s; outcome unknown"
                ) from None
            except UniqueViolation as exc:
                # Another writer appended to one of these streams between our head probe and
                # our insert. Nothing was written: send again, and the probe will name it.
                races += 1
                if races > 3:
                    for _, reply in batch:
                        reply.fail(exc)
                    self.failed_batches += 1
                    return
                continue
            except QueryError as exc:
                if exc.sqlstate != CONFLICT_SQLSTATE:
                    for _, reply in batch:
                        reply.fail(exc)
                    self.failed_batches += 1
                    return
                batch = self._reject_conflicts(batch, exc.detail or "[]")
                continue
            elapsed = trio.current_time() - started
            heads = {r["stream_id"]: r["last_seq"] for r in rows}
            for append, reply in batch:
                reply.send(heads[append.stream_id])
            n = len(types)
            self.batches += 1
            self.events += n
            self.last_batch = n
            self.max_batch_seen = max(self.max_batch_seen, n)
            self.last_commit_s = elapsed
            self.max_commit_s = max(self.max_commit_s, elapsed)
            METRICS.observe_journal_commit(n, elapsed)
            return

    def _reject_conflicts(
        self, batch: list[tuple[Append, Reply]], detail: str
    ) -> list[tuple[Append, Reply]]:
        found = {c["stream"]: c for c in orjson.loads(detail)}
        if not found:
            raise StoreError(f"journal conflict without details: {detail!r}")
        keep = []
        for append, reply in batch:
            conflict = found.get(append.stream_id)
            if conflict is None:
                keep.append((append, reply))
            else:
                self.conflicts += 1
                reply.fail(
                    ConflictError(append.stream_id, conflict["expected"], conflict["actual"])
                )
        return keep

    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": len(self._pending),
            "batches": self.batches,
            "events": self.events,
            "mean_batch": self.events / self.batches if self.batches else 0.0,
            "last_batch": self.last_batch,
            "max_batch": self.max_batch_seen,
            "last_commit_ms": self.last_commit_s * 1000,
            "max_commit_ms": self.max_commit_s * 1000,
            "conflicts": self.conflicts,
            "failed_batches": self.failed_batches,
        }


def journal_writer_spec(
    db: Database,
    *,
    name: str = "journal",
    max_batch: int = 2000,
    max_inflight: int = 2,
    linger_s: float = 0.0,
    backoff: Backoff | None = None,
) -> ChildSpec:
    """The writer as a supervised child: a roomy mailbox whose callers wait for space
    (backpressure, never rejection), restarted with backoff after a database outage."""
    return ChildSpec(
        name,
        lambda: JournalWriter(
            db, max_batch=max_batch, max_inflight=max_inflight, linger_s=linger_s
        ),
        mailbox=MailboxConfig(capacity=20_000, overflow=Overflow.BLOCK),
        backoff=backoff or Backoff(min_delay=0.05, max_delay=2.0, jitter=0.2, reset_after=10.0),
        shutdown=30.0,
    )


class Journal:
    """What actors use: ``append`` through the writer, ``load`` and ``open_streams`` direct."""

    def __init__(self, system: ActorSystem, db: Database, writer: AddressLike = "journal") -> None:
        self.system = system
        self.db = db
        self.writer = writer

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int | None,
        terminal: bool = False,
        timeout: float = 10.0,
    ) -> int:
        """Append durably; returns the stream's new head (the last event's seq).

        Raises ``ConflictError`` if the stream is not at ``expected_seq``, and
        ``StoreUnavailable`` (outcome unknown: reload before retrying) if the database
        is unreachable or the commit did not finish in time.
        """
        validate_stream_id(stream_id)
        if not events:
            raise ValueError("append needs at least one event")
        if expected_seq is not None and expected_seq < 0:
            raise ValueError("expected_seq must be >= 0")
        message = Append(
            stream_id,
            expected_seq,
            tuple(e.type for e in events),
            tuple(orjson.dumps(e.payload).decode() for e in events),
            terminal,
        )
        head: int = await self.system.call(self.writer, message, timeout=timeout)
        return head

    async def load(self, stream_id: str, *, after_seq: int = 0) -> list[RecordedEvent]:
        rows = await self.db.fetch(
            "SELECT seq, type, payload, recorded_at FROM journal "
            "WHERE stream_id = $1 AND seq > $2 ORDER BY seq",
            validate_stream_id(stream_id),
            after_seq,
        )
        return [
            RecordedEvent(
                stream_id, r["seq"], r["type"], orjson.loads(r["payload"]), r["recorded_at"]
            )
            for r in rows
        ]

    async def load_many(self, stream_ids: Iterable[str]) -> dict[str, list[RecordedEvent]]:
        """Several streams in one query, each in seq order (a stream with no events maps to
        ``[]``): what a group of actors starting together reads once instead of each alone."""
        ids = sorted({validate_stream_id(s) for s in stream_ids})
        loaded: dict[str, list[RecordedEvent]] = {s: [] for s in ids}
        if not ids:
            return loaded
        rows = await self.db.fetch(
            "SELECT stream_id, seq, type, payload, recorded_at FROM journal "
            "WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, seq",
            ids,
        )
        for r in rows:
            stream = r["stream_id"]
            loaded[stream].append(
                RecordedEvent(
                    stream, r["seq"], r["type"], orjson.loads(r["payload"]), r["recorded_at"]
                )
            )
        return loaded

    async def head(self, stream_id: str) -> StreamHead | None:
        rows = await self.db.fetch(_HEADS + "WHERE s.stream_id = $1", validate_stream_id(stream_id))
        return StreamHead(**rows[0]) if rows else None

    async def open_streams(self, kind: str | None = None) -> list[StreamHead]:
        """Streams not yet terminal: what recovery must re-drive on start."""
        rows = await self.db.fetch(
            _HEADS + "WHERE NOT s.terminal AND ($1::text IS NULL OR s.kind = $1) "
            "ORDER BY s.stream_id",
            kind,
        )
        return [StreamHead(**r) for r in rows]


_HEADS = """
SELECT s.stream_id, s.kind, coalesce(last.seq, 0) AS last_seq, s.terminal,
       last.recorded_at AS last_recorded_at
FROM journal_streams AS s
LEFT JOIN LATERAL (
    SELECT j.seq, j.recorded_at FROM journal AS j
    WHERE j.stream_id = s.stream_id ORDER BY j.seq DESC LIMIT 1
) AS last ON true
"""


class PreloadingJournal(Journal):
    """A :class:`Journal` whose first ``load`` of each of ``streams`` comes from one query.

    For a group of streams that start together, each written only by its own actor (a
    station's pumps): the first load of any of them reads them all (``load_many``); each
    stream's events are then handed out once, to the first load of that stream, and every
    later load (a restarted actor's) reads the database as usual. Handing out once is what
    keeps it exact: the stream's only writer begins with that load, so nothing can have
    been appended between the query and the hand-out. Appends are the journal's own.
    """

    def __init__(self, journal: Journal, streams: Iterable[str]) -> None:
        super().__init__(journal.system, journal.db, journal.writer)
        self.streams = frozenset(validate_stream_id(s) for s in streams)
        self._preloaded: dict[str, list[RecordedEvent]] | None = None
        self._lock = trio.Lock()
        self.reads = 0  # load_many queries run (one, unless the first failed)
        self.handed_out = 0  # loads answered from it

    async def load(self, stream_id: str, *, after_seq: int = 0) -> list[RecordedEvent]:
        if after_seq == 0 and stream_id in self.streams:
            async with self._lock:
                if self._preloaded is None:
                    self.reads += 1
                    self._preloaded = await self.load_many(self.streams)
            events = self._preloaded.pop(stream_id, None)
            if events is not None:
                self.handed_out += 1
                return events
        return await super().load(stream_id, after_seq=after_seq)
