"""The ``caa_rrsets`` table: every CAA RRset certwatch saw, and since when, unchanged."""

from __future__ import annotations

from collections.abc import Sequence

from certwatch.store.interface import PRUNE_BATCH
from certwatch.store.queries import Connection, dumps, loads

__all__ = ["inventory_names", "observe", "prune"]


def observe(conn: Connection, owner: str, records: Sequence[str], now: float) -> float:
    """Note that ``owner`` has the CAA RRset ``records`` now; when it was first seen with
    them, unchanged since (a set that changed and came back counts from its return)."""
    text = dumps(sorted(records))
    latest = conn.execute(
        "SELECT records, first_seen FROM caa_rrsets WHERE owner = ? "
        "ORDER BY last_seen DESC LIMIT 1",
        (owner,),
    ).fetchone()
    if latest is not None and latest["records"] == text:
        conn.execute(
            "UPDATE caa_rrsets SET last_seen = ? WHERE owner = ? AND records = ? AND last_seen < ?",
            (now, owner, text, now),
        )
        return float(latest["first_seen"])
    conn.execute(
        "INSERT INTO caa_rrsets (owner, records, first_seen, last_seen) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (owner, records) DO UPDATE SET first_seen = excluded.first_seen, "
        "last_seen = excluded.last_seen",
        (owner, text, now, now),
    )
    return now


def prune(conn: Connection, before: float) -> int:
    """Delete at most :data:`PRUNE_BATCH` RRsets last seen before ``before``."""
    cur = conn.execute(
        "DELETE FROM caa_rrsets WHERE id IN (SELECT id FROM caa_rrsets WHERE last_seen < ? "
        "ORDER BY last_seen LIMIT ?)",
        (before, PRUNE_BATCH),
    )
    return int(cur.rowcount)


def inventory_names(conn: Connection, limit: int) -> list[str]:
    """Up to ``limit`` distinct names on the inventory's certificates (the names the
    organisation really uses), newest rows first."""
    names: dict[str, None] = {}
    for row in conn.execute("SELECT sans FROM certs ORDER BY added_at DESC"):
        for name in loads(row["sans"]) or ():
            names[str(name).removeprefix("*.")] = None
            if len(names) >= limit:
                return list(names)
    return list(names)
