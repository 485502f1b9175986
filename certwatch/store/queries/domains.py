"""The ``domains`` table: the watch list."""

from __future__ import annotations

from collections.abc import Sequence

from certwatch.store.interface import Domain
from certwatch.store.queries import Connection, Dialect

__all__ = ["delete", "listed", "present", "upsert", "values"]


def listed(conn: Connection) -> list[Domain]:
    rows = conn.execute("SELECT value, note, added_at FROM domains ORDER BY value")
    return [Domain(r["value"], r["note"], r["added_at"]) for r in rows]


def values(conn: Connection) -> list[str]:
    return [r["value"] for r in conn.execute("SELECT value FROM domains")]


def present(conn: Connection, dialect: Dialect, wanted: Sequence[str]) -> list[str]:
    """Which of ``wanted`` are watched."""
    where, parameter = dialect.in_list("value", wanted)
    rows = conn.execute(f"SELECT value FROM domains WHERE {where}", (parameter,))  # noqa: S608
    return [r["value"] for r in rows]


def upsert(conn: Connection, value: str, note: str, now: float) -> bool:
    """Add an entry or update its note; ``True`` when it is new."""
    updated = conn.execute("UPDATE domains SET note = ? WHERE value = ?", (note, value))
    if updated.rowcount:
        return False
    conn.execute("INSERT INTO domains (value, note, added_at) VALUES (?, ?, ?)", (value, note, now))
    return True


def delete(conn: Connection, value: str) -> bool:
    return bool(conn.execute("DELETE FROM domains WHERE value = ?", (value,)).rowcount > 0)
