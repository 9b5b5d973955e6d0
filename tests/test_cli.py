"""The ``fuelswitch`` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_help_lists_the_bench_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "bench" in result.stdout


def test_bench_actors_prints_a_table_then_a_final_json_line() -> None:
    result = run("bench", "actors", "--quick")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("call_ratio", "cast_ratio", "idle_rss_mb_10k", "start_s_10k", "restart_us"):
        assert isinstance(figures[key], float)
        assert figures[key] > 0
    assert set(figures["targets_met"]) == {
        "call_ratio",
        "cast_ratio",
        "idle_rss_mb_10k",
        "start_s_10k",
    }
    assert figures["quick"] is True
    assert any("call_ratio" in line for line in lines[:-1])


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = run("bench", "nothing")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_readme_example_runs_as_shown() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has a python example"
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "{'litres':", "5}"]
