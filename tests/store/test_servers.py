"""The embedded servers' lifecycle, against real servers started here in temporary homes
(never the session's shared servers): init, start, stop and persistence; start-or-adopt
with a refcount of user pids; stale pids and servers orphaned by a SIGKILLed process;
external URLs that start nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from switch.store import (
    EmbeddedPostgres,
    EmbeddedValkey,
    ServerUrls,
    connect_once,
    embedded_servers,
    open_database,
    open_store,
    server_urls,
)
from switch.store.servers import pid_alive

DEAD_PID = 2**22 + 12345  # above any pid_max: never a live process
ROOT = Path(__file__).resolve().parents[2]


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.data / "postmaster.pid").read_text().splitlines()[0])


def valkey_pid(vk: EmbeddedValkey) -> int:
    return int(vk.pidfile.read_text())


def users(root: Path) -> list[int]:
    path = root / "users"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def add_user(root: Path, pid: int) -> None:
    with (root / "users").open("a") as f:
        f.write(f"{pid}\n")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One home for the module, its PostgreSQL cluster initialised once (initdb is slow).

    A short path: PostgreSQL puts its unix socket in the data directory.
    """
    path = tmp_path_factory.mktemp("srv")
    EmbeddedPostgres(path / "postgres").init()
    yield path
    EmbeddedValkey(path / "valkey").stop()
    EmbeddedPostgres(path / "postgres").stop("immediate")


@pytest.fixture
def pg(home: Path) -> Iterator[EmbeddedPostgres]:
    """The module's PostgreSQL, stopped and without users before and after every test."""
    server = EmbeddedPostgres(home / "postgres")
    assert server.running_port() is None, "a previous test left PostgreSQL running"
    (server.root / "users").unlink(missing_ok=True)
    yield server
    server.stop()
    (server.root / "users").unlink(missing_ok=True)


@pytest.fixture
def vk(home: Path) -> Iterator[EmbeddedValkey]:
    """The module's Valkey, stopped and without users before and after every test."""
    server = EmbeddedValkey(home / "valkey")
    assert server.running_port() is None, "a previous test left Valkey running"
    (server.root / "users").unlink(missing_ok=True)
    yield server
    server.stop()
    (server.root / "users").unlink(missing_ok=True)


# -- EmbeddedPostgres ----------------------------------------------------------------------


def test_postgres_init_is_idempotent(pg: EmbeddedPostgres) -> None:
    assert pg.initialized
    conf = (pg.data / "postgresql.conf").read_text()
    version = (pg.data / "PG_VERSION").read_text()
    pg.init()
    pg.init()
    assert pg.initialized
    assert (pg.data / "postgresql.conf").read_text() == conf
    assert conf.count("# fuelswitch") == 1
    assert (pg.data / "PG_VERSION").read_text() == version
    assert pg.running_port() is None  # init does not start anything


def test_postgres_start_returns_port_and_data_survives_restart(pg: EmbeddedPostgres) -> None:
    assert pg.running_port() is None
    port = pg.start()
    assert isinstance(port, int)
    assert port > 0
    assert pg.running_port() == port
    url = EmbeddedPostgres.url(port)
    trio.run(connect_once, url, "CREATE TABLE kept (id integer PRIMARY KEY, note text)")
    trio.run(connect_once, url, "INSERT INTO kept VALUES (1, 'before restart')")

    pg.stop()
    assert pg.running_port() is None
    pg.stop()  # stopping a stopped server is a no-op

    port2 = pg.start()
    assert pg.running_port() == port2

    async def read_back() -> list[tuple[int, str]]:
        async with open_database(EmbeddedPostgres.url(port2)) as db:
            rows = await db.fetch("SELECT id, note FROM kept ORDER BY id")
            await db.execute("DROP TABLE kept")
            return [(r["id"], r["note"]) for r in rows]

    assert trio.run(read_back) == [(1, "before restart")]


# -- start-or-adopt ------------------------------------------------------------------------


def test_nested_embedded_servers_adopt_and_the_outer_one_stops(
    home: Path, pg: EmbeddedPostgres, vk: EmbeddedValkey
) -> None:
    with embedded_servers(home) as (pg_port, vk_port):
        assert pg_port is not None
        assert vk_port is not None
        assert pg.running_port() == pg_port
        assert vk.running_port() == vk_port
        pids = (postmaster_pid(pg), valkey_pid(vk))

        with embedded_servers(home) as inner:
            assert inner == (pg_port, vk_port)
            assert (postmaster_pid(pg), valkey_pid(vk)) == pids  # adopted, not restarted

        # The outer user is still inside: leaving the inner one must not stop anything.
        assert (pg.running_port(), vk.running_port()) == (pg_port, vk_port), (
            "leaving the inner embedded_servers() stopped the servers (running ports shown)"
        )
        assert (postmaster_pid(pg), valkey_pid(vk)) == pids

    assert pg.running_port() is None
    assert vk.running_port() is None


