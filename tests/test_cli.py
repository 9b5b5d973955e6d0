"""The ``fuelswitch`` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.store import ServerUrls, load_migrations
from tests.storage import create_database, drop_database, unique_name

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env=None if env is None else {**os.environ, **env},
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


@pytest.fixture
def empty_database(servers: ServerUrls) -> Iterator[str]:
    name = unique_name("cli")
    url = create_database(servers.database_url, name, migrated=False)
    yield url
    drop_database(servers.database_url, name)


def test_db_status_then_migrate_then_status(empty_database: str) -> None:
    env = {"FUELSWITCH_DATABASE_URL": empty_database}
    before = run("db", "status", env=env)
    assert before.returncode == 0, before.stderr
    assert before.stdout.count("pending") == len(load_migrations())
    migrated = run("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert [line.split()[1] for line in migrated.stdout.splitlines()] == [
        f"{m.version:04d}_{m.name}" for m in load_migrations()
    ]
    assert run("db", "migrate", env=env).stdout.strip() == "schema is up to date"
    after = run("db", "status", env=env)
    assert "pending" not in after.stdout
    assert after.stdout.count("applied") >= len(load_migrations())


def test_db_command_reports_an_unreachable_server() -> None:
    result = run(
        "db", "status", env={"FUELSWITCH_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}
    )
    assert result.returncode == 1
    assert "PostgreSQL unavailable" in result.stderr


def test_bench_journal_quick_prints_its_figures(servers: ServerUrls) -> None:
    result = run(
        "bench", "journal", "--quick", env={"FUELSWITCH_DATABASE_URL": servers.database_url}
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("append_ratio", "journal_events_per_s", "copy_events_per_s", "steady_p99_ms"):
        assert figures[key] > 0
    assert figures["events"] == figures["streams"] * 5
    assert set(figures["targets_met"]) == {"append_ratio", "steady_p99_ms"}
