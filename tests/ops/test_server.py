"""The admin server over real Unix sockets: errors, concurrency, audit, socket files."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from ops.admin import (
    MAX_SOCKET_PATH,
    AdminClient,
    AdminReplyError,
    AdminServer,
    AdminSocketError,
    AdminUnavailable,
    AuditLog,
    Caller,
    Command,
    encode_frame,
)
from ops.admin.frames import HEADER
from tests.ops.support import RawConnection, basic_commands, packed, serving


async def test_the_socket_is_private_and_removed_at_exit(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with serving(path):
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    assert not path.exists()


async def test_a_request_is_answered_with_defaults_filled(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    async with serving(path), await AdminClient.connect(path) as client:
        result = await client.request("echo", n=5, items=[1, "two"])
    assert result == {
        "args": {"n": 5, "word": "hi", "flag": False, "items": [1, "two"]},
        "uid": os.getuid(),
    }


async def test_pipelined_requests_are_answered_in_order(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    async with serving(path):
        conn = await RawConnection.open(path)
        chunk = b"".join(
            encode_frame(packed({"id": i, "cmd": "echo", "args": {"n": i}})) for i in range(1, 51)
        )
        await conn.send_raw(chunk)
        replies = [await conn.reply() for _ in range(50)]
        await conn.aclose()
    assert [r["id"] for r in replies] == list(range(1, 51))
    assert [r["result"]["args"]["n"] for r in replies] == list(range(1, 51))


@pytest.mark.parametrize(
    ("payload", "code", "reply_id", "text"),
    [
        (b"\xc1\xc1", "malformed", 0, "not msgpack"),
        (packed([1, "echo", {}]), "malformed", 0, "is a map"),
        (packed({"id": 3, "cmd": "nope"}), "unknown_command", 3, "'nope'"),
        (packed({"id": 4, "cmd": "echo", "args": {}}), "bad_args", 4, "'n'"),
        (packed({"id": 5, "cmd": "echo", "args": {"n": "x"}}), "bad_args", 5, "'n'"),
        (packed({"id": 6, "cmd": "boom"}), "failed", 6, "RuntimeError: the handler broke"),
    ],
    ids=["not msgpack", "not a map", "unknown command", "missing arg", "wrong type", "raises"],
)
async def test_each_bad_request_gets_its_error_and_the_server_goes_on(
    sock_dir: Path, payload: bytes, code: str, reply_id: int, text: str
) -> None:
    path = sock_dir / "a.sock"
    async with serving(path) as server:
        conn = await RawConnection.open(path)
        await conn.send_raw(encode_frame(payload))
        reply = await conn.reply()
        assert reply["ok"] is False
        assert reply["id"] == reply_id
        assert reply["error"]["code"] == code
        assert text in reply["error"]["message"]
        # the same connection still works (the framing was intact) ...
        await conn.send({"id": 9, "cmd": "echo", "args": {"n": 1}})
        assert (await conn.reply())["ok"] is True
        await conn.aclose()
        # ... and so does the next client
        async with await AdminClient.connect(path) as client:
            assert (await client.request("echo", n=2))["args"]["n"] == 2
        assert server.statistics()["errors_by_code"] == {code: 1}


async def test_a_raising_handler_is_logged_with_its_traceback(
    sock_dir: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    path = sock_dir / "a.sock"
    async with serving(path), await AdminClient.connect(path) as client:
        with pytest.raises(AdminReplyError) as caught:
            await client.request("boom")
    assert (caught.value.code, caught.value.message) == (
        "failed",
        "RuntimeError: the handler broke",
    )
    (entry,) = [e for e in logs if e["event"] == "admin.command_failed"]
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is True
    assert entry["cmd"] == "boom"


async def test_an_oversized_frame_is_answered_then_the_connection_closed(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    async with serving(path) as server:
        conn = await RawConnection.open(path)
        await conn.send_raw(HEADER.pack(65_537) + b"x" * 100)
        reply = await conn.reply()
        assert reply["error"]["code"] == "too_large"
        assert "65537" in reply["error"]["message"]
        assert await conn.reply() is None  # closed
        await conn.aclose()
        async with await AdminClient.connect(path) as client:
            assert (await client.request("echo", n=1))["args"]["n"] == 1
        assert server.statistics()["errors_by_code"] == {"too_large": 1}


async def test_the_client_refuses_to_send_an_oversized_request(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    async with serving(path), await AdminClient.connect(path) as client:
        with pytest.raises(AdminReplyError) as caught:
            await client.request("echo", n=1, word="x" * 70_000)
        assert caught.value.code == "too_large"
        assert (await client.request("echo", n=3))["args"]["n"] == 3


async def test_a_result_over_the_reply_limit_fails_cleanly(sock_dir: Path) -> None:
    async def huge(args: Mapping[str, Any], caller: Caller) -> Any:
        return b"x" * (16 * 2**20 + 1)

    path = sock_dir / "a.sock"
    async with serving(path, [Command("huge", huge)]), await AdminClient.connect(path) as client:
        with pytest.raises(AdminReplyError) as caught:
            await client.request("huge")
        assert caught.value.code == "failed"
        assert "reply limit" in caught.value.message
        assert (await client.request("help"))["commands"]


async def test_many_clients_at_once(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    clients, each = 40, 25
    seen: dict[int, list[int]] = {}

    async def one(k: int) -> None:
        async with await AdminClient.connect(path) as client:
            seen[k] = [
                (await client.request("echo", n=k * 1000 + i))["args"]["n"] for i in range(each)
            ]

    async with serving(path) as server:
        async with trio.open_nursery() as nursery:
            for k in range(clients):
                nursery.start_soon(one, k)
        stats = server.statistics()
    assert seen == {k: [k * 1000 + i for i in range(each)] for k in range(clients)}
    assert stats["connections_total"] == clients
    assert stats["requests"] == clients * each


async def test_a_client_that_never_reads_does_not_hold_up_the_others(sock_dir: Path) -> None:
    """20,000 pipelined requests whose replies nobody reads fill the socket buffers: that
    connection's task waits to send, and only it."""
    handled = 0
    busy = trio.Event()

    async def count(args: Mapping[str, Any], caller: Caller) -> Any:
        nonlocal handled
        handled += 1
        if handled == 100:
            busy.set()
        return "w" * 200

    path = sock_dir / "a.sock"
    async with serving(path, [*basic_commands(), Command("count", count)]):
        greedy = await RawConnection.open(path)
        request = encode_frame(packed({"id": 1, "cmd": "count"}))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(greedy.send_raw, request * 20_000)
            await busy.wait()
            async with await AdminClient.connect(path) as client:
                assert (await client.request("echo", n=7))["args"]["n"] == 7
            assert handled < 20_000  # the greedy connection is stuck, not finished
            nursery.cancel_scope.cancel()
        await greedy.aclose()


