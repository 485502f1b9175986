"""The ``rules`` table: the organisation's expect, restrict and protect rules."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from certwatch.core.policy import Rule
from certwatch.store.queries import Connection, Dialect, insert_sql
from certwatch.store.rows import rule_rows

__all__ = ["delete", "insert", "listed", "present"]


def listed(conn: Connection) -> list[Rule]:
    return [rule_rows().load(r) for r in conn.execute("SELECT * FROM rules ORDER BY id")]


def present(conn: Connection, dialect: Dialect, ids: Sequence[int]) -> list[Rule]:
    """The rules of these ids that exist."""
    where, parameter = dialect.in_list("id", ids)
    rows = conn.execute(f"SELECT * FROM rules WHERE {where}", (parameter,))  # noqa: S608
    return [rule_rows().load(r) for r in rows]


def insert(conn: Connection, rule: Rule) -> Rule:
    """Store a new rule; it comes back with its id."""
    mapping = rule_rows()
    row = mapping.values(rule)
    stored = conn.execute(
        insert_sql("rules", mapping.columns, "RETURNING id"), tuple(row.values())
    ).fetchone()
    return attrs.evolve(rule, id=int(stored["id"]))


def delete(conn: Connection, rule_id: int) -> bool:
    return bool(conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0)
