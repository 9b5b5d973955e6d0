"""The callback engine against a real HTTP receiver: schedules, acceptance rules, faults."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import trio
import trio.testing

from channels.model import Provider
from channels.sim import (
    ALIPAY_RETRY_S,
    UNIONPAY_RETRY_S,
    WECHATPAY_RETRY_S,
    CallbackEngine,
    Delivery,
    DeliveryRecord,
    Faults,
    ProviderFaults,
    SimClock,
)
from tests.channels.callback_receiver import Answer, Received, Receiver, accept_all

SAFE = 10.0  # a bound for what must happen, never a measurement
WX, ALI, UP = Provider.WECHATPAY, Provider.ALIPAY, Provider.UNIONPAY


@dataclass
class Rig:
    clock: SimClock
    faults: Faults
    engine: CallbackEngine
    receiver: Receiver

    def delivery(
        self,
        key: str,
        schedule: tuple[float, ...] = WECHATPAY_RETRY_S,
        provider: Provider = WX,
        url: str | None = None,
    ) -> Delivery:
        def build(t: float) -> tuple[dict[str, str], bytes]:
            # a signature would cover t: every send is built anew
            return {"content-type": "application/json", "x-sim-time": repr(t)}, orjson.dumps(
                {"id": key, "t": t}
            )

        return Delivery(
            provider=provider,
            merchant_id="1900000109",
            url=url or self.receiver.url(),
            event_key=key,
            build=build,
            accepted=lambda status, body: 200 <= status < 300,
            schedule=schedule,
        )

    def set_faults(self, provider: Provider = WX, **settings: object) -> None:
        self.faults.set(provider, ProviderFaults.from_json(settings))

    async def idle(self) -> None:
        """Until every delivery is accepted or given up (bounded by SAFE)."""
        with trio.fail_after(SAFE):
            await self.engine.wait_until(lambda: self.engine.pending == 0)

    async def sends(self, key: str, count: int) -> None:
        """Until ``count`` sends of ``key`` are logged (and so answered)."""
        with trio.fail_after(SAFE):
            await self.engine.wait_until(lambda: len(self.sent(key)) >= count)

    def sent(self, key: str) -> list[DeliveryRecord]:
        return self.engine.records(event_key=key)


@asynccontextmanager
async def rig(scale: float = 1.0, answer: Answer = accept_all, seed: int = 7) -> AsyncIterator[Rig]:
    clock = SimClock(scale)
    faults = Faults(seed)
    engine = CallbackEngine(clock, faults)
    receiver = Receiver(answer)
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.run)
        await nursery.start(engine.run)
        yield Rig(clock, faults, engine, receiver)
        nursery.cancel_scope.cancel()


def gaps(records: list[DeliveryRecord]) -> list[float]:
    return [b.sim_time - a.sim_time for a, b in itertools.pairwise(records)]


def reject_first(n: int) -> Answer:
    def answer(request: Received) -> tuple[int, bytes]:
        if request.n <= n:
            return 500, b'{"code":"FAIL","message":"not yet"}'
        return 204, b""

    return answer


async def test_retries_follow_the_schedule_on_an_advanced_clock_and_stop_when_accepted() -> None:
    async with rig(answer=reject_first(3)) as r:
        r.engine.submit(r.delivery("EV-1"))
        for i in range(3):  # 15 s, 15 s, 30 s later
            await r.sends("EV-1", i + 1)  # answered: the engine sleeps until the next retry
            r.clock.advance(WECHATPAY_RETRY_S[i])
        await r.idle()
        r.clock.advance(2 * 86_400.0)  # nothing is left to send
        await trio.testing.wait_all_tasks_blocked()
        records = r.sent("EV-1")
        assert [x.attempt for x in records] == [1, 2, 3, 4]
        assert [x.status for x in records] == [500, 500, 500, 204]
        assert [x.accepted for x in records] == [False, False, False, True]
        assert all(g >= d for g, d in zip(gaps(records), WECHATPAY_RETRY_S, strict=False))
        assert len(r.receiver.requests) == 4
        times = [float(q.headers["x-sim-time"]) for q in r.receiver.requests]
        assert times == sorted(times)
        assert len(set(times)) == 4  # built anew for every send
        assert r.engine.given_up == 0


async def test_a_day_of_wechat_retries_in_moments_on_a_fast_clock() -> None:
    async with rig(scale=200_000.0, answer=reject_first(1000)) as r:
        r.engine.submit(r.delivery("EV-2"))
        await r.idle()
        records = r.sent("EV-2")
        assert len(records) == 1 + len(WECHATPAY_RETRY_S) == 16
        assert [x.attempt for x in records] == list(range(1, 17))
        assert all(g >= d for g, d in zip(gaps(records), WECHATPAY_RETRY_S, strict=True))
        assert records[-1].sim_time - records[0].sim_time >= sum(WECHATPAY_RETRY_S)
        assert r.engine.given_up == 1
        assert len(r.receiver.requests) == 16


async def test_the_providers_own_success_rule_decides() -> None:
    def answer(request: Received) -> tuple[int, bytes]:
        return (200, b"fail") if request.n == 1 else (200, b"success")

    async with rig(answer=answer) as r:
        d = r.delivery("N-1", schedule=ALIPAY_RETRY_S, provider=ALI)
        alipay = Delivery(
            d.provider, d.merchant_id, d.url, d.event_key, d.build,
            accepted=lambda status, body: status == 200 and body == b"success",
            schedule=d.schedule,
        )  # fmt: skip
        r.engine.submit(alipay)
        await r.sends("N-1", 1)
        r.clock.advance(240.0)
        await r.idle()
        records = r.sent("N-1")
        assert [(x.status, x.accepted) for x in records] == [(200, False), (200, True)]


async def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with rig(scale=100_000.0) as r:
        r.engine.submit(r.delivery("Q-1", UNIONPAY_RETRY_S, UP, f"http://127.0.0.1:{port}/"))
        r.engine.submit(r.delivery("Q-2", UNIONPAY_RETRY_S, UP, "not a url"))
        await r.idle()
        for key in ("Q-1", "Q-2"):
            records = r.sent(key)
            assert len(records) == 1 + len(UNIONPAY_RETRY_S)
            assert all(x.status is None and x.error and not x.accepted for x in records)
        assert {x.error for x in r.sent("Q-1")} == {"ConnectError"}
        assert r.engine.given_up == 2


async def test_a_delivery_that_cannot_be_built_is_not_retried() -> None:
    def broken(t: float) -> tuple[dict[str, str], bytes]:
        raise ValueError("no key")

    async with rig() as r:
        d = r.delivery("B-1")
        r.engine.submit(
            Delivery(d.provider, d.merchant_id, d.url, d.event_key, broken, d.accepted, d.schedule)
        )
        await r.idle()
        records = r.sent("B-1")
        assert len(records) == 1
        assert records[0].error == "build_failed: no key"
        assert r.receiver.requests == []
        assert r.engine.given_up == 1


async def test_dropped_sends_are_retried() -> None:
    async with rig() as r:
        r.set_faults(callback_drop=1.0)
        r.engine.submit(r.delivery("D-1"))
        await r.sends("D-1", 1)
        assert r.sent("D-1")[0].error == "dropped"
        r.set_faults(callback_drop=0.0)
        r.clock.advance(15.0)
        await r.idle()
        records = r.sent("D-1")
        assert [(x.attempt, x.error, x.accepted) for x in records] == [
            (1, "dropped", False),
            (2, None, True),
        ]
        assert len(r.receiver.requests) == 1


async def test_everything_dropped_never_arrives() -> None:
    async with rig(scale=100_000.0) as r:
        r.set_faults(UP, callback_drop=1.0)
        r.engine.submit(r.delivery("D-2", UNIONPAY_RETRY_S, UP))
        await r.idle()
        assert [x.error for x in r.sent("D-2")] == ["dropped"] * 5
        assert r.receiver.requests == []
        assert r.engine.given_up == 1


async def test_duplicates_carry_the_same_bytes_together_or_a_second_apart() -> None:
    async with rig(scale=100.0) as r:
        r.set_faults(callback_duplicate=1.0)
        keys = [f"DUP-{i}" for i in range(12)]
        for key in keys:
            r.engine.submit(r.delivery(key))
        await r.idle()
        assert len(r.receiver.requests) == 24
        modes = set()
        for key in keys:
            got = [q for q in r.receiver.requests if orjson.loads(q.body)["id"] == key]
            assert len(got) == 2
            assert got[0].body == got[1].body
            assert got[0].headers["x-sim-time"] == got[1].headers["x-sim-time"]
            records = r.sent(key)
            assert sorted(x.copy for x in records) == [1, 2]
            assert all(x.accepted and x.attempt == 1 for x in records)
            mode = records[0].duplicate
            assert mode in ("together", "late")
            assert records[1].duplicate == mode
            if mode == "late":
                assert records[1].sim_time - records[0].sim_time >= 1.0
            modes.add(mode)
        assert modes == {"together", "late"}


async def test_a_delay_holds_the_first_send_back() -> None:
    async with rig() as r:
        r.set_faults(callback_delay_s=600.0)
        before = r.clock.now()
        r.engine.submit(r.delivery("L-1"))
        await trio.testing.wait_all_tasks_blocked()
        assert r.receiver.requests == []
        assert r.engine.held == 1
        r.clock.advance(600.0)
        await r.idle()
        records = r.sent("L-1")
        assert len(records) == 1
        assert records[0].sim_time >= before + 600.0
        assert r.engine.held == 0


async def test_reordering_lets_later_deliveries_overtake_held_ones() -> None:
    async with rig() as r:
        r.set_faults(callback_delay_s=300.0, callback_reorder=0.5)
        keys = [f"R-{i:02d}" for i in range(16)]
        for key in keys:
            r.engine.submit(r.delivery(key))
        e = r.engine
        with trio.fail_after(SAFE):  # the ones not held go out at once
            await e.wait_until(lambda: e.pending == e.held and e.held > 0)
        held = r.engine.held
        assert 0 < held < len(keys)
        first = [orjson.loads(q.body)["id"] for q in r.receiver.requests]
        assert len(first) == len(keys) - held
        r.clock.advance(300.0)
        await r.idle()
        arrived = [orjson.loads(q.body)["id"] for q in r.receiver.requests]
        assert sorted(arrived) == keys  # each exactly once
        assert arrived[: len(first)] == first
        late = arrived[len(first) :]
        assert any(a > b for a in late for b in first)  # a later one overtook an earlier one


async def test_deliveries_submitted_before_the_engine_runs_go_out_once_it_does() -> None:
    clock, faults = SimClock(), Faults()
    engine = CallbackEngine(clock, faults)
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.run)
        r = Rig(clock, faults, engine, receiver)
        engine.submit(r.delivery("EARLY"))
        assert engine.pending == 1
        await nursery.start(engine.run)
        await r.idle()
        assert [x.accepted for x in engine.records(event_key="EARLY")] == [True]
        nursery.cancel_scope.cancel()


async def test_a_failing_background_task_does_not_stop_the_engine() -> None:
    async def boom() -> None:
        raise RuntimeError("a simulator bug")

    async with rig() as r:
        r.engine.spawn(boom)
        await trio.testing.wait_all_tasks_blocked()
        r.engine.submit(r.delivery("AFTER"))
        await r.idle()
        assert [x.accepted for x in r.sent("AFTER")] == [True]


async def test_the_log_is_bounded_and_filtered() -> None:
    clock, faults = SimClock(), Faults()
    engine = CallbackEngine(clock, faults, log_size=3)
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.run)
        await nursery.start(engine.run)
        r = Rig(clock, faults, engine, receiver)
        for i in range(5):
            engine.submit(r.delivery(f"K-{i}", provider=ALI if i % 2 else WX))
        await r.idle()
        records = engine.records()
        assert len(records) == 3
        assert [x.seq for x in records] == sorted(x.seq for x in records)
        last = records[-1].seq
        assert engine.records(since=last) == []
        assert all(x.provider is ALI for x in engine.records(provider=ALI))
        assert records[0].to_json()["provider"] in ("wechatpay", "alipay")
        nursery.cancel_scope.cancel()