async def test_a_reply_to_an_abandoned_request_is_skipped(sock_dir: Path) -> None:
    release = trio.Event()
    started = trio.Event()

    async def slow(args: Mapping[str, Any], caller: Caller) -> Any:
        started.set()
        await release.wait()
        return "late"

    path = sock_dir / "a.sock"
    async with (
        serving(path, [*basic_commands(), Command("slow", slow)]),
        await AdminClient.connect(path) as client,
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.request, "slow")
            await started.wait()
            nursery.cancel_scope.cancel()  # the caller gave up; the server still answers
        release.set()
        assert (await client.request("echo", n=4))["args"]["n"] == 4


async def test_actions_are_audited_before_their_reply(
    sock_dir: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    path = sock_dir / "a.sock"
    audit_path = sock_dir / "audit" / "audit.log"
    async with (
        serving(path, audit=AuditLog(audit_path)),
        await AdminClient.connect(path) as client,
    ):
        await client.request("act", n=3)
        first = audit_path.read_text().splitlines()  # on disk once the reply is here
        await client.request("echo", n=1)  # not an action: not audited
        with pytest.raises(AdminReplyError):
            await client.request("act_boom")
        with pytest.raises(AdminReplyError):
            await client.request("act", n="three")
    lines = [orjson.loads(line) for line in audit_path.read_text().splitlines()]
    assert len(first) == 1
    assert [(e["cmd"], e["args"], e["ok"], e["error"]) for e in lines] == [
        ("act", {"n": 3}, True, None),
        ("act_boom", {}, False, "failed"),
        ("act", {"n": "three"}, False, "bad_args"),
    ]
    for entry in lines:
        assert entry["uid"] == os.getuid()
        assert entry["pid"] == os.getpid()
        assert entry["at"].endswith("+00:00")
    assert stat.S_IMODE(os.stat(audit_path).st_mode) == 0o600
    actions = [e for e in logs if e["event"] == "admin.action"]
    assert [(e["cmd"], e["ok"]) for e in actions] == [
        ("act", True),
        ("act_boom", False),
        ("act", False),
    ]


async def test_a_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))
    dead.close()  # the file stays, nobody listens: a crashed switch
    with pytest.raises(AdminUnavailable, match="stale"):
        await AdminClient.connect(path)
    async with serving(path), await AdminClient.connect(path) as client:
        assert (await client.request("echo", n=1))["args"]["n"] == 1


async def test_a_live_server_is_not_replaced(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    async with serving(path):
        second = AdminServer(path, basic_commands())
        with pytest.raises(AdminSocketError, match="already listening"):
            await second.run()
        async with await AdminClient.connect(path) as client:
            assert (await client.request("echo", n=1))["args"]["n"] == 1


async def test_a_file_that_is_not_a_socket_is_left_alone(sock_dir: Path) -> None:
    path = sock_dir / "a.sock"
    path.write_text("precious")
    with pytest.raises(AdminSocketError, match="not a socket"):
        await AdminServer(path, []).run()
    assert path.read_text() == "precious"


async def test_a_path_over_the_unix_limit_is_a_clear_error(sock_dir: Path) -> None:
    path = sock_dir / ("d" * 60) / ("s" * (MAX_SOCKET_PATH - 50))
    with pytest.raises(AdminSocketError) as caught:
        await AdminServer(path, []).run()
    assert str(path) in str(caught.value)
    assert "107" in str(caught.value)
    with pytest.raises(AdminUnavailable, match="107"):
        await AdminClient.connect(path)


async def test_no_socket_means_unavailable_naming_the_path(sock_dir: Path) -> None:
    path = sock_dir / "missing.sock"
    with pytest.raises(AdminUnavailable) as caught:
        await AdminClient.connect(path)
    assert str(path) in str(caught.value)
    assert "is the switch running" in str(caught.value)
