"""``tree``, ``actor`` and ``restart`` over the admin socket, on real actor systems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from actors import Actor, ActorSystem, ChildSpec, Reply, Supervisor, open_system
from ops.admin import AdminClient, AdminReplyError, actor_commands
from tests.ops.support import serving

WIDE = 10_000


class Small(Actor):
    """An idle actor with a little state to show."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        return self.n

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n}


def small(n: int) -> ChildSpec:
    return ChildSpec(f"w{n:05d}", lambda: Small(n))


@asynccontextmanager
async def served(path: Path, width: int) -> AsyncIterator[tuple[ActorSystem, AdminClient]]:
    """A supervisor of ``width`` actors beside a small one, served on an admin socket."""
    children = [
        ChildSpec("wide", lambda: Supervisor([small(i) for i in range(width)])),
        ChildSpec("team", lambda: Supervisor([small(i) for i in range(3)], intensity=5)),
    ]
    async with (
        open_system(children) as system,
        serving(path, actor_commands(system)),
        await AdminClient.connect(path) as client,
    ):
        yield system, client


@pytest.fixture
async def wide(sock_dir: Path) -> AsyncIterator[tuple[ActorSystem, AdminClient]]:
    async with served(sock_dir / "admin.sock", WIDE) as both:
        yield both


@pytest.fixture
async def narrow(sock_dir: Path) -> AsyncIterator[tuple[ActorSystem, AdminClient]]:
    async with served(sock_dir / "admin.sock", 5) as both:
        yield both


async def test_a_page_of_a_wide_supervisor(wide: tuple[ActorSystem, AdminClient]) -> None:
    _, client = wide
    page = await client.request("tree", supervisor="wide", offset=500, limit=250)
    assert page["supervisor"]["address"] == "wide"
    assert page["supervisor"]["children"] == WIDE
    assert page["total"] == WIDE
    assert page["offset"] == 500
    assert page["next_offset"] == 750
    assert [c["address"] for c in page["children"]] == [f"wide/w{i:05d}" for i in range(500, 750)]
    first = page["children"][0]
    assert first["kind"] and first["status"] == "running"
    assert first["state"] == {"n": 500}
    assert first["mailbox"]["queued"] == 0


async def test_walking_every_page_sees_each_child_once_and_the_loop_runs_between(
    wide: tuple[ActorSystem, AdminClient],
) -> None:
    _, client = wide
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    seen: list[str] = []
    ticks_at_page: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        offset: int | None = 0
        while offset is not None:
            page = await client.request("tree", supervisor="wide", offset=offset, limit=1000)
            seen.extend(c["address"] for c in page["children"])
            ticks_at_page.append(ticks)
            offset = page["next_offset"]
        nursery.cancel_scope.cancel()
    assert len(seen) == WIDE
    assert set(seen) == {f"wide/w{i:05d}" for i in range(WIDE)}
    assert len(ticks_at_page) == 10
    # the other task ran while every page was requested, built and sent
    assert all(a < b for a, b in zip([0, *ticks_at_page], ticks_at_page, strict=False))


async def test_the_root_page_by_default(narrow: tuple[ActorSystem, AdminClient]) -> None:
    _, client = narrow
    page = await client.request("tree")
    assert page["supervisor"]["address"] == "/"
    assert [c["address"] for c in page["children"]] == ["wide", "team"]
    assert page["next_offset"] is None
    assert all(c["supervisor"] for c in page["children"])


@pytest.mark.parametrize(
    ("cmd", "args", "code", "text"),
    [
        ("tree", {"limit": 1001}, "bad_args", "'limit'"),
        ("tree", {"limit": 0}, "bad_args", "'limit'"),
        ("tree", {"offset": -1}, "bad_args", "'offset'"),
        ("tree", {"supervisor": "nowhere"}, "not_found", "nowhere"),
        ("tree", {"supervisor": "a//b"}, "bad_args", "'supervisor'"),
        ("actor", {}, "bad_args", "'address'"),
        ("actor", {"address": "team/w00009"}, "not_found", "team/w00009"),
        ("restart", {"address": "team/nobody"}, "not_found", "team/nobody"),
        ("restart", {"address": "team/w00001/x"}, "not_found", "team/w00001/x"),
        ("restart", {"address": "/bad/"}, "bad_args", "'address'"),
        ("restart", {"address": ""}, "bad_args", "root"),
    ],
)
async def test_errors(
    narrow: tuple[ActorSystem, AdminClient], cmd: str, args: dict[str, Any], code: str, text: str
) -> None:
    _, client = narrow
    with pytest.raises(AdminReplyError) as caught:
        await client.call(cmd, args)
    assert caught.value.code == code
    assert text in caught.value.message


async def test_one_actor(narrow: tuple[ActorSystem, AdminClient]) -> None:
    _, client = narrow
    snapshot = await client.request("actor", address="team/w00002")
    assert snapshot["address"] == "team/w00002"
    assert snapshot["state"] == {"n": 2}
    assert snapshot["supervisor"] is False
    assert snapshot["incarnation"] >= 1


async def test_restart_starts_a_new_incarnation(narrow: tuple[ActorSystem, AdminClient]) -> None:
    system, client = narrow
    before = system.snapshot("team/w00001")
    result = await client.request("restart", address="team/w00001")
    assert result == {"address": "team/w00001", "incarnation": before.incarnation + 1}
    after = await client.request("actor", address="team/w00001")
    assert after["restarts"] == before.restarts + 1
    assert after["status"] == "running"
    assert await system.call("team/w00001", "n?") == 1  # and it answers
    top = await client.request("restart", address="team")  # a supervisor, under the root
    assert top["address"] == "team"
    assert await system.call("team/w00000", "n?") == 0
