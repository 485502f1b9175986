"""``certwatch migrate-db``: copy a SQLite deployment into PostgreSQL.

Copies the watch entries, the inventory, the registered keys, the alerts with their
outbox state (pending alerts stay pending, delivered ones delivered; claims are dropped)
and the CT log positions from the SQLite file at ``DB_PATH`` into the database at
``DATABASE_URL`` (created or migrated to the current schema). A row whose key is already
there is left as it is, so running it twice copies nothing the second time; certwatch
should be stopped while it runs (a running SQLite certwatch would go on writing after the
copy). Prints a summary, a line per table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import attrs

from certwatch.store import SQLiteStore
from certwatch.store.postgres import PostgresStore

__all__ = ["TABLES", "Copied", "migrate_db"]

TABLES = (
    ("domains", "value"),
    ("certs", "fingerprint_sha1"),
    ("keys", "spki_sha256"),
    ("rules", "id"),
    ("brands", "domain"),
    ("alerts", "id"),
    ("ct_log_positions", "log"),
    ("ct_log_evidence", "id"),
    ("caa_rrsets", "id"),
)
"""What is copied, in this order (a follow-up alert after its parent), by key."""


@attrs.frozen
class Copied:
    table: str
    read: int
    copied: int

    def line(self) -> str:
        there = self.read - self.copied
        return f"{self.table}: {self.read} read, {self.copied} copied, {there} already there"


def _without_claims(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "claimed_by": None, "claim_until": None}


async def migrate_db(db_path: Path, database_url: str, out: TextIO) -> list[Copied]:
    """Copy ``db_path`` (an existing file) into ``database_url``; the summary, also
    written to ``out``."""
    source = await SQLiteStore.open(db_path)
    try:
        target = await PostgresStore.open(database_url)
        try:
            summary = []
            for table, key in TABLES:
                read = copied = 0
                async for rows in source.export_rows(table, key):
                    if table == "alerts":
                        rows = [_without_claims(dict(r)) for r in rows]
                    read += len(rows)
                    copied += await target.import_rows(table, rows)
                summary.append(Copied(table, read, copied))
                print(summary[-1].line(), file=out)
            await target.follow_imported_ids()
            return summary
        finally:
            target.close()
    finally:
        source.close()
