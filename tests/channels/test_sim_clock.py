"""The simulated clock: scaled real time plus jumps that wake sleepers."""

from __future__ import annotations

import math
import time

import pytest
import trio
import trio.testing

from channels.sim import SimClock

SAFE = 10.0  # a bound for what must happen, never a measurement


def test_starts_at_real_time_and_runs_forward() -> None:
    before = time.time()
    clock = SimClock()
    first = clock.now()
    assert first >= before
    assert clock.now() >= first


def test_start_and_advance_are_exact() -> None:
    clock = SimClock(1.0, start=1_000_000.0)
    assert clock.now() >= 1_000_000.0
    before = clock.now()
    returned = clock.advance(86_400.0)
    after = clock.now()
    assert returned >= before + 86_400.0
    assert after >= returned


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_advance_refuses_going_back_or_nonsense(seconds: float) -> None:
    clock = SimClock(start=0.0)
    with pytest.raises(ValueError, match="advances"):
        clock.advance(seconds)


@pytest.mark.parametrize("scale", [0.0, -3.0, math.nan, math.inf])
def test_scale_must_be_positive(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        SimClock(scale)
    with pytest.raises(ValueError, match="scale"):
        SimClock().set_scale(scale)


class FakeTime:
    """Real time under the test's control (the clock's arithmetic, without waiting)."""

    def __init__(self) -> None:
        self.mono = 100.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return 1_700_000_000.0


def test_scale_multiplies_real_time_and_changing_it_does_not_jump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeTime()
    monkeypatch.setattr("channels.sim.clock.time", fake)
    clock = SimClock(3600.0)
    assert clock.now() == 1_700_000_000.0
    fake.mono += 2.0
    assert clock.now() == 1_700_000_000.0 + 7200.0
    clock.set_scale(1.0)
    assert clock.scale == 1.0
    assert clock.now() == 1_700_000_000.0 + 7200.0
    fake.mono += 2.0
    assert clock.now() == 1_700_000_000.0 + 7202.0
    assert clock.advance(60.0) == 1_700_000_000.0 + 7262.0


async def test_a_fast_clock_sleeps_hours_in_moments() -> None:
    clock = SimClock(100_000.0)
    start = clock.now()
    with trio.fail_after(SAFE):
        await clock.sleep(6 * 3600.0)
    assert clock.now() >= start + 6 * 3600.0


async def test_a_jump_wakes_the_sleepers_it_passes_and_only_those() -> None:
    clock = SimClock(1.0)
    base = clock.now()
    woke: list[float] = []

    async def sleeper(offset: float) -> None:
        await clock.sleep_until(base + offset)
        woke.append(offset)

    async with trio.open_nursery() as nursery:
        for offset in (600.0, 3600.0, 86_400.0):
            nursery.start_soon(sleeper, offset)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(3600.0)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woke) == [600.0, 3600.0]
        clock.advance(86_400.0)
    assert sorted(woke) == [600.0, 3600.0, 86_400.0]


async def test_sleep_until_the_past_returns_at_once() -> None:
    clock = SimClock(1.0, start=10_000.0)
    with trio.fail_after(SAFE):
        await clock.sleep_until(0.0)
        await clock.sleep(0.0)
        await clock.sleep(-5.0)


async def test_a_faster_scale_shortens_a_sleep_in_progress() -> None:
    clock = SimClock(1.0)
    done = trio.Event()

    async def sleeper() -> None:
        await clock.sleep(24 * 3600.0)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        clock.set_scale(1_000_000.0)
        with trio.fail_after(SAFE):
            await done.wait()
