"""``fuelswitch loadtest`` for real, small: every process started, customers driven, books
checked; once plain and once with a SIGKILL of the switch half way. Asserts behaviour (exit
status, figures present, sales made, books balanced), never times."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from loadtest.load_report import REQUIRED_KEYS
from loadtest.world import switch_idle_poll_s
from switch.config import Settings, load_config
from switch.store import ServerUrls


def _loadtest(servers: ServerUrls, out: Path, *args: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "FUELSWITCH_HOME": str(Settings.from_env().home),  # provider keys made once, reused
        "FUELSWITCH_DATABASE_URL": servers.database_url,
        "FUELSWITCH_REDIS_URL": servers.redis_url,
    }
    command = [sys.executable, "-m", "switch.cli", "loadtest", "--json", "--out", str(out)]
    done = subprocess.run(
        [*command, "--stations", "2", "--pumps-per-station", "4", *args],
        env=env,
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = done.stdout.decode().strip().splitlines()
    result: dict[str, Any] = orjson.loads(lines[-1])
    return result


def _check_common(result: dict[str, Any], out: Path) -> None:
    assert set(REQUIRED_KEYS) <= set(result)
    assert result["accepted"] + result["shed"] <= result["arrivals"]
    assert result["completed"] > 0 and result["sales_per_s"] > 0
    assert result["violations"] == 0
    assert result["orders_open_at_end"] == 0
    assert (out / "result.json").is_file()
    assert (out / "result.png").read_bytes()[:4] == b"\x89PNG"


def test_small_run_sells_and_balances(servers: ServerUrls, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    everywhere = sorted(os.sched_getaffinity(0))
    first = str(everywhere[0])
    result = _loadtest(servers, out, "--rate", "2", "--duration", "8", "--load-cpus", first)
    _check_common(result, out)
    assert "recovery_s" not in result
    assert result["outcomes"].get("prepay:completed", 0) > 0
    assert result["callback_to_authorized_n"] > 0
    # the load side pinned (the simulators inherit it), the switch left on every CPU
    assert result["load_cpus_pinned"] is True
    affinity = result["cpu_affinity"]
    assert affinity["loadgen"] == affinity["pumps"] == [everywhere[0]]
    assert affinity["switch"] == everywhere
    # where the CPU went: every process of the world, per second and per sale
    assert {"switch", "pumps", "providers-main", "postgres", "loadgen", "other"} <= set(
        result["cpu_pct_by_process"]
    )
    assert result["cpu_ms_per_sale_by_process"]["switch"] > 0
    assert result["accepted"] >= result["completed"]
    assert result["idle_poll_s"] == switch_idle_poll_s() == 1.0  # what the switch polled at


def test_sigkill_mid_run_recovers_and_settles_once(servers: ServerUrls, tmp_path: Path) -> None:
    out = tmp_path / "kill"
    result = _loadtest(
        servers, out, "--rate", "2", "--duration", "10", "--kill-switch-at", "4",
        "--arrivals", "fixed", "--idle-poll-s", "0.5",
    )  # fmt: skip
    _check_common(result, out)
    assert result["idle_poll_s"] == 0.5
    assert {s.idle_poll_s for s in load_config(out / "switch.toml", {}).stations} == {0.5}
    assert result["recovery_s"] is not None
    assert result["restart_ready_s"] is not None
    assert result["kill_at_s"] is not None
