"""Who may talk to the admin socket: the file mode first, then the kernel's SO_PEERCRED.

The peer is a real process of another uid: a child python that imports what it needs as
root, drops to nobody (65534) and connects with AdminClient. (Tests run as root.)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import trio

from ops.admin import AuditLog
from tests.ops.support import serving

NOBODY = 65534

PEER = """
import json, os, sys
import trio
from ops.admin import AdminClient, AdminForbidden, AdminUnavailable

os.setgroups([])
os.setgid(65534)
os.setuid(65534)

async def main():
    try:
        async with await AdminClient.connect(sys.argv[1]) as client:
            result = await client.request("echo", n=1)
    except AdminForbidden as exc:
        return {"outcome": "forbidden", "message": str(exc)}
    except AdminUnavailable as exc:
        return {"outcome": "unavailable", "message": str(exc)}
    return {"outcome": "served", "result": result}

print(json.dumps(trio.run(main)))
"""


async def as_nobody(path: Path) -> dict[str, Any]:
    done = await trio.run_process(
        [sys.executable, "-c", PEER, os.fspath(path)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def test_another_uid_cannot_even_connect_to_the_0600_socket(sock_dir: Path) -> None:
    assert os.getuid() == 0, "these tests start a peer of another uid: they run as root"
    path = sock_dir / "admin.sock"
    async with serving(path, allowed_uids=[NOBODY]) as server:
        answer = await as_nobody(path)
        assert server.statistics()["connections_total"] == 0
    assert answer["outcome"] == "unavailable"
    assert "permission denied" in answer["message"]
    assert str(path) in answer["message"]


async def test_past_the_file_mode_the_uid_is_refused(
    sock_dir: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    path = sock_dir / "admin.sock"
    audit = sock_dir / "audit.log"
    async with serving(path, audit=AuditLog(audit)) as server:
        os.chmod(path, 0o666)
        answer = await as_nobody(path)
        stats = server.statistics()
        assert stats["refused"] == 1
        assert stats["errors_by_code"] == {"forbidden": 1}
        assert stats["requests"] == 0
    assert answer["outcome"] == "forbidden"
    assert f"uid {NOBODY}" in answer["message"]
    (refused,) = [e for e in logs if e["event"] == "admin.refused"]
    assert refused["uid"] == NOBODY
    (line,) = [orjson.loads(x) for x in audit.read_text().splitlines()]
    assert (line["uid"], line["cmd"], line["ok"], line["error"]) == (
        NOBODY,
        None,
        False,
        "forbidden",
    )


async def test_an_allowed_uid_is_served(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with serving(path, allowed_uids=[NOBODY]) as server:
        os.chmod(path, 0o666)
        answer = await as_nobody(path)
        assert server.statistics()["refused"] == 0
    assert answer == {
        "outcome": "served",
        "result": {"args": {"n": 1, "word": "hi", "flag": False, "items": []}, "uid": NOBODY},
    }
