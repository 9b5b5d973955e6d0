"""``fuelswitch db migrate`` and ``fuelswitch db status``."""

from __future__ import annotations

import sys

import trio
from rich.console import Console
from rich.table import Table

from .config import Settings
from .store import StoreError, database_server, migrate, open_database, status


async def _migrate(url: str) -> int:
    async with open_database(url) as db:
        applied = await migrate(db)
    console = Console(highlight=False)
    if not applied:
        console.print("schema is up to date")
    for m in applied:
        console.print(f"applied {m.version:04d}_{m.name}")
    return 0


async def _status(url: str) -> int:
    async with open_database(url) as db:
        rows = await status(db)
    table = Table(title="schema migrations")
    for column in ("version", "name", "state", "applied at"):
        table.add_column(column)
    for r in rows:
        state = "CHANGED since applied" if r.changed else "applied" if r.applied_at else "pending"
        at = r.applied_at.isoformat(timespec="seconds") if r.applied_at else ""
        table.add_row(f"{r.version:04d}", r.name, state, at)
    Console(highlight=False).print(table)
    return 1 if any(r.changed for r in rows) else 0


def run_db_command(action: str) -> int:
    settings = Settings.from_env()
    try:
        with database_server(settings.home, settings.database_url) as database_url:
            return trio.run(_migrate if action == "migrate" else _status, database_url)
    except StoreError as exc:
        print(f"fuelswitch db {action}: {exc}", file=sys.stderr)
        return 1
