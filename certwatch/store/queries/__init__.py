"""The store's queries, written once for both databases, as plain functions grouped by table.

Each function takes a connection (and the few values it needs) and runs its statements
in the transaction the backend opened for it: :mod:`..sqlite` on one SQLite file,
:mod:`..postgres` on a PostgreSQL database shared by replicas. The SQL is the dialect both
speak (``?`` placeholders, which the PostgreSQL backend turns into ``%s``; ``INSERT ...
ON CONFLICT``; ``RETURNING``); where they differ, the backend's :class:`Dialect` says how.

- :mod:`.domains`: the watch list;
- :mod:`.inventory`: the certificates the LBs pushed, and the keys registered in advance;
- :mod:`.brands`: the brands the lookalike watch protects;
- :mod:`.rules`: the organisation's expect, restrict and protect rules;
- :mod:`.changes`: the log of changes to those tables (replicas' views follow it);
- :mod:`.alerts`: alerts, their decisions, and the outbox (claims, attempts);
- :mod:`.positions`: CT log positions and the evidence of logs that lied;
- :mod:`.transfer`: whole tables, for ``certwatch migrate-db``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import msgspec

from certwatch.store.rows import RowMapping

__all__ = ["Connection", "Dialect", "Row", "dumps", "insert_sql", "loads", "upsert"]

T = TypeVar("T")

_encode = msgspec.json.encode


def dumps(value: Any) -> str:
    return _encode(value).decode()


def loads(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


class Row(Protocol):
    def keys(self) -> Any: ...
    def __getitem__(self, key: str) -> Any: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the queries need of a connection: ``sqlite3.Connection`` is one; the
    PostgreSQL backend wraps psycopg's. Rows are read by column name."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


@attrs.frozen
class Dialect:
    """Where the two databases differ."""

    in_list: Callable[[str, Sequence[Any]], tuple[str, Any]]
    """A condition "``column`` is one of ``values``" and its one parameter."""
    lock_rows: str = ""
    """What claims rows for one reader at a time in a subquery (``FOR UPDATE SKIP LOCKED``)."""


def insert_sql(table: str, columns: Sequence[str], conflict: str) -> str:
    names = ", ".join(columns)
    placeholders = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders}) {conflict}"  # noqa: S608


def upsert(conn: Connection, table: str, key: str, mapping: RowMapping[T], item: T) -> None:
    """Insert ``item``, or replace every column of the row with its key."""
    row = mapping.values(item)
    updates = ", ".join(f"{name} = excluded.{name}" for name in row if name != key)
    conn.execute(
        insert_sql(table, list(row), f"ON CONFLICT ({key}) DO UPDATE SET {updates}"),
        tuple(row.values()),
    )
