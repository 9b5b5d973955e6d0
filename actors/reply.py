"""One-shot reply slots: how a call's answer travels back to its caller.

The actor side sends at most one outcome; the caller side waits for it. When the
caller gives up (timeout or cancellation) it abandons the slot, and a reply that
arrives afterwards is dropped on the floor: ``send``/``fail`` return ``False`` and
nothing is raised into the replying actor.

Fan-out is several slots awaited in turn under one deadline
(:meth:`actors.ActorSystem.request` and :func:`actors.gather`).
"""

from __future__ import annotations

from typing import Any

import outcome
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from .errors import CallTimeout


class Reply:
    """The reply slot of one call. Handed to ``handle_call`` for deferred replies."""

    __slots__ = ("_abandoned", "_outcome", "_waiter", "target")

    def __init__(self, target: object = "") -> None:
        self.target = target
        self._outcome: outcome.Outcome[Any] | None = None
        self._waiter: Task | None = None
        self._abandoned = False

    @property
    def done(self) -> bool:
        """True once an outcome arrived (or the caller gave up)."""
        return self._outcome is not None or self._abandoned

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def peek(self) -> outcome.Outcome[Any] | None:
        """The outcome if one arrived, without waiting (``gather`` uses it at its deadline)."""
        return self._outcome

    # -- the replying side -------------------------------------------------------

    def send(self, value: Any) -> bool:
        """Reply with a value. ``False`` means the reply was late or a duplicate and was dropped."""
        return self._set(outcome.Value(value))

    def fail(self, error: BaseException) -> bool:
        """Make the caller's ``await`` raise ``error``. Same return convention as ``send``."""
        return self._set(outcome.Error(error))

    def _set(self, result: outcome.Outcome[Any]) -> bool:
        if self._outcome is not None or self._abandoned:
            return False
        self._outcome = result
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            reschedule(waiter, result)
        return True

    # -- the calling side --------------------------------------------------------

    async def wait(self) -> Any:
        """The reply's value, or raise its error. Cancellable; the caller owns the deadline."""
        result = self._outcome
        if result is not None:
            await checkpoint_if_cancelled()
            await cancel_shielded_checkpoint()
            return result.unwrap()
        if self._waiter is not None:
            raise RuntimeError("a reply has a single waiter")
        self._waiter = current_task()

        def abort(_: Any) -> Abort:
            self._waiter = None
            return Abort.SUCCEEDED

        return await wait_task_rescheduled(abort)

    def abandon(self) -> None:
        """The caller gave up: any later reply is dropped."""
        if self._outcome is None:
            self._abandoned = True

    def expire(self, timeout: float) -> None:
        """The caller's timeout ran out (a timer calls this): it gets ``CallTimeout``, and
        the actor's reply, if it ever comes, is dropped as late."""
        if self._outcome is None and not self._abandoned:
            self._abandoned = True
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                reschedule(waiter, outcome.Error(CallTimeout(self.target, timeout)))
