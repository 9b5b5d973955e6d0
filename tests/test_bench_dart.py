"""``fuelswitch bench dart --quick`` as a user runs it: a real subprocess, which starts the
simulator (and its pty) as a subprocess of its own. Behaviour only: the figures' values
are the benchmark's business, never a test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_dart_quick_prints_a_table_then_a_final_json_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "switch.cli", "bench", "dart", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any("fuelswitch bench dart" in line for line in lines)
    figures = json.loads(lines[-1])
    assert figures["quick"] is True
    assert set(figures["targets_met"]) == {"line_ratio"}
    assert figures["line_ratio"] == min(figures["line_ratio_idle"], figures["line_ratio_fuelling"])
    # Both mixes moved traffic over the pty; a fuelling pump adds DATA blocks to the wire.
    assert figures["polls_per_s_idle"] > 0 and figures["polls_per_s_fuelling"] > 0
    # POLL and EOT, three bytes each; a poll cut by the end of the window counts in part
    assert figures["bytes_per_poll_idle"] == pytest.approx(6.0, abs=0.1)
    assert figures["bytes_per_poll_fuelling"] > figures["bytes_per_poll_idle"]
