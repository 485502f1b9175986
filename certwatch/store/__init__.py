"""The database: watch entries, the inventory, registered keys and the alert outbox.

:class:`Store` (:mod:`.interface`) is what the rest of certwatch needs of it;
:mod:`.sqlite` implements it on one SQLite file, and :func:`open_store` opens the one the
settings name. :mod:`.rows` maps the core's values to rows.
"""

from __future__ import annotations

from certwatch.settings import Settings
from certwatch.store.interface import PRUNE_BATCH, Domain, OutboxStats, SavedPosition, Store
from certwatch.store.sqlite import SQLiteStore

__all__ = [
    "PRUNE_BATCH",
    "Domain",
    "OutboxStats",
    "SQLiteStore",
    "SavedPosition",
    "Store",
    "open_store",
]


async def open_store(settings: Settings) -> Store:
    """The database the settings name (``DB_PATH``), opened and migrated."""
    busy_timeout_ms = int(settings.timing.db_busy_timeout_s * 1000)
    return await SQLiteStore.open(settings.db_path, busy_timeout_ms=busy_timeout_ms)
