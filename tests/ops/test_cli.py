"""``fuelswitch ops`` as an operator runs it: a subprocess against a server in the test.

The server has canned, contract-shaped handlers for the switch's commands and the real
actor commands over a small actor system.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from actors import Actor, ChildSpec, Supervisor, open_system
from ops.admin import actor_commands
from tests.ops.canned import CHANNELS, STATUS, canned
from tests.ops.support import Recorder, serving

ROOT = Path(__file__).resolve().parents[2]


class Idle(Actor):
    pass


@dataclass
class Switch:
    path: Path
    recorder: Recorder

    async def ops(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = await trio.run_process(
            [sys.executable, "-m", "switch.cli", "ops", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    async def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await self.ops("--socket", str(self.path), *args)


@pytest.fixture
async def switch(sock_dir: Path) -> AsyncIterator[Switch]:
    station = ChildSpec(
        "s001", lambda: Supervisor([ChildSpec("p01", Idle), ChildSpec("p02", Idle)])
    )
    children = [
        ChildSpec("journal", Idle),
        ChildSpec("stations", lambda: Supervisor([station])),
    ]
    recorder = Recorder()
    path = sock_dir / "admin.sock"
    async with (
        open_system(children) as system,
        serving(path, [*canned(recorder), *actor_commands(system)]),
    ):
        yield Switch(path, recorder)


async def test_commands_lists_what_the_server_offers(switch: Switch) -> None:
    result = await switch.run("commands")
    assert result.returncode == 0, result.stderr
    for cell in ("prices.set", "station:str!", "prices:dict!", "at:str=''", "restart", "tree"):
        assert cell in result.stdout


async def test_status_as_a_table_and_as_json(switch: Switch) -> None:
    table = await switch.run("status")
    assert table.returncode == 0, table.stderr
    for cell in ("4242", "1h02m", "no", "http://127.0.0.1:8080", "0.1.0"):
        assert cell in table.stdout
    raw = await switch.run("status", "--json")
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout) == STATUS


async def test_pumps_walks_every_page(switch: Switch) -> None:
    result = await switch.run("--json", "pumps", "--station", "s001")
    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)
    assert [p["pump"] for p in merged["pumps"]] == [1, 2, 3, 4, 5]
    assert merged["total"] == 5
    calls = switch.recorder.args_of("pumps")
    assert [(c["offset"], c["station"]) for c in calls] == [(0, "s001"), (2, "s001"), (4, "s001")]
    table = await switch.run("pumps")
    for cell in (
        "stations/s001/p05" if False else "s001",
        "fuelling",
        "3.5ms",
        "9.2ms",
        "1005",
        "5 pumps",
    ):
        assert cell in table.stdout


async def test_channels_orders_alerts(switch: Switch) -> None:
    channels = await switch.run("channels")
    for cell in ("wechatpay-main", "¥123.45", "12.5%", "75.0%", "up"):
        assert cell in channels.stdout
    orders = await switch.run("orders", "--station", "s001", "--limit", "5")
    for cell in ("ord-0001", "¥200.00", "prepay", "1m15s", "1 of 1 open orders"):
        assert cell in orders.stdout
    assert switch.recorder.args_of("orders") == [{"station": "s001", "limit": 5}]
    alerts = await switch.run("alerts", "--limit", "3")
    assert "comms_lost" in alerts.stdout
    assert "no answer for 3 polls" in alerts.stdout


async def test_prices_set_sends_integer_milli_fen(switch: Switch) -> None:
    result = await switch.run(
        "prices",
        "set",
        "s001",
        "92=7.89",
        "95=8.5",
        "0#=6.955",
        "--at",
        "2025-01-02T00:00:00+08:00",
    )
    assert result.returncode == 0, result.stderr
    (sent,) = switch.recorder.args_of("prices.set")
    assert sent == {
        "station": "s001",
        "prices": {"92": 789_000, "95": 850_000, "0#": 695_500},
        "at": "2025-01-02T00:00:00+08:00",
    }
    assert all(type(v) is int for v in sent["prices"].values())
    for cell in ("18", "¥7.89/L", "¥6.955/L"):
        assert cell in result.stdout


async def test_a_bad_price_is_a_usage_error_and_nothing_is_sent(switch: Switch) -> None:
    result = await switch.run("prices", "set", "s001", "92=7.8901")
    assert result.returncode == 2
    assert "at most 3 decimals" in result.stderr
    assert switch.recorder.args_of("prices.set") == []


async def test_the_actions(switch: Switch) -> None:
    close = await switch.run("pump", "close", "s001", "3", "--reason", "maintenance")
    assert close.returncode == 0, close.stderr
    assert "stations/s001/p03" in close.stdout
    disable = await switch.run("--json", "channel", "disable", "wechatpay-main")
    assert json.loads(disable.stdout) == {"name": "wechatpay-main", "enabled": False}
    drain = await switch.run("drain", "--off")
    assert drain.returncode == 0, drain.stderr
    level = await switch.run("log-level", "debug", "--logger", "ops.admin")
    assert level.returncode == 0, level.stderr
    calls = switch.recorder.calls
    assert [(name, args) for name, args, _ in calls] == [
        ("pump.close", {"station": "s001", "pump": 3, "reason": "maintenance"}),
        ("channel.disable", {"name": "wechatpay-main", "reason": "operator"}),
        ("drain", {"on": False}),
        ("log_level", {"level": "debug", "logger": "ops.admin"}),
    ]


async def test_the_actor_tree(switch: Switch) -> None:
    page = await switch.run("tree", "stations")
    assert page.returncode == 0, page.stderr
    assert "stations/s001" in page.stdout
    assert "children 1-1 of 1" in page.stdout
    everything = await switch.run("--json", "tree", "--all", "--limit", "1")
    walked = json.loads(everything.stdout)
    assert walked["supervisor"]["address"] == "/"
    assert walked["total"] == 5
    assert [a["address"] for a in walked["children"]] == [
        "journal",
        "stations",
        "stations/s001",
        "stations/s001/p01",
        "stations/s001/p02",
    ]
    actor = await switch.run("actor", "stations/s001/p02")
    assert "stations/s001/p02" in actor.stdout
    assert "running" in actor.stdout
    restart = await switch.run("--json", "restart", "journal")
    assert json.loads(restart.stdout) == {"address": "journal", "incarnation": 2}


async def test_an_error_reply_exits_1_with_code_and_message(switch: Switch) -> None:
    result = await switch.run("actor", "stations/s009")
    assert result.returncode == 1
    assert result.stderr.strip() == "fuelswitch ops: not_found: no actor at stations/s009"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("pump", "close", "s001", "three"),
        ("restart", "journal", "--watch", "1"),
        ("prices", "set", "s001", "92"),
        ("nonsense",),
    ],
)
async def test_usage_errors_exit_2(switch: Switch, args: tuple[str, ...]) -> None:
    result = await switch.run(*args)
    assert result.returncode == 2, result.stderr
    assert switch.recorder.calls == []


async def test_no_switch_exits_3_naming_the_socket(sock_dir: Path) -> None:
    path = sock_dir / "nobody-home.sock"
    result = await Switch(path, Recorder()).run("status")
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert str(path) in line
    assert "is the switch running" in line


async def test_the_socket_from_the_environment(switch: Switch) -> None:
    by_socket = await switch.ops(
        "status", "--json", env={"FUELSWITCH_ADMIN_SOCKET": str(switch.path)}
    )
    assert by_socket.returncode == 0, by_socket.stderr
    by_home = await switch.ops("status", "--json", env={"FUELSWITCH_HOME": str(switch.path.parent)})
    assert by_home.returncode == 0, by_home.stderr
    assert json.loads(by_home.stdout) == STATUS


async def test_watch_refreshes(switch: Switch) -> None:
    tables = await switch.run("status", "--watch", "0.05", "--count", "2")
    assert tables.returncode == 0, tables.stderr
    assert tables.stdout.count("status every 0.05s") == 2
    assert tables.stdout.count("4242") == 2
    lines = await switch.run("--json", "--watch", "0.05", "--count", "3", "channels")
    assert [json.loads(line) for line in lines.stdout.splitlines()] == [CHANNELS] * 3


async def test_ctrl_c_ends_a_watch_with_status_0(switch: Switch) -> None:
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "switch.cli",
            "ops",
            "--socket",
            str(switch.path),
            "--json",
            "status",
            "--watch",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        received = b""
        while received.count(b"\n") < 2:  # it is refreshing
            received += await process.stdout.receive_some(65_536)
        process.send_signal(signal.SIGINT)
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
