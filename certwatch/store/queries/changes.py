"""The ``changes`` table: every change to the views' tables, written by triggers."""

from __future__ import annotations

from certwatch.store.interface import PRUNE_BATCH, Change
from certwatch.store.queries import Connection, loads

__all__ = ["last", "prune", "since"]


def since(conn: Connection, cursor: int, limit: int) -> list[Change]:
    rows = conn.execute(
        "SELECT id, kind, key, old, at FROM changes WHERE id > ? ORDER BY id LIMIT ?",
        (cursor, limit),
    )
    return [Change(r["id"], r["kind"], r["key"], loads(r["old"]), r["at"]) for r in rows]


def last(conn: Connection) -> int:
    row = conn.execute("SELECT MAX(id) AS last FROM changes").fetchone()
    return int(row["last"] or 0)


def prune(conn: Connection, before: float) -> int:
    cur = conn.execute(
        "DELETE FROM changes WHERE id IN (SELECT id FROM changes WHERE at < ? ORDER BY id LIMIT ?)",
        (before, PRUNE_BATCH),
    )
    return int(cur.rowcount)
