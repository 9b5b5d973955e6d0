"""Schema migrations: ordered SQL files, applied at start-up in one transaction.

Files are ``NNNN_name.sql`` in ``switch/store/migrations``, applied in number order and
recorded in ``schema_migrations`` with a checksum. A transaction-scoped advisory lock
serialises switch processes that start at the same moment: the second one waits, then
finds nothing left to do. An applied migration whose file has since changed is an
error, never silently re-applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from .bridge import Database
from .errors import MigrationError

MIGRATION_LOCK = 0x66756C6C  # pg_advisory_xact_lock key; any constant unique to fuelswitch
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    changed: bool  # applied, but the file differs from what was applied


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("switch.store").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number: {versions}")
    return found


async def migrate(db: Database, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is pending, all in one transaction. Returns what was applied."""
    migrations = load_migrations() if migrations is None else migrations
    async with db.transaction() as tx:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await tx.execute(_CREATE_TABLE)
        rows = await tx.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {r["version"]: r["checksum"] for r in rows}
        pending = []
        for m in migrations:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was applied with other contents"
                    )
                continue
            pending.append(m)
        for m in pending:
            await tx.execute(m.sql)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
    return pending


async def status(db: Database, migrations: list[Migration] | None = None) -> list[MigrationStatus]:
    migrations = load_migrations() if migrations is None else migrations
    exists = await db.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = {}
    if exists:
        for r in await db.fetch("SELECT version, checksum, applied_at FROM schema_migrations"):
            applied[r["version"]] = (r["checksum"], r["applied_at"])
    out = []
    for m in migrations:
        checksum, at = applied.get(m.version, (None, None))
        out.append(MigrationStatus(m.version, m.name, at, checksum not in (None, m.checksum)))
    return out
