"""Several streams read at once: ``Journal.load_many`` and ``PreloadingJournal``."""

from __future__ import annotations

import pytest
import trio

from switch.store import Store
from switch.store.journal import Event, Journal, PreloadingJournal
from tests.store.test_journal import journal_for


async def _seed(journal: Journal, stream: str, *kinds: str) -> None:
    await journal.append(stream, [Event(k, {"k": k}) for k in kinds], expected_seq=0)


async def test_load_many_reads_each_stream_in_order_and_empty_ones_as_empty(store: Store) -> None:
    async with journal_for(store) as (_, journal):
        await _seed(journal, "pump:lm1.p01", "contact", "auth_requested", "completed")
        await _seed(journal, "pump:lm1.p02", "contact")
        await _seed(journal, "pump:lm2.p01", "contact")  # not asked for
        loaded = await journal.load_many(["pump:lm1.p02", "pump:lm1.p01", "pump:lm1.p03"])
        assert sorted(loaded) == ["pump:lm1.p01", "pump:lm1.p02", "pump:lm1.p03"]
        assert [(e.seq, e.type) for e in loaded["pump:lm1.p01"]] == [
            (1, "contact"),
            (2, "auth_requested"),
            (3, "completed"),
        ]
        assert loaded["pump:lm1.p01"] == await journal.load("pump:lm1.p01")
        assert [e.type for e in loaded["pump:lm1.p02"]] == ["contact"]
        assert loaded["pump:lm1.p03"] == []
        assert await journal.load_many([]) == {}
        with pytest.raises(ValueError, match="stream id"):
            await journal.load_many(["no-kind"])


async def test_each_stream_is_handed_out_once_then_read_from_the_database(store: Store) -> None:
    streams = ["pump:pl1.p01", "pump:pl1.p02"]
    async with journal_for(store) as (_, journal):
        await _seed(journal, streams[0], "contact")
        await _seed(journal, streams[1], "contact")
        preloading = PreloadingJournal(journal, streams)
        assert [e.type for e in await preloading.load(streams[0])] == ["contact"]
        # p02 was read together with p01. Were it written by anyone but the actor whose
        # first load takes it (the rule the class relies on), that load would not see it:
        await journal.append(streams[1], [Event("alert", {})], expected_seq=1)
        assert [e.seq for e in await preloading.load(streams[1])] == [1]
        # Handed out once: every later load (a restarted actor's) reads the database.
        assert [e.seq for e in await preloading.load(streams[1])] == [1, 2]
        # Appends go through the same writer; loads after a seq and other streams are direct.
        head = await preloading.append(streams[0], [Event("alert", {})], expected_seq=1)
        assert head == 2
        assert [e.seq for e in await preloading.load(streams[0])] == [1, 2]
        assert [e.seq for e in await preloading.load(streams[0], after_seq=1)] == [2]
        await _seed(journal, "pump:pl2.p01", "contact")
        assert len(await preloading.load("pump:pl2.p01")) == 1


async def test_loads_that_start_together_share_one_read(store: Store) -> None:
    streams = [f"pump:pl3.p{n:02d}" for n in range(1, 11)]
    async with journal_for(store) as (_, journal):
        for i, stream in enumerate(streams):
            await journal.append(
                stream, [Event("contact", {"n": n}) for n in range(i + 1)], expected_seq=0
            )
        preloading = PreloadingJournal(journal, streams)
        got: dict[str, list[int]] = {}

        async def first_load(stream: str) -> None:
            got[stream] = [e.payload["n"] for e in await preloading.load(stream)]

        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(first_load, stream)
        assert got == {stream: list(range(i + 1)) for i, stream in enumerate(streams)}
        assert (preloading.reads, preloading.handed_out) == (1, len(streams))
