"""The store's own errors. asyncpg and redis exceptions are mapped to these at the bridge."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every storage error."""


class StoreUnavailable(StoreError):
    """The server could not be reached or dropped the connection: the outcome of a write

    in flight is unknown. Retry later (with backoff); never assume it failed.
    """


class QueryError(StoreError):
    """The server rejected a statement (a bug, or data that breaks a constraint)."""

    def __init__(
        self, message: str, sqlstate: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message if detail is None else f"{message} ({detail})")
        self.sqlstate = sqlstate
        self.detail = detail


class UniqueViolation(QueryError):
    """A unique constraint refused the row: someone else already wrote it."""


class ConflictError(StoreError):
    """Optimistic concurrency: the stream moved on since the writer last read it."""

    def __init__(self, stream_id: str, expected: int | None, actual: int | None) -> None:
        super().__init__(
            f"journal conflict on {stream_id}: expected seq {expected}, found {actual}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class CacheError(StoreError):
    """Redis refused a command (not a connection problem)."""


class ServerError(StoreError):
    """An embedded server could not be initialised, started or stopped."""


class MigrationError(StoreError):
    """The schema on the server disagrees with the migration files."""