def test_second_process_adopts_and_the_last_user_stops(
    home: Path, pg: EmbeddedPostgres, vk: EmbeddedValkey
) -> None:
    """Two processes (this one and a child) share the servers; whoever leaves last stops."""
    with embedded_servers(home) as ports:
        pids = (postmaster_pid(pg), valkey_pid(vk))
        child = subprocess.run(
            [sys.executable, "-c", _ENTER_AND_LEAVE, str(home)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert child.stdout.split() == [str(ports[0]), str(ports[1])]
        # The child left, but this process is still a user.
        assert pg.running_port() == ports[0]
        assert vk.running_port() == ports[1]
        assert (postmaster_pid(pg), valkey_pid(vk)) == pids
        assert users(pg.root) == [os.getpid()]
        assert users(vk.root) == [os.getpid()]
    assert pg.running_port() is None
    assert vk.running_port() is None


def test_stale_user_pid_is_pruned(home: Path, pg: EmbeddedPostgres, vk: EmbeddedValkey) -> None:
    add_user(pg.root, DEAD_PID)  # left behind by a process that crashed earlier
    add_user(vk.root, DEAD_PID)
    with embedded_servers(home) as (pg_port, vk_port):
        assert users(pg.root) == [os.getpid()]
        assert users(vk.root) == [os.getpid()]
        add_user(pg.root, DEAD_PID)  # ... or one that died while we were inside
        add_user(vk.root, DEAD_PID)
        assert pg.running_port() == pg_port
        assert vk.running_port() == vk_port
    assert pg.running_port() is None
    assert vk.running_port() is None
    assert users(pg.root) == []
    assert users(vk.root) == []


_ENTER_AND_LEAVE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from switch.store import embedded_servers
    with embedded_servers(Path(sys.argv[1])) as (pg, vk):
        print(pg, vk, flush=True)
    """
)

_ENTER_AND_SLEEP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from switch.store import embedded_servers
    with embedded_servers(Path(sys.argv[1])) as (pg, vk):
        print(pg, vk, flush=True)
        time.sleep(600)
    """
)


def test_server_orphaned_by_sigkill_is_adopted_and_then_stopped(
    home: Path, pg: EmbeddedPostgres, vk: EmbeddedValkey
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ENTER_AND_SLEEP, str(home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    pg_port, vk_port = (int(x) for x in line.split())

    # The servers outlive the killed process, which is still listed as their user.
    assert pg.running_port() == pg_port
    assert vk.running_port() == vk_port
    assert users(pg.root) == [child.pid]
    pids = (postmaster_pid(pg), valkey_pid(vk))

    with embedded_servers(home) as ports:
        assert ports == (pg_port, vk_port)
        assert (postmaster_pid(pg), valkey_pid(vk)) == pids  # adopted, not restarted
        assert users(pg.root) == [os.getpid()]
        assert users(vk.root) == [os.getpid()]
        assert trio.run(connect_once, EmbeddedPostgres.url(pg_port), "SELECT 41 + 1") == 42
    assert pg.running_port() is None
    assert vk.running_port() is None


# -- server_urls -----------------------------------------------------------------------------


def test_server_urls_with_both_urls_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "never"
    database_url = "postgresql://someone@db.example:5432/fuel"
    redis_url = "redis://cache.example:6379/3"
    with server_urls(home, database_url=database_url, redis_url=redis_url) as urls:
        assert urls == ServerUrls(database_url=database_url, redis_url=redis_url)
        assert not home.exists()
    assert not home.exists()


def test_server_urls_starts_only_the_missing_server(
    home: Path, pg: EmbeddedPostgres, vk: EmbeddedValkey
) -> None:
    database_url = "postgresql://someone@db.example:5432/fuel"
    with server_urls(home, database_url=database_url, redis_url=None) as urls:
        port = vk.running_port()
        assert port is not None
        assert urls == ServerUrls(database_url=database_url, redis_url=EmbeddedValkey.url(port))
        assert pg.running_port() is None
    assert vk.running_port() is None


# -- Valkey ----------------------------------------------------------------------------------


def test_valkey_keeps_data_across_restart(
    home: Path, pg: EmbeddedPostgres, vk: EmbeddedValkey
) -> None:
    async def set_value(database_url: str, redis_url: str) -> None:
        async with open_store(database_url, redis_url, namespace="persist:") as store:
            assert await store.redis.set("fuel", b"95 octane")

    async def get_value(database_url: str, redis_url: str) -> bytes | None:
        async with open_store(database_url, redis_url, namespace="persist:") as store:
            return await store.redis.get("fuel")

    with embedded_servers(home) as (pg_port, vk_port):
        assert pg_port is not None
        assert vk_port is not None
        database_url = EmbeddedPostgres.url(pg_port)
        trio.run(set_value, database_url, EmbeddedValkey.url(vk_port))
        old_pid = valkey_pid(vk)

        vk.stop()
        assert vk.running_port() is None
        assert not pid_alive(old_pid)

        port = vk.start()
        assert vk.running_port() == port
        assert valkey_pid(vk) != old_pid
        assert trio.run(get_value, database_url, EmbeddedValkey.url(port)) == b"95 octane"
    assert vk.running_port() is None
    assert pg.running_port() is None
