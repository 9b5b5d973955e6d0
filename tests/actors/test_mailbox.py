"""Mailboxes: the ``Mailbox`` class driven directly, and overflow policies through the system."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import actors
from actors import (
    OVERFLOW_ACTIONS,
    Action,
    Actor,
    ActorStopped,
    ActorSystem,
    CallTimeout,
    ChildSpec,
    Delivery,
    Mailbox,
    MailboxConfig,
    MailboxFull,
    MailboxStatistics,
    Overflow,
    Reply,
)
from actors.mailbox import Envelope, Kind


class Recorder(Actor):
    """Records every message it handles; ``("hold", seconds)`` keeps it busy that long."""

    def __init__(self) -> None:
        self.handled: list[Any] = []

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        self.handled.append(msg)
        return msg

    async def handle_cast(self, msg: Any) -> None:
        self.handled.append(msg)
        if isinstance(msg, tuple) and msg[0] == "hold":
            await trio.sleep(msg[1])


def recorder(name: str, capacity: int, overflow: Overflow) -> ChildSpec:
    return ChildSpec(name, Recorder, mailbox=MailboxConfig(capacity, overflow))


def handled(system: ActorSystem, address: str) -> list[Any]:
    actor = system.registry.resolve(address).actor
    assert isinstance(actor, Recorder)
    return actor.handled


def envelope(msg: Any, kind: Kind = Kind.CAST, reply: Reply | None = None) -> Envelope:
    return Envelope(kind, msg, reply, trio.current_time())


def drain(mailbox: Mailbox) -> list[Any]:
    out: list[Any] = []
    while (env := mailbox.get_nowait()) is not None:
        out.append(env.msg)
    return out


async def timed(
    results: dict[str, tuple[outcome.Outcome[Any], float]],
    key: str,
    fn: Callable[[], Awaitable[Any]],
) -> None:
    """Run ``fn`` and record its outcome and the (mock) time it finished (not if cancelled)."""
    result: outcome.Outcome[Any]
    try:
        result = outcome.Value(await fn())
    except Exception as exc:
        result = outcome.Error(exc)
    results[key] = (result, trio.current_time())


# -- the Mailbox class ------------------------------------------------------------------


def test_mailbox_config_defaults_and_validation() -> None:
    config = MailboxConfig()
    assert config.capacity == 1024
    assert config.overflow is Overflow.REJECT
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(ValueError, match="capacity"):
            MailboxConfig(bad)  # type: ignore[arg-type]


async def test_fifo_order_len_and_counters() -> None:
    mailbox = Mailbox(MailboxConfig(4), label="m")
    for msg in ("a", "b", "c"):
        mailbox.put_nowait(envelope(msg), Delivery.CAST)
    assert len(mailbox) == 3
    stats = mailbox.statistics()
    assert stats.queued == 3
    assert stats.peak == 3
    assert stats.processed == 0
    assert stats.capacity == 4
    assert stats.overflow == "reject"
    assert drain(mailbox) == ["a", "b", "c"]
    assert mailbox.get_nowait() is None
    stats = mailbox.statistics()
    assert stats.queued == 0
    assert stats.peak == 3
    assert stats.processed == 3
    assert stats.oldest_age_s == 0.0


async def test_system_lane_is_taken_first_and_ignores_the_bound() -> None:
    mailbox = Mailbox(MailboxConfig(1), label="m")
    mailbox.put_nowait(envelope("user"), Delivery.CAST)
    mailbox.put_system(envelope("sys1", Kind.SYSTEM))
    mailbox.put_system(envelope("sys2", Kind.SYSTEM))
    stats = mailbox.statistics()
    assert stats.queued == 1
    assert stats.system_queued == 2
    assert len(mailbox) == 3
    first = await mailbox.get()
    assert first.msg == "sys1"
    assert drain(mailbox) == ["sys2", "user"]


async def test_put_unbounded_passes_the_bound() -> None:
    mailbox = Mailbox(MailboxConfig(1), label="m")
    mailbox.put_nowait(envelope("a"), Delivery.CAST)
    mailbox.put_unbounded(envelope("timer", Kind.INFO))
    assert mailbox.statistics().queued == 2
    assert drain(mailbox) == ["a", "timer"]


async def test_reject_full_put_nowait_raises_mailbox_full() -> None:
    mailbox = Mailbox(MailboxConfig(2, Overflow.REJECT), label="stations/s1")
    mailbox.put_nowait(envelope("a"), Delivery.CAST)
    mailbox.put_nowait(envelope("b"), Delivery.CAST)
    for delivery in (Delivery.CAST, Delivery.CALL, Delivery.SEND):
        # SEND would wait; put_nowait cannot, so that is reported as MailboxFull too.
        with pytest.raises(MailboxFull) as info:
            mailbox.put_nowait(envelope("c"), delivery)
        assert info.value.address == "stations/s1"
    stats = mailbox.statistics()
    assert stats.rejected == 3
    assert stats.dropped == 0
    assert stats.queued == 2
    assert drain(mailbox) == ["a", "b"]


async def test_put_waits_for_room_and_counts_the_blocked_sender(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox = Mailbox(MailboxConfig(1, Overflow.REJECT), label="m")
    await mailbox.put(envelope("first"), Delivery.SEND)  # room: returns at once
    done: list[float] = []

    async def blocked_send() -> None:
        await mailbox.put(envelope("second"), Delivery.SEND)
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_send)
        await trio.sleep(1.0)
        assert done == []
        assert mailbox.statistics().blocked_senders == 1
        assert mailbox.statistics().rejected == 0
        env = mailbox.get_nowait()
        assert env is not None
        assert env.msg == "first"
    assert done == [1.0]
    stats = mailbox.statistics()
    assert stats.blocked_senders == 0
    assert stats.queued == 1
    assert drain(mailbox) == ["second"]


async def test_blocked_senders_are_admitted_in_turn_as_room_appears(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox = Mailbox(MailboxConfig(1, Overflow.REJECT), label="m")
    mailbox.put_nowait(envelope("first"), Delivery.CAST)
    admitted: list[str] = []

    async def blocked_send(msg: str) -> None:
        await mailbox.put(envelope(msg), Delivery.SEND)
        admitted.append(msg)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_send, "A")
        await trio.sleep(1.0)
        nursery.start_soon(blocked_send, "B")
        await trio.sleep(1.0)
        assert mailbox.statistics().blocked_senders == 2

        # The receiver takes "first" and, finding the mailbox empty, parks for the next
        # message (what an actor's loop does when a handler finishes without yielding).
        env = mailbox.get_nowait()
        assert env is not None
        assert env.msg == "first"
        with trio.fail_after(5.0):
            second = await mailbox.get()
        assert second.msg == "A"  # A was admitted into the room "first" left

        # A went straight to the parked receiver, so the mailbox is empty again with
        # room for one: B must not stay blocked.
        await trio.sleep(1.0)
        stats = mailbox.statistics()
        assert admitted == ["A", "B"]
        assert stats.blocked_senders == 0
        assert stats.queued == 1
        nursery.cancel_scope.cancel()
    assert drain(mailbox) == ["B"]


async def test_put_cancelled_while_waiting_enqueues_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox = Mailbox(MailboxConfig(1, Overflow.BLOCK), label="m")
    mailbox.put_nowait(envelope("first"), Delivery.CAST)
    with trio.move_on_after(2.0) as scope:
        await mailbox.put(envelope("second"), Delivery.CALL)
    assert scope.cancelled_caught
    stats = mailbox.statistics()
    assert stats.blocked_senders == 0
    assert stats.queued == 1
    assert drain(mailbox) == ["first"]


async def test_drop_oldest_evicts_the_head_and_fails_its_caller() -> None:
    dropped: list[Envelope] = []
    mailbox = Mailbox(MailboxConfig(2, Overflow.DROP_OLDEST), label="m", on_drop=dropped.append)
    reply = Reply("m")
    mailbox.put_nowait(envelope("call", Kind.CALL, reply), Delivery.CALL)
    mailbox.put_nowait(envelope("b"), Delivery.CAST)
    mailbox.put_nowait(envelope("c"), Delivery.CAST)  # evicts the call
    assert [e.msg for e in dropped] == ["call"]
    with pytest.raises(MailboxFull, match="evicted"):
        await reply.wait()
    await mailbox.put(envelope("d"), Delivery.SEND)  # evicts "b" without waiting
    stats = mailbox.statistics()
    assert stats.dropped == 2
    assert stats.rejected == 0
    assert stats.blocked_senders == 0
    assert stats.queued == 2
    assert drain(mailbox) == ["c", "d"]


async def test_get_parks_until_a_message_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox = Mailbox(MailboxConfig(4), label="m")
    got: list[tuple[Any, float]] = []

    async def receiver() -> None:
        env = await mailbox.get()
        got.append((env.msg, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(3.0)
        assert got == []
        mailbox.put_nowait(envelope("hello"), Delivery.CAST)
    assert got == [("hello", 3.0)]
    stats = mailbox.statistics()
    assert stats.processed == 1
    assert stats.queued == 0


async def test_a_mailbox_has_a_single_receiver(autojump_clock: trio.testing.MockClock) -> None:
    mailbox = Mailbox(MailboxConfig(4), label="m")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.get)
        await trio.sleep(1.0)
        with pytest.raises(RuntimeError, match="single receiver"):
            await mailbox.get()
        nursery.cancel_scope.cancel()


async def test_oldest_age_tracks_the_head_of_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox = Mailbox(MailboxConfig(4), label="m")
    assert mailbox.statistics().oldest_age_s == 0.0
    mailbox.put_nowait(envelope("old"), Delivery.CAST)
    await trio.sleep(2.0)
    mailbox.put_nowait(envelope("young"), Delivery.CAST)
    await trio.sleep(1.5)
    assert mailbox.statistics().oldest_age_s == pytest.approx(3.5, abs=1e-9)
    mailbox.get_nowait()
    assert mailbox.statistics().oldest_age_s == pytest.approx(1.5, abs=1e-9)
    mailbox.get_nowait()
    assert mailbox.statistics().oldest_age_s == 0.0


async def test_close_fails_queued_calls_and_refuses_new_mail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox = Mailbox(MailboxConfig(2, Overflow.REJECT), label="m")
    reply = Reply("m")
    mailbox.put_nowait(envelope("call", Kind.CALL, reply), Delivery.CALL)
    mailbox.put_nowait(envelope("cast"), Delivery.CAST)
    mailbox.put_system(envelope("signal", Kind.SYSTEM))
    errors: list[BaseException] = []

    async def blocked_send() -> None:
        try:
            await mailbox.put(envelope("waiting"), Delivery.SEND)
        except ActorStopped as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_send)
        await trio.sleep(1.0)
        assert mailbox.statistics().blocked_senders == 1
        # Queued user messages are discarded; system signals are not counted.
        assert mailbox.close("gone") == 2
    assert mailbox.closed
    assert len(errors) == 1
    with pytest.raises(ActorStopped, match="gone"):
        await reply.wait()
    assert len(mailbox) == 0
    with pytest.raises(ActorStopped):
        mailbox.put_nowait(envelope("late"), Delivery.CAST)
    with pytest.raises(ActorStopped):
        await mailbox.put(envelope("late"), Delivery.SEND)
    with pytest.raises(ActorStopped):
        mailbox.put_unbounded(envelope("timer", Kind.INFO))
    mailbox.put_system(envelope("signal", Kind.SYSTEM))  # ignored, not raised
    assert len(mailbox) == 0
    assert mailbox.statistics().blocked_senders == 0


def test_overflow_actions_table() -> None:
    assert dict(OVERFLOW_ACTIONS) == {
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
    # cast never waits, whatever the policy.
    assert all(OVERFLOW_ACTIONS[o, Delivery.CAST] is not Action.WAIT for o in Overflow)


# -- overflow policies through the system -----------------------------------------------


@pytest.mark.parametrize(("overflow", "delivery"), sorted(OVERFLOW_ACTIONS, key=str))
async def test_overflow_actions_match_system_behaviour(
    autojump_clock: trio.testing.MockClock, overflow: Overflow, delivery: Delivery
) -> None:
    action = OVERFLOW_ACTIONS[overflow, delivery]
    hold = 5.0

    async def deliver(system: ActorSystem) -> Any:
        if delivery is Delivery.CAST:
            system.cast("w", "probe")
            return None
        if delivery is Delivery.SEND:
            await system.send("w", "probe")
            return None
        return await system.call("w", "probe", timeout=30.0)

    async with actors.open_system([recorder("w", 1, overflow)]) as system:
        system.cast("w", ("hold", hold))  # taken at once: the actor is busy until t=5
        system.cast("w", "filler")  # the mailbox is now full
        results: dict[str, tuple[outcome.Outcome[Any], float]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timed, results, "probe", lambda: deliver(system))
            await trio.sleep(1.0)
            blocked_at_1s = system.snapshot("w").mailbox.blocked_senders
        await trio.sleep(hold)  # let the actor drain
        result, done_at = results["probe"]
        stats = system.snapshot("w").mailbox
        seen = handled(system, "w")

    expected_value = "probe" if delivery is Delivery.CALL else None
    if action is Action.RAISE:
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, MailboxFull)
        assert done_at == 0.0
        assert seen == [("hold", hold), "filler"]
        assert (stats.rejected, stats.dropped) == (1, 0)
        assert blocked_at_1s == 0
    elif action is Action.WAIT:
        assert result == outcome.Value(expected_value)
        assert done_at == hold  # admitted (and answered) once the actor took "filler"
        assert seen == [("hold", hold), "filler", "probe"]
        assert (stats.rejected, stats.dropped) == (0, 0)
        assert blocked_at_1s == 1
    else:
        assert action is Action.EVICT
        assert result == outcome.Value(expected_value)
        assert done_at == (hold if delivery is Delivery.CALL else 0.0)
        assert seen == [("hold", hold), "probe"]
        assert (stats.rejected, stats.dropped) == (0, 1)
        assert blocked_at_1s == 0


async def test_cast_into_a_full_reject_mailbox_raises_mailbox_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([recorder("w", 2, Overflow.REJECT)]) as system:
        system.cast("w", ("hold", 3.0))
        system.cast("w", "a")
        system.cast("w", "b")
        with pytest.raises(MailboxFull) as info:
            system.cast("w", "c")
        assert info.value.address == "w"
        with pytest.raises(MailboxFull):
            await system.call("w", "d")  # REJECT calls fail at once too
        assert trio.current_time() == 0.0
        assert system.snapshot("w").mailbox.rejected == 2
        await trio.sleep(3.5)  # the actor drains (its hold ends at t=3)
        assert await system.call("w", "after") == "after"
        assert handled(system, "w") == [("hold", 3.0), "a", "b", "after"]


async def test_send_waits_for_room_then_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([recorder("w", 1, Overflow.REJECT)]) as system:
        system.cast("w", ("hold", 3.0))
        system.cast("w", "filler")
        results: dict[str, tuple[outcome.Outcome[Any], float]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(timed, results, "send", lambda: system.send("w", "sent"))
            await trio.sleep(1.0)
            assert "send" not in results
            stats = system.snapshot("w").mailbox
            assert stats.blocked_senders == 1
            assert stats.queued == 1
        result, done_at = results["send"]
        assert result == outcome.Value(None)
        assert done_at == 3.0
        assert system.snapshot("w").mailbox.blocked_senders == 0
        assert await system.call("w", "sync") == "sync"
        assert handled(system, "w") == [("hold", 3.0), "filler", "sent", "sync"]
        assert system.snapshot("w").mailbox.rejected == 0


async def test_block_call_waits_for_room_within_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([recorder("w", 1, Overflow.BLOCK)]) as system:
        system.cast("w", ("hold", 3.0))
        system.cast("w", "filler")
        results: dict[str, tuple[outcome.Outcome[Any], float]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                timed, results, "call", lambda: system.call("w", "waited", timeout=10.0)
            )
            await trio.sleep(1.0)
            assert system.snapshot("w").mailbox.blocked_senders == 1
        result, done_at = results["call"]
        assert result == outcome.Value("waited")
        assert done_at == 3.0
        assert handled(system, "w") == [("hold", 3.0), "filler", "waited"]


async def test_block_call_times_out_when_no_room_appears(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([recorder("w", 1, Overflow.BLOCK)]) as system:
        system.cast("w", ("hold", 100.0))
        system.cast("w", "filler")
        with pytest.raises(CallTimeout) as info:
            await system.call("w", "never queued", timeout=2.0)
        assert trio.current_time() == pytest.approx(2.0, abs=1e-9)
        assert info.value.timeout == 2.0
        stats = system.snapshot("w").mailbox
        assert stats.blocked_senders == 0
        assert stats.queued == 1
        # A call that times out waiting for room never entered the mailbox.
        with pytest.raises(MailboxFull):
            system.cast("w", "cast")  # BLOCK never makes a cast wait
        with pytest.raises(MailboxFull):
            system.request("w", "request")  # nor a request, which cannot wait either
        await trio.sleep(100.0)
        assert handled(system, "w") == [("hold", 100.0), "filler"]


@pytest.mark.parametrize(
    ("overflow", "delivery"), [(Overflow.REJECT, Delivery.SEND), (Overflow.BLOCK, Delivery.CALL)]
)
async def test_every_blocked_sender_gets_in_as_the_actor_drains(
    autojump_clock: trio.testing.MockClock, overflow: Overflow, delivery: Delivery
) -> None:
    senders = ["A", "B", "C"]

    async def deliver(system: ActorSystem, msg: str) -> None:
        if delivery is Delivery.SEND:
            await system.send("w", msg)
        else:
            await system.call("w", msg, timeout=1000.0)

    async with actors.open_system([recorder("w", 1, overflow)]) as system:
        # Several rounds: whether a sender is lost depends on the scheduler's order.
        for round_ in range(10):
            system.cast("w", ("hold", 1.0))
            system.cast("w", "filler")
            results: dict[str, tuple[outcome.Outcome[Any], float]] = {}
            with trio.move_on_after(30.0):
                async with trio.open_nursery() as nursery:
                    for name in senders:
                        nursery.start_soon(
                            timed, results, name, functools.partial(deliver, system, name)
                        )
                        await trio.sleep(0.1)
            await trio.sleep(0.5)  # a completed send is queued, not yet handled: let it run
            stats = system.snapshot("w").mailbox
            assert sorted(results) == senders, f"round {round_}: only {sorted(results)} got in"
            assert stats.blocked_senders == 0
            assert stats.queued == 0
            assert handled(system, "w")[-4:] == ["filler", *senders]


async def test_drop_oldest_evicted_call_raises_mailbox_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([recorder("w", 2, Overflow.DROP_OLDEST)]) as system:
        system.cast("w", ("hold", 3.0))
        results: dict[str, tuple[outcome.Outcome[Any], float]] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                timed, results, "call", lambda: system.call("w", "evicted", timeout=10.0)
            )
            await trio.sleep(0.5)
            system.cast("w", "x")
            assert system.snapshot("w").mailbox.dropped == 0
            system.cast("w", "y")  # full: evicts the oldest, the queued call
        result, done_at = results["call"]
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, MailboxFull)
        assert "evicted" in str(result.error)
        assert done_at == 0.5  # failed as soon as it was evicted
        await trio.sleep(5.0)
        stats = system.snapshot("w").mailbox
        assert stats.dropped == 1
        assert stats.rejected == 0
        assert handled(system, "w") == [("hold", 3.0), "x", "y"]


async def test_mailbox_statistics_in_the_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system([recorder("w", 3, Overflow.REJECT)]) as system:
        system.cast("w", ("hold", 10.0))
        system.cast("w", "a")
        await trio.sleep(2.0)
        system.cast("w", "b")
        system.cast("w", "c")
        with pytest.raises(MailboxFull):
            system.cast("w", "d")
        await trio.sleep(1.5)
        stats = system.snapshot("w").mailbox
        assert isinstance(stats, MailboxStatistics)
        assert stats.capacity == 3
        assert stats.overflow == "reject"
        assert stats.queued == 3
        assert stats.system_queued == 0
        assert stats.peak == 3
        assert stats.blocked_senders == 0
        assert stats.processed == 1  # only the hold has been taken
        assert stats.dropped == 0
        assert stats.rejected == 1
        assert stats.oldest_age_s == pytest.approx(3.5, abs=1e-9)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.send, "w", "e")
            await trio.sleep(1.0)
            assert system.snapshot("w").mailbox.blocked_senders == 1
            assert system.snapshot("w").mailbox.oldest_age_s == pytest.approx(4.5, abs=1e-9)
        assert trio.current_time() == pytest.approx(10.0, abs=1e-9)  # room came at t=10
        assert await system.call("w", "sync") == "sync"
        stats = system.snapshot("w").mailbox
        assert stats.queued == 0
        assert stats.peak == 3
        assert stats.blocked_senders == 0
        assert stats.processed == 6  # hold, a, b, c, e, sync
        assert stats.rejected == 1
        assert stats.oldest_age_s == 0.0
        assert handled(system, "w") == [("hold", 10.0), "a", "b", "c", "e", "sync"]
