"""Alerts: things a person must look at (a validly signed callback for an order we do not know,
a late success refunded automatically, a merchant that is not ours).

Written in the transaction of what caused them when there is one (a late success), on their
own when that transaction was rolled back (a rejected callback), so an alert never claims a
change that did not commit and a rejection still leaves a trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .bridge import Database, Transaction

__all__ = ["Alert", "list_alerts", "record_alert", "to_json"]


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    at: datetime
    kind: str
    severity: str
    subject: str | None
    details: dict[str, Any]
    acknowledged_at: datetime | None


def to_json(value: Mapping[str, Any]) -> str:
    """A jsonb parameter (asyncpg takes jsonb as text); anything unusual is stringified."""
    return orjson.dumps(dict(value), default=str).decode()


async def record_alert(
    db: Database | Transaction,
    kind: str,
    *,
    severity: str = "warning",
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    alert_id: int = await db.fetchval(
        "INSERT INTO alerts (kind, severity, subject, details) VALUES ($1, $2, $3, $4::jsonb)"
        " RETURNING id",
        kind,
        severity,
        subject,
        to_json(details or {}),
    )
    return alert_id


async def list_alerts(
    db: Database,
    *,
    subject: str | None = None,
    kind: str | None = None,
    newest: int | None = None,
) -> list[Alert]:
    """Alerts oldest first; ``newest=N``: only the N latest (still oldest first)."""
    rows = await db.fetch(
        "SELECT * FROM (SELECT id, at, kind, severity, subject, details, acknowledged_at"
        " FROM alerts"
        " WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR kind = $2)"
        " ORDER BY id DESC LIMIT $3) AS latest ORDER BY id",
        subject,
        kind,
        newest,
    )
    return [
        Alert(
            r["id"],
            r["at"],
            r["kind"],
            r["severity"],
            r["subject"],
            orjson.loads(r["details"]),
            r["acknowledged_at"],
        )
        for r in rows
    ]
