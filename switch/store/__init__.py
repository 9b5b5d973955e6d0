"""Durable state: PostgreSQL (the journal and the books) and Redis (cache and bus only).

``open_store`` gives trio code a ``Store`` with ``db`` and ``redis``; ``server_urls``
starts the embedded servers when no external URL is configured.
"""

from .alerts import Alert, list_alerts, record_alert
from .bridge import (
    Database,
    Redis,
    Row,
    Store,
    Subscription,
    Transaction,
    connect_once,
    open_database,
    open_store,
)
from .bus import Decision, Deduper, OrderSubscription, OrderUpdates, RateLimiter
from .cache import PriceBook, PriceBookCache, PriceBookLoader, RedisGuard
from .errors import (
    CacheError,
    ConflictError,
    MigrationError,
    QueryError,
    ServerError,
    StoreError,
    StoreUnavailable,
    UniqueViolation,
)
from .migrate import Migration, MigrationStatus, load_migrations, migrate, status
from .payments import (
    AttemptResult,
    CallbackOutcome,
    Disposition,
    advance_attempt,
    record_callback,
)
from .servers import (
    EmbeddedPostgres,
    EmbeddedValkey,
    ServerUrls,
    database_server,
    embedded_servers,
    server_urls,
)

__all__ = [
    "Alert",
    "AttemptResult",
    "CacheError",
    "CallbackOutcome",
    "ConflictError",
    "Database",
    "Decision",
    "Deduper",
    "Disposition",
    "EmbeddedPostgres",
    "EmbeddedValkey",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "OrderSubscription",
    "OrderUpdates",
    "PriceBook",
    "PriceBookCache",
    "PriceBookLoader",
    "QueryError",
    "RateLimiter",
    "Redis",
    "RedisGuard",
    "Row",
    "ServerError",
    "ServerUrls",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "Transaction",
    "UniqueViolation",
    "advance_attempt",
    "connect_once",
    "database_server",
    "embedded_servers",
    "list_alerts",
    "load_migrations",
    "migrate",
    "open_database",
    "open_store",
    "record_alert",
    "record_callback",
    "server_urls",
    "status",
]
