"""Whole tables, for moving a deployment (``certwatch migrate-db``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from certwatch.store.queries import Connection, insert_sql

__all__ = ["export_batch", "import_rows"]


def export_batch(
    conn: Connection, table: str, key: str, after: Any, batch: int
) -> list[dict[str, Any]]:
    """The rows of ``table`` after ``after`` (``None``: from the first) by ``key``."""
    where = "" if after is None else f"WHERE {key} > ?"
    rows = conn.execute(
        f"SELECT * FROM {table} {where} ORDER BY {key} LIMIT ?",  # noqa: S608
        (*(() if after is None else (after,)), batch),
    ).fetchall()
    return [{name: r[name] for name in r.keys()} for r in rows]  # noqa: SIM118 - a DB row


def import_rows(conn: Connection, table: str, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``rows`` where none of their unique values is taken yet; how many were new."""
    inserted = 0
    for row in rows:
        columns = list(row.keys())
        cur = conn.execute(
            insert_sql(table, columns, "ON CONFLICT DO NOTHING"), tuple(row[c] for c in columns)
        )
        inserted += cur.rowcount
    return inserted
