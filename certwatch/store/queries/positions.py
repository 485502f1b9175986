"""The ``ct_log_positions`` and ``ct_log_evidence`` tables: how far each CT log has been
processed, and what proves a log lied."""

from __future__ import annotations

from collections.abc import Sequence

from certwatch.core.ctlog import tree_head_from_json, tree_head_json
from certwatch.store.interface import LogEvidence, SavedPosition
from certwatch.store.queries import Connection, dumps, loads

__all__ = ["evidence", "listed", "record_evidence", "save"]


def listed(conn: Connection) -> list[SavedPosition]:
    rows = conn.execute(
        "SELECT log, kind, position, high, gaps, updated_at, head FROM ct_log_positions "
        "ORDER BY log"
    )
    return [
        SavedPosition(
            log=r["log"],
            kind=r["kind"],
            position=r["position"],
            high=r["high"],
            gaps=tuple((a, b) for a, b in loads(r["gaps"])),
            updated_at=r["updated_at"],
            head=tree_head_from_json(loads(r["head"])),
        )
        for r in rows
    ]


def save(conn: Connection, positions: Sequence[SavedPosition]) -> None:
    """Save (insert or replace) the positions of some logs."""
    for p in positions:
        head = None if p.head is None else dumps(tree_head_json(p.head))
        conn.execute(
            "INSERT INTO ct_log_positions (log, kind, position, high, gaps, updated_at, head) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log) DO UPDATE SET "
            "kind = excluded.kind, position = excluded.position, high = excluded.high, "
            "gaps = excluded.gaps, updated_at = excluded.updated_at, head = excluded.head",
            (p.log, p.kind, p.position, p.high, dumps([list(g) for g in p.gaps]),
             p.updated_at, head),
        )  # fmt: skip


def record_evidence(conn: Connection, found: LogEvidence) -> None:
    conn.execute(
        "INSERT INTO ct_log_evidence (log, kind, detail, found_at) VALUES (?, ?, ?, ?)",
        (found.log, found.kind, dumps(found.detail), found.found_at),
    )


def evidence(conn: Connection, limit: int) -> list[LogEvidence]:
    """Newest first."""
    rows = conn.execute(
        "SELECT id, log, kind, detail, found_at FROM ct_log_evidence ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        LogEvidence(r["log"], r["kind"], loads(r["detail"]), r["found_at"], id=r["id"])
        for r in rows
    ]
