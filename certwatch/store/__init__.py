"""The database: watch entries, the inventory, registered keys and the alert outbox.

:class:`Store` (:mod:`.interface`) is what the rest of certwatch needs of it, one small
protocol per part; :mod:`.queries` holds the SQL as plain functions by table, :mod:`.sql`
runs each as one transaction, :mod:`.sqlite` on one SQLite file and :mod:`.postgres` on a
PostgreSQL database shared by replicas; :func:`open_store` opens the one the settings
name. :mod:`.rows` maps the core's values to rows. Around the tables: :mod:`.views`, the
in-memory copies the hot path reads, kept equal to them, and :mod:`.leadership`, the one
replica that runs the duties that must run once.
"""

from __future__ import annotations

from certwatch.settings import Settings
from certwatch.store.interface import (
    PRUNE_BATCH,
    Acknowledged,
    AlerterStore,
    ApiStore,
    CaaStore,
    Change,
    Claim,
    CleanupStore,
    Domain,
    LeadershipStore,
    LogEvidence,
    OutboxStats,
    OutboxStore,
    PoolUsage,
    PositionsStore,
    SavedPosition,
    Store,
    ViewsStore,
)
from certwatch.store.sqlite import SQLiteStore

__all__ = [
    "PRUNE_BATCH",
    "Acknowledged",
    "AlerterStore",
    "ApiStore",
    "CaaStore",
    "Change",
    "Claim",
    "CleanupStore",
    "Domain",
    "LeadershipStore",
    "LogEvidence",
    "OutboxStats",
    "OutboxStore",
    "PoolUsage",
    "PositionsStore",
    "SQLiteStore",
    "SavedPosition",
    "Store",
    "ViewsStore",
    "open_store",
]


async def open_store(settings: Settings) -> Store:
    """The database the settings name, opened and migrated: PostgreSQL at ``DATABASE_URL``
    (never SQLite instead, if it cannot be reached), else the SQLite file at ``DB_PATH``."""
    if settings.database_url is not None:
        from certwatch.store.postgres import PostgresStore  # psycopg only when it is used

        return await PostgresStore.open(
            settings.database_url, wait_s=settings.timing.db_busy_timeout_s
        )
    busy_timeout_ms = int(settings.timing.db_busy_timeout_s * 1000)
    return await SQLiteStore.open(settings.db_path, busy_timeout_ms=busy_timeout_ms)
