"""Readiness: may this switch take traffic now? (``GET /readyz``)

Liveness (``/healthz``) only says the process answers HTTP. Readiness says whether a request
sent here could be served: PostgreSQL answers (the journal is the switch's memory: nothing is
done without it), Redis answers (the order updates bus), at least one payment channel may take
new holds, and the switch is not draining. A load balancer takes a not-ready switch out of
rotation, which is what a drain before a shutdown wants too.

Every check runs concurrently under a short deadline, so a hung database makes the probe say
"not ready" within about ``timeout_s`` instead of hanging the prober. A check that fails says
why, in words for the operator reading the body.

Channels: readiness needs one eligible channel, not all. A channel that is disabled, down or
restarting is reported (``channels`` in the check's data) but does not take the switch out of
rotation while another can take the payment; the router already routes around it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from actors import ActorSystem
from channels.actor_messages import ChannelStatistics, GetStatistics
from switch.store import Database, Redis

__all__ = ["Check", "Readiness", "ReadinessProbe"]


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.data}


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: Mapping[str, Check]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not_ready",
            "checks": {name: check.to_dict() for name, check in self.checks.items()},
        }


class ReadinessProbe:
    """``await probe()`` -> :class:`Readiness`; cheap enough for a prober every second."""

    def __init__(
        self,
        db: Database,
        redis: Redis,
        system: ActorSystem,
        channel_names: Iterable[str],
        draining: Callable[[], bool] = lambda: False,
        *,
        timeout_s: float = 1.0,
    ) -> None:
        self.db = db
        self.redis = redis
        self.system = system
        self.channel_names = tuple(channel_names)
        self.draining = draining
        self.timeout_s = timeout_s

    async def __call__(self) -> Readiness:
        checks: dict[str, Check] = {}
        runs: dict[str, Callable[[], Awaitable[Check]]] = {
            "database": self._database,
            "redis": self._redis,
            "channels": self._channels,
        }

        async def run(name: str, check: Callable[[], Awaitable[Check]]) -> None:
            with trio.move_on_after(self.timeout_s):
                try:
                    checks[name] = await check()
                except Exception as exc:  # the probe reports it; it never fails the request
                    checks[name] = Check(False, f"{type(exc).__name__}: {exc}")
                return
            checks[name] = Check(False, f"no answer within {self.timeout_s:g} s")

        async with trio.open_nursery() as nursery:
            for name, check in runs.items():
                nursery.start_soon(run, name, check)
        draining = self.draining()
        checks["draining"] = Check(
            not draining, "draining: not taking new orders" if draining else "taking orders"
        )
        return Readiness({name: checks[name] for name in (*runs, "draining")})

    async def _database(self) -> Check:
        value = await self.db.fetchval("SELECT 1")
        return Check(value == 1, "answers" if value == 1 else f"SELECT 1 gave {value!r}")

    async def _redis(self) -> Check:
        answered = await self.redis.ping()
        return Check(answered, "answers" if answered else "PING was not answered")

    async def _channels(self) -> Check:
        if not self.channel_names:
            return Check(False, "no payment channel is configured")
        states: dict[str, str] = {}

        async def ask(name: str) -> None:
            try:
                stats: ChannelStatistics = await self.system.call(
                    f"channels/{name}", GetStatistics(), timeout=self.timeout_s
                )
            except Exception as exc:  # not running, restarting, stuck: reported, not raised
                states[name] = f"unreachable ({type(exc).__name__})"
                return
            if stats.eligible:
                states[name] = "eligible"
            elif not stats.enabled:
                states[name] = f"disabled ({stats.disabled_reason or 'operator'})"
            else:
                states[name] = f"excluded (health {stats.health.level.value})"

        async with trio.open_nursery() as nursery:
            for name in self.channel_names:
                nursery.start_soon(ask, name)
        eligible = sum(state == "eligible" for state in states.values())
        ordered = {name: states[name] for name in self.channel_names}
        detail = f"{eligible} of {len(ordered)} eligible for new payments"
        return Check(eligible > 0, detail, {"channels": ordered})
