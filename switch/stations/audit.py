"""The audit log: who changed what, written in the transaction of the change itself, so the
log never claims a change that did not commit and no committed change goes unlogged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from switch.store import Transaction

__all__ = ["audit", "staff_actor"]


def staff_actor(staff_id: str) -> str:
    """The audit ``actor`` of a staff member (the schema's form: ``staff:42``)."""
    return f"staff:{staff_id}"


async def audit(
    tx: Transaction, actor: str, action: str, target: str, details: Mapping[str, Any]
) -> None:
    await tx.execute(
        "INSERT INTO audit_log (actor, action, target, details) VALUES ($1, $2, $3, $4::jsonb)",
        actor,
        action,
        target,
        orjson.dumps(dict(details), default=str).decode(),
    )
