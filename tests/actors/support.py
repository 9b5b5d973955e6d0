"""Helpers shared by the actor tests: a plain module, pytest collects nothing from it.

Supervision (``test_strategies``, ``test_supervisor_lifecycle``, ``test_dynamic``): the
time-stamped event ``Log``, the ``Worker`` actors that write to it, the ``worker()`` and
``supervisor()`` child specs, and ``crash()``/``settle()``/``leaf()``. The ``log`` fixture
is in ``conftest.py``.

Messaging (``test_calls``, ``test_fanout_and_timers``): ``ScriptedWorker``, which journals
every hook call, its ``scripted_worker()`` spec and ``actor_of()``. Those two modules import
them as ``Worker``/``worker``, the names their tests were written with.

Policy properties (``test_restart_window``, ``test_backoff``, ``test_restart_tables``): the
hypothesis settings ``PROPS``/``FEW`` and ``INF``.
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import settings

import actors
from actors import (
    NOREPLY,
    Actor,
    ActorCrashed,
    ActorSystem,
    Backoff,
    CallingSelf,
    ChildSpec,
    Exit,
    Reply,
    Restart,
    Strategy,
    Supervisor,
)

# -- supervision: actors, child specs and helpers ------------------------------------------

ALWAYS = range(1, 1_000)


class Boom(Exception):
    """The failure the helper actors raise on purpose."""


class Log:
    """A shared, time-stamped event log the test actors append to."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str]] = []

    def add(self, event: str) -> None:
        self.entries.append((trio.current_time(), event))

    @property
    def events(self) -> list[str]:
        return [event for _, event in self.entries]

    def since(self, mark: int) -> list[str]:
        return self.events[mark:]

    def starting(self, prefix: str) -> list[str]:
        return [event for event in self.events if event.startswith(prefix)]

    def at(self, event: str) -> float:
        (when,) = [t for t, e in self.entries if e == event]
        return when


class Worker(Actor):
    """Logs ``init``/``terminate``/handled messages as ``"<what> <address>#<incarnation>"``.

    Every call answers with the incarnation. Messages: ``"ping"``, ``"crash"`` (raises),
    ``"stop"`` (normal exit), ``"passivate"``, ``("sleep", seconds)``.
    """

    def __init__(
        self, log: Log, *, fail_init: Container[int] = (), init_delay: float = 0.0
    ) -> None:
        self.log = log
        self.fail_init = fail_init
        self.init_delay = init_delay

    @property
    def tag(self) -> str:
        return f"{self.address}#{self.incarnation}"

    async def init(self) -> None:
        self.log.add(f"init {self.tag}")
        if self.init_delay:
            await trio.sleep(self.init_delay)
        if self.incarnation in self.fail_init:
            raise Boom(f"{self.tag} cannot start")

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        return await self._handle(msg)

    async def handle_cast(self, msg: Any) -> None:
        await self._handle(msg)

    async def _handle(self, msg: Any) -> int:
        if msg != "ping":
            self.log.add(f"got {self.tag} {msg}")
        if msg == "crash":
            raise Boom(f"{self.tag} crashed")
        if msg == "stop":
            self.stop()
        elif msg == "passivate":
            self.passivate()
        elif isinstance(msg, tuple) and msg[0] == "sleep":
            await trio.sleep(msg[1])
            self.log.add(f"slept {self.tag}")
        return self.incarnation

    async def terminate(self, reason: Exit) -> None:
        self.log.add(f"terminate {self.tag} {reason.kind.value}")


class HangsInTerminate(Worker):
    """Its ``terminate`` never returns (bounded only by the runtime)."""

    async def terminate(self, reason: Exit) -> None:
        self.log.add(f"terminate {self.tag} {reason.kind.value}")
        await trio.sleep_forever()


def worker(
    name: str,
    log: Log,
    *,
    actor: type[Worker] = Worker,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
    backoff: Backoff | None = None,
    fail_init: Container[int] = (),
    init_delay: float = 0.0,
) -> ChildSpec:
    return ChildSpec(
        name,
        lambda: actor(log, fail_init=fail_init, init_delay=init_delay),
        restart=restart,
        shutdown=shutdown,
        backoff=backoff,
    )


