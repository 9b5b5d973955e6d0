"""Durable state: PostgreSQL (the journal and the books) and Redis (cache and bus only).

``open_store`` gives trio code a ``Store`` with ``db`` and ``redis``; ``server_urls``
starts the embedded servers when no external URL is configured.
"""

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
from .servers import (
    EmbeddedPostgres,
    EmbeddedValkey,
    ServerUrls,
    database_server,
    embedded_servers,
    server_urls,
)

__all__ = [
    "CacheError",
    "ConflictError",
    "Database",
    "Decision",
    "Deduper",
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
    "connect_once",
    "database_server",
    "embedded_servers",
    "load_migrations",
    "migrate",
    "open_database",
    "open_store",
    "server_urls",
    "status",
]
