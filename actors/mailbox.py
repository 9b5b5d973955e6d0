"""Bounded mailboxes with a per-actor overflow policy.

An actor's mailbox outlives its incarnations: a crash drops only the message being
handled, and whatever is queued is handled by the next incarnation. The mailbox is
closed only when the actor stops for good, and then every queued call is failed.

Two lanes: the *user* lane holds calls, casts and infos and is bounded by
``capacity``; the *system* lane carries the runtime's own signals (stop requests,
child exits) and is always admitted and always taken first, so a flooded actor can
still be stopped and a supervisor still hears of its children's exits.

Why not a ``trio`` memory channel underneath: the statistics need the age of the
oldest queued message (a channel cannot be peeked), drop-oldest must evict the head
from the sender's side, and the system lane must bypass the bound and jump the
queue. The primitives are the ones memory channels use (a deque, one parked
receiver, a parking lot of blocked senders, the same checkpoints), so the cost per
message is the same as a channel's; ``fuelswitch bench actors`` measures it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass
from typing import Any, Final

import outcome
import trio
from trio.lowlevel import (
    Abort,
    ParkingLot,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from .errors import ActorStopped, MailboxFull
from .reply import Reply


class Overflow(enum.Enum):
    """What a full mailbox does with one more message (see ``OVERFLOW_ACTIONS``)."""

    REJECT = "reject"
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class Delivery(enum.Enum):
    """How the sender delivers: ``cast`` never waits, ``send`` may, ``call`` waits for a reply."""

    CAST = "cast"
    SEND = "send"
    CALL = "call"


class Action(enum.Enum):
    RAISE = "raise MailboxFull"
    WAIT = "wait for room"
    EVICT = "evict the oldest, then enqueue"


OVERFLOW_ACTIONS: Final[Mapping[tuple[Overflow, Delivery], Action]] = {
    # cast never blocks; send is the backpressure path; call follows the policy.
    (Overflow.REJECT, Delivery.CAST): Action.RAISE,
    (Overflow.REJECT, Delivery.SEND): Action.WAIT,
    (Overflow.REJECT, Delivery.CALL): Action.RAISE,
    (Overflow.BLOCK, Delivery.CAST): Action.RAISE,
    (Overflow.BLOCK, Delivery.SEND): Action.WAIT,
    (Overflow.BLOCK, Delivery.CALL): Action.WAIT,
    (Overflow.DROP_OLDEST, Delivery.CAST): Action.EVICT,
    (Overflow.DROP_OLDEST, Delivery.SEND): Action.EVICT,
    (Overflow.DROP_OLDEST, Delivery.CALL): Action.EVICT,
}


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    capacity: int = 1024
    overflow: Overflow = Overflow.REJECT

    def __post_init__(self) -> None:
        if not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"mailbox capacity must be a positive int, not {self.capacity!r}")


class Kind(enum.IntEnum):
    CALL = 0
    CAST = 1
    INFO = 2
    SYSTEM = 3


class Envelope:
    """A queued message. A plain slotted class: it is built on every send."""

    __slots__ = ("enqueued_at", "kind", "msg", "reply")

    def __init__(self, kind: Kind, msg: Any, reply: Reply | None, enqueued_at: float) -> None:
        self.kind = kind
        self.msg = msg
        self.reply = reply
        self.enqueued_at = enqueued_at


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    capacity: int
    overflow: str
    queued: int
    system_queued: int
    peak: int
    blocked_senders: int
    processed: int
    dropped: int
    rejected: int
    oldest_age_s: float


class Mailbox:
    """One actor's queue. Single receiver (the actor's loop), any number of senders."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_dropped",
        "_label",
        "_on_drop",
        "_overflow",
        "_peak",
        "_processed",
        "_receiver",
        "_rejected",
        "_senders",
        "_system",
        "_user",
    )

    def __init__(
        self,
        config: MailboxConfig,
        label: object = "",
        on_drop: Callable[[Envelope], None] | None = None,
    ) -> None:
        self._capacity = config.capacity
        self._overflow = config.overflow
        self._label = label
        self._on_drop = on_drop
        self._user: deque[Envelope] = deque()
        # A list, not a deque: it is almost always empty, and an empty deque costs 600 bytes
        # more, per actor.
        self._system: list[Envelope] = []
        self._receiver: Task | None = None
        self._senders: ParkingLot | None = None  # made on first blocked sender
        self._closed = False
        self._peak = 0
        self._processed = 0
        self._dropped = 0
        self._rejected = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._user) + len(self._system)

    @property
    def queued(self) -> int:
        """Messages waiting on the user lane (what senders put there)."""
        return len(self._user)

    def discard_system(self, predicate: Callable[[Any], bool]) -> int:
        """Remove the runtime signals ``predicate`` selects (stale stop requests)."""
        kept = [env for env in self._system if not predicate(env.msg)]
        removed = len(self._system) - len(kept)
        if removed:
            self._system = kept
        return removed

    # -- senders ---------------------------------------------------------------

    def put_nowait(self, env: Envelope, delivery: Delivery) -> None:
        """Enqueue or raise; never waits (``Action.WAIT`` is reported as ``MailboxFull``)."""
        if not self._admit(env, delivery):
            self._rejected += 1
            raise MailboxFull(self._label)

    def offer(self, env: Envelope, delivery: Delivery) -> bool:
        """Enqueue if the policy admits it now; ``False`` where it would have to wait.

        For callers that checkpoint right afterwards anyway (a call waits for its reply),
        so that a message with room to go costs no extra trip through the scheduler.
        """
        return self._admit(env, delivery)

    async def put(self, env: Envelope, delivery: Delivery) -> None:
        """Enqueue, waiting for room when the policy says so. Cancellable while waiting."""
        await checkpoint_if_cancelled()
        if self._admit(env, delivery):
            await cancel_shielded_checkpoint()
            return
        while True:
            if self._senders is None:
                self._senders = ParkingLot()
            await self._senders.park()
            if self._admit(env, delivery):
                # A message handed straight to a parked receiver leaves the room it found,
                # and no pop will announce it: pass the turn on to the next blocked sender.
                if self._senders and len(self._user) < self._capacity:
                    self._senders.unpark()
                return

    def put_unbounded(self, env: Envelope) -> None:
        """Enqueue on the user lane past the bound (timers and the runtime's own infos)."""
        if self._closed:
            raise ActorStopped(self._label)
        self._enqueue(self._user, env)

    def put_system(self, env: Envelope) -> None:
        """Enqueue a runtime signal; taken before any user message. Ignored once closed."""
        if not self._closed:
            self._enqueue(self._system, env)

    def _admit(self, env: Envelope, delivery: Delivery) -> bool:
        if self._closed:
            raise ActorStopped(self._label)
        user = self._user
        if len(user) < self._capacity:
            self._enqueue(user, env)
            return True
        action = OVERFLOW_ACTIONS[self._overflow, delivery]
        if action is Action.EVICT:
            self._drop(user.popleft(), "evicted by drop-oldest")
            self._enqueue(user, env)
            return True
        if action is Action.RAISE:
            self._rejected += 1
            raise MailboxFull(self._label)
        return False

    def _enqueue(self, lane: MutableSequence[Envelope], env: Envelope) -> None:
        receiver = self._receiver
        if receiver is not None:
            # The receiver only parks on an empty mailbox: hand the message straight over.
            self._receiver = None
            self._processed += 1
            reschedule(receiver, outcome.Value(env))
            return
        lane.append(env)
        queued = len(self._user) + len(self._system)
        if queued > self._peak:
            self._peak = queued

    def _drop(self, env: Envelope, why: str) -> None:
        self._dropped += 1
        if env.reply is not None:
            env.reply.fail(MailboxFull(self._label, why))
        if self._on_drop is not None:
            self._on_drop(env)

    # -- the receiver ----------------------------------------------------------

    def _pop(self) -> Envelope | None:
        if self._system:
            self._processed += 1
            return self._system.pop(0)
        if self._user:
            self._processed += 1
            env = self._user.popleft()
            senders = self._senders
            if senders is not None and senders:
                senders.unpark()
            return env
        return None

    async def get(self) -> Envelope:
        """Take the next message (system lane first), parking while the mailbox is empty."""
        await checkpoint_if_cancelled()
        env = self._pop()
        if env is not None:
            await cancel_shielded_checkpoint()
            return env
        if self._receiver is not None:
            raise RuntimeError("a mailbox has a single receiver")
        self._receiver = current_task()

        def abort(_: Any) -> Abort:
            self._receiver = None
            return Abort.SUCCEEDED

        env = await wait_task_rescheduled(abort)
        assert isinstance(env, Envelope)
        return env

    def get_nowait(self) -> Envelope | None:
        return self._pop()

    def close(self, reason: str = "actor stopped") -> int:
        """Refuse further messages; fail queued calls with ``ActorStopped``.

        Returns how many queued messages were discarded, so the owner can log them.
        """
        self._closed = True
        discarded = 0
        queued = [*self._system, *self._user]
        self._system.clear()
        self._user.clear()
        for env in queued:
            if env.kind is not Kind.SYSTEM:
                discarded += 1
                if env.reply is not None:
                    env.reply.fail(ActorStopped(self._label, reason))
        if self._senders is not None:
            self._senders.unpark_all()
        return discarded

    def statistics(self) -> MailboxStatistics:
        user = self._user
        oldest = trio.current_time() - user[0].enqueued_at if user else 0.0
        return MailboxStatistics(
            capacity=self._capacity,
            overflow=self._overflow.value,
            queued=len(user),
            system_queued=len(self._system),
            peak=self._peak,
            blocked_senders=len(self._senders) if self._senders is not None else 0,
            processed=self._processed,
            dropped=self._dropped,
            rejected=self._rejected,
            oldest_age_s=oldest,
        )