def supervisor(
    name: str,
    children: Sequence[ChildSpec],
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: int = 1,
    period: float = 5.0,
) -> ChildSpec:
    return ChildSpec(
        name,
        lambda: Supervisor(children, strategy=strategy, intensity=intensity, period=period),
        shutdown=math.inf,
    )


async def settle() -> None:
    """Let every task run until all are blocked, without moving the mock clock."""
    await trio.testing.wait_all_tasks_blocked()


async def crash(system: actors.ActorSystem, address: str) -> None:
    with pytest.raises(ActorCrashed) as excinfo:
        await system.call(address, "crash")
    assert isinstance(excinfo.value.cause, Boom)
    await settle()


def leaf(exc: BaseException) -> BaseException:
    """The one exception at the bottom of (possibly nested) single-member groups."""
    while isinstance(exc, BaseExceptionGroup):
        (exc,) = exc.exceptions
    return exc


# -- messaging: the scriptable worker ------------------------------------------------------

Journal = list[tuple[int, str, Any]]
"""(incarnation, hook, message): shared by every incarnation of one address."""


class ScriptedWorker(Actor):
    """A scriptable actor: the message says what to do; every hook call is journaled."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal: Journal = journal if journal is not None else []
        self.casts: list[Any] = []
        self.infos: list[tuple[Any, float]] = []
        self.pending: Reply | None = None
        self.send_results: list[bool] = []

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        self.journal.append((self.incarnation, "call", msg))
        match msg:
            case "ping":
                return "pong"
            case ("echo", value):
                return value
            case ("sleep", delay, value):
                await trio.sleep(delay)
                return value
            case "crash":
                raise ValueError("boom")
            case "reply_then_crash":
                reply.send("early answer")
                raise ValueError("boom after replying")
            case ("defer", delay):
                self.pending = reply
                self.send_after(delay, "answer")
                return NOREPLY
            case ("defer_fail", delay):
                self.pending = reply
                self.send_after(delay, "fail_answer")
                return NOREPLY
            case "call_self":
                try:
                    await self.call(self.address, "ping")
                except CallingSelf as exc:
                    return ("caught", exc.address)
                return "no error"
            case "request_self":
                try:
                    self.system.request(self.address, "ping")
                except CallingSelf as exc:
                    return ("caught", exc.address)
                return "no error"
            case ("arm", delay, tag):
                return self.send_after(delay, tag)
            case "incarnation":
                return self.incarnation
        return await super().handle_call(msg, reply)

    async def handle_cast(self, msg: Any) -> None:
        self.journal.append((self.incarnation, "cast", msg))
        match msg:
            case "crash":
                raise ValueError("cast boom")
            case ("arm_and_crash", delay, tag):
                self.send_after(delay, tag)
                raise ValueError("crash with a timer pending")
            case ("arm_sleep_crash", delay, tag, busy):
                self.send_after(delay, tag)
                await trio.sleep(busy)  # the timer fires while this handler still runs
                raise ValueError("crash after the timer fired")
            case ("arm", delay, tag):
                self.send_after(delay, tag)
            case ("sleep", delay):
                await trio.sleep(delay)
        self.casts.append(msg)

    async def handle_info(self, msg: Any) -> None:
        self.journal.append((self.incarnation, "info", msg))
        self.infos.append((msg, trio.current_time()))
        if msg == "answer":
            assert self.pending is not None
            self.send_results.append(self.pending.send(42))
        elif msg == "fail_answer":
            assert self.pending is not None
            self.send_results.append(self.pending.fail(KeyError("deferred failure")))


A = TypeVar("A", bound=Actor)


def scripted_worker(
    name: str,
    journal: Journal | None = None,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
) -> ChildSpec:
    def factory() -> ScriptedWorker:
        return ScriptedWorker(journal)

    return ChildSpec(name, factory, restart=restart, shutdown=shutdown)


def actor_of(system: ActorSystem, address: str, cls: type[A]) -> A:
    actor = system.registry.resolve(address).actor
    assert isinstance(actor, cls)
    return actor


# -- policy properties: hypothesis settings ------------------------------------------------

PROPS = settings(max_examples=100, deadline=None)
FEW = settings(max_examples=60, deadline=None)

INF = math.inf
