"""``fuelswitch bench pumps --quick`` as a user runs it: a real subprocess, which starts the
simulator as a subprocess of its own. Behaviour only: the figures' values are the
benchmark's business, never a test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from switch.store import ServerUrls

ROOT = Path(__file__).resolve().parent.parent

HEADLINE = ("modbus_ratio", "max_pumps_1hz_half_core", "poll_p50_ms", "poll_p99_ms")


def test_bench_pumps_quick_prints_tables_then_a_final_json_line(servers: ServerUrls) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "switch.cli", "bench", "pumps", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={**os.environ, "FUELSWITCH_DATABASE_URL": servers.database_url},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in HEADLINE:
        assert isinstance(figures[key], int | float), key
    assert figures["quick"] is True
    assert set(figures["targets_met"]) == {"modbus_ratio", "max_pumps_1hz_half_core"}
    # Both sides of the ratio moved traffic, and the simulator's CPU was read.
    assert figures["actor_tx_per_s"] > 0 and figures["raw_tx_per_s"] > 0
    assert figures["actor_sim_cpu"] > 0 and figures["raw_sim_cpu"] > 0
    # Every step tried is reported; the headline count is one that passed (or 0).
    steps = figures["steps"]
    assert [s["pumps"] for s in steps] == figures["pumps_tried"]
    assert steps and all(s["polls_per_s"] > 0 for s in steps)
    passed = [s["pumps"] for s in steps if s["passed"]]
    assert figures["max_pumps_1hz_half_core"] == (max(passed) if passed else 0)
    table = "\n".join(lines[:-1])
    assert "modbus_ratio" in table and "max_pumps_1hz_half_core" in table
