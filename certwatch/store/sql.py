"""The store's queries, written once for both databases.

:class:`SQLStore` implements every :class:`~certwatch.store.interface.Store` method as a
function of one connection, run as one transaction by the backend (:mod:`.sqlite`,
:mod:`.postgres`). The SQL is the dialect both speak: ``?`` placeholders (the PostgreSQL
backend turns them into ``%s``), ``INSERT ... ON CONFLICT``, ``RETURNING``. Where they
differ, a backend says so in a class attribute (``_lock_rows``) or :meth:`_in_list`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import msgspec
import trio

from certwatch.core.alerts import Alert, Status
from certwatch.core.ctlog import tree_head_from_json, tree_head_json
from certwatch.core.recognition import InventoryCert, KnownKey
from certwatch.store.interface import (
    PRUNE_BATCH,
    Change,
    Domain,
    LogEvidence,
    OutboxStats,
    SavedPosition,
)
from certwatch.store.rows import RowMapping, alert_rows, cert_rows, key_rows

__all__ = ["Connection", "SQLStore"]

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


def _insert_sql(table: str, columns: Sequence[str], conflict: str) -> str:
    names = ", ".join(columns)
    placeholders = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders}) {conflict}"  # noqa: S608


def _upsert(conn: Connection, table: str, key: str, mapping: RowMapping[T], item: T) -> None:
    """Insert ``item``, or replace every column of the row with its key."""
    row = mapping.values(item)
    updates = ", ".join(f"{name} = excluded.{name}" for name in row if name != key)
    conn.execute(
        _insert_sql(table, list(row), f"ON CONFLICT ({key}) DO UPDATE SET {updates}"),
        tuple(row.values()),
    )


def _as_dict(row: Row) -> dict[str, Any]:
    columns = list(row.keys())
    return {name: row[name] for name in columns}


def _alert_row(alert: Alert) -> dict[str, Any]:
    row = alert_rows().values(alert)
    row["fingerprint"] = alert.cert.fingerprint_sha1
    return row


def _load_alert(row: Row) -> Alert:
    return alert_rows().load(row)


def insert_alert(conn: Connection, alert: Alert) -> Alert:
    """Store ``alert``, or find the alert its issuance already has (one per issuance)."""
    row = _alert_row(alert)
    stored = conn.execute(
        _insert_sql(
            "alerts",
            list(row),
            "ON CONFLICT (issuance) WHERE kind = 'alert' DO NOTHING RETURNING id",
        ),
        tuple(row.values()),
    ).fetchone()
    if stored is not None:
        return attrs.evolve(alert, id=stored["id"])
    existing = conn.execute(
        "SELECT * FROM alerts WHERE issuance = ? AND kind = 'alert'", (alert.issuance,)
    ).fetchone()
    return _load_alert(existing)


class SQLStore(abc.ABC):
    """Every store method, as SQL both backends speak. A backend provides ``_run``."""

    backend: str
    """``sqlite`` or ``postgresql``."""
    shared = False
    """Other certwatch processes may change this database (replicas)."""
    _lock_rows = ""
    """What claims rows for one reader at a time in a subquery (``FOR UPDATE SKIP LOCKED``)."""
    size: int
    """Connections the backend uses at most (transactions at once)."""
    _limiter: trio.CapacityLimiter

    def usage(self) -> tuple[int, int, int]:
        """(connections, in use, transactions waiting for one)."""
        stats = self._limiter.statistics()
        return self.size, stats.borrowed_tokens, stats.tasks_waiting

    @abc.abstractmethod
    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """``fn(connection, *args)`` as one transaction, in a worker thread."""

    @abc.abstractmethod
    def _in_list(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition "``column`` is one of ``values``" and its one parameter."""

    # --- watch entries ----------------------------------------------------------------------

    async def list_domains(self) -> list[Domain]:
        def q(conn: Connection) -> list[Domain]:
            rows = conn.execute("SELECT value, note, added_at FROM domains ORDER BY value")
            return [Domain(r["value"], r["note"], r["added_at"]) for r in rows]

        return await self._run(q, write=False)

    async def domain_values(self) -> list[str]:
        def q(conn: Connection) -> list[str]:
            return [r["value"] for r in conn.execute("SELECT value FROM domains")]

        return await self._run(q, write=False)

    async def domains_in(self, values: Sequence[str]) -> list[str]:
        """Which of ``values`` are watched."""
        where, parameter = self._in_list("value", values)

        def q(conn: Connection) -> list[str]:
            rows = conn.execute(f"SELECT value FROM domains WHERE {where}", (parameter,))  # noqa: S608
            return [r["value"] for r in rows]

        return await self._run(q, write=False)

    async def upsert_domain(self, value: str, note: str, now: float) -> bool:
        def q(conn: Connection) -> bool:
            updated = conn.execute("UPDATE domains SET note = ? WHERE value = ?", (note, value))
            if updated.rowcount:
                return False
            conn.execute(
                "INSERT INTO domains (value, note, added_at) VALUES (?, ?, ?)", (value, note, now)
            )
            return True

        return await self._run(q)

    async def delete_domain(self, value: str) -> bool:
        def q(conn: Connection) -> bool:
            return bool(conn.execute("DELETE FROM domains WHERE value = ?", (value,)).rowcount > 0)

        return await self._run(q)

    # --- inventory --------------------------------------------------------------------------

    async def upsert_cert(self, cert: InventoryCert) -> InventoryCert | None:
        def q(conn: Connection) -> InventoryCert | None:
            old = conn.execute(
                "SELECT * FROM certs WHERE fingerprint_sha1 = ?", (cert.fingerprint_sha1,)
            ).fetchone()
            _upsert(conn, "certs", "fingerprint_sha1", cert_rows(), cert)
            return None if old is None else cert_rows().load(old)

        return await self._run(q)

    async def list_certs(self, limit: int, offset: int) -> list[InventoryCert]:
        def q(conn: Connection) -> list[InventoryCert]:
            rows = conn.execute(
                "SELECT * FROM certs ORDER BY added_at DESC, fingerprint_sha1 LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return [cert_rows().load(r) for r in rows]

        return await self._run(q, write=False)

    async def certs_in(self, sha1s: Sequence[str]) -> list[InventoryCert]:
        """The rows of these fingerprints that exist."""
        where, parameter = self._in_list("fingerprint_sha1", sha1s)

        def q(conn: Connection) -> list[InventoryCert]:
            rows = conn.execute(f"SELECT * FROM certs WHERE {where}", (parameter,))  # noqa: S608
            return [cert_rows().load(r) for r in rows]

        return await self._run(q, write=False)

    async def cert_batches(self, size: int = 5000) -> AsyncIterator[list[InventoryCert]]:
        """Every row, a batch at a time, with only the columns the in-memory index uses.

        What start-up needs: reading 100,000 rows whole would churn far more memory than
        the index keeps.
        """
        after = ""
        while True:

            def q(conn: Connection, after: str = after) -> list[InventoryCert]:
                rows = conn.execute(
                    "SELECT fingerprint_sha1, serial, source, tbs_sha256, authority_key_id, "
                    "CASE WHEN authority_key_id IS NULL THEN sans END AS sans "
                    "FROM certs WHERE fingerprint_sha1 > ? ORDER BY fingerprint_sha1 LIMIT ?",
                    (after, size),
                )
                return [
                    InventoryCert(
                        fingerprint_sha1=r["fingerprint_sha1"],
                        serial=r["serial"],
                        source=r["source"],
                        tbs_sha256=r["tbs_sha256"],
                        authority_key_id=r["authority_key_id"],
                        sans=tuple(loads(r["sans"]) or ()),
                        not_before=0,
                        not_after=0,
                    )
                    for r in rows
                ]

            batch = await self._run(q, write=False)
            if not batch:
                return
            yield batch
            after = batch[-1].fingerprint_sha1

    async def delete_cert(self, sha1: str) -> InventoryCert | None:
        def q(conn: Connection) -> InventoryCert | None:
            row = conn.execute(
                "DELETE FROM certs WHERE fingerprint_sha1 = ? RETURNING *", (sha1,)
            ).fetchone()
            return None if row is None else cert_rows().load(row)

        return await self._run(q)

    async def prune_certs(self, expired_before: float) -> list[InventoryCert]:
        def q(conn: Connection) -> list[InventoryCert]:
            rows = conn.execute(
                "DELETE FROM certs WHERE fingerprint_sha1 IN (SELECT fingerprint_sha1 FROM certs "
                "WHERE not_after < ? LIMIT ?) RETURNING *",
                (expired_before, PRUNE_BATCH),
            ).fetchall()
            return [cert_rows().load(r) for r in rows]

        return await self._run(q)

    # --- registered keys --------------------------------------------------------------------

    async def upsert_key(self, key: KnownKey) -> bool:
        def q(conn: Connection) -> bool:
            existed = conn.execute(
                "SELECT 1 AS found FROM keys WHERE spki_sha256 = ?", (key.spki_sha256,)
            ).fetchone()
            _upsert(conn, "keys", "spki_sha256", key_rows(), key)
            return existed is None

        return await self._run(q)

    async def list_keys(self) -> list[KnownKey]:
        def q(conn: Connection) -> list[KnownKey]:
            rows = conn.execute("SELECT * FROM keys ORDER BY added_at, spki_sha256")
            return [key_rows().load(r) for r in rows]

        return await self._run(q, write=False)

    async def keys_in(self, spki_sha256s: Sequence[str]) -> list[KnownKey]:
        where, parameter = self._in_list("spki_sha256", spki_sha256s)

        def q(conn: Connection) -> list[KnownKey]:
            rows = conn.execute(f"SELECT * FROM keys WHERE {where}", (parameter,))  # noqa: S608
            return [key_rows().load(r) for r in rows]

        return await self._run(q, write=False)

    async def delete_key(self, spki_sha256: str) -> bool:
        def q(conn: Connection) -> bool:
            cur = conn.execute("DELETE FROM keys WHERE spki_sha256 = ?", (spki_sha256,))
            return bool(cur.rowcount > 0)

        return await self._run(q)

    # --- what changed in the views' tables (other replicas, other writers) ------------------

    async def changes_since(self, cursor: int, limit: int = 1000) -> list[Change]:
        def q(conn: Connection) -> list[Change]:
            rows = conn.execute(
                "SELECT id, kind, key, old, at FROM changes WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            )
            return [Change(r["id"], r["kind"], r["key"], loads(r["old"]), r["at"]) for r in rows]

        return await self._run(q, write=False)

    async def last_change(self) -> int:
        def q(conn: Connection) -> int:
            row = conn.execute("SELECT MAX(id) AS last FROM changes").fetchone()
            return int(row["last"] or 0)

        return await self._run(q, write=False)

    async def prune_changes(self, before: float) -> int:
        def q(conn: Connection) -> int:
            cur = conn.execute(
                "DELETE FROM changes WHERE id IN (SELECT id FROM changes WHERE at < ? "
                "ORDER BY id LIMIT ?)",
                (before, PRUNE_BATCH),
            )
            return int(cur.rowcount)

        return await self._run(q)

    # --- alerts -----------------------------------------------------------------------------

    async def insert_alert(self, alert: Alert) -> Alert:
        return await self._run(insert_alert, alert)

    async def get_alert(self, alert_id: int) -> Alert | None:
        def q(conn: Connection) -> Alert | None:
            row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            return None if row is None else _load_alert(row)

        return await self._run(q, write=False)

    async def decide(self, verdict: Alert) -> Alert | None:
        assert verdict.id is not None
        columns = alert_rows().values(verdict)
        changed = ("severity", "status", "recognised_by", "next_attempt_at", "queued_at")

        def q(conn: Connection) -> Alert | None:
            row = conn.execute(
                "UPDATE alerts SET severity = ?, status = ?, recognised_by = ?, "
                "next_attempt_at = ?, queued_at = ? WHERE id = ? AND status = ? RETURNING *",
                (*(columns[name] for name in changed), verdict.id, Status.HELD.value),
            ).fetchone()
            return None if row is None else _load_alert(row)

        return await self._run(q)

    async def resolve(self, follow_up: Alert) -> Alert | None:
        assert follow_up.parent_id is not None
        resolved_by = alert_rows().values(follow_up)["resolved_by"]

        def q(conn: Connection) -> Alert | None:
            cur = conn.execute(
                "UPDATE alerts SET resolved_at = ?, resolved_by = ? "
                "WHERE id = ? AND resolved_at IS NULL",
                (follow_up.created_at, resolved_by, follow_up.parent_id),
            )
            if not cur.rowcount:
                return None
            return insert_alert(conn, follow_up)

        return await self._run(q)

    async def held_alerts(self) -> list[Alert]:
        def q(conn: Connection) -> list[Alert]:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE status = ? ORDER BY id", (Status.HELD.value,)
            )
            return [_load_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def unresolved_suspicious(self, since: float) -> list[Alert]:
        def q(conn: Connection) -> list[Alert]:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE kind = 'alert' AND severity = 'suspicious' "
                "AND resolved_at IS NULL AND created_at >= ? ORDER BY id",
                (since,),
            )
            return [_load_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def recent_issuances(self, since: float) -> list[tuple[str, int, float]]:
        def q(conn: Connection) -> list[tuple[str, int, float]]:
            rows = conn.execute(
                "SELECT issuance, id, created_at FROM alerts WHERE kind = 'alert' "
                "AND created_at >= ? ORDER BY created_at",
                (since,),
            )
            return [(r["issuance"], r["id"], r["created_at"]) for r in rows]

        return await self._run(q, write=False)

    async def list_alerts(
        self,
        *,
        since: float | None = None,
        limit: int = 100,
        severity: str | None = None,
        status: str | None = None,
        delivered: bool | None = None,
    ) -> list[Alert]:
        clauses: list[str] = []
        params: list[Any] = []
        if delivered is not None:
            clauses.append("status = ?" if delivered else "status != ?")
            params.append(Status.DELIVERED.value)
        if since is not None:
            clauses.append("seen_at >= ?")
            params.append(since)
        if severity is not None:
            clauses.append("severity = ?")
            params.append(severity)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

        def q(conn: Connection) -> list[Alert]:
            rows = conn.execute(
                f"SELECT * FROM alerts {where} ORDER BY seen_at DESC, id DESC LIMIT ?",  # noqa: S608
                (*params, limit),
            )
            return [_load_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def prune_alerts(self, created_before: float) -> int:
        def q(conn: Connection) -> int:
            cur = conn.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < ? "
                "AND status IN (?, ?) ORDER BY id LIMIT ?)",
                (created_before, Status.DELIVERED.value, Status.OBSERVED.value, PRUNE_BATCH),
            )
            return int(cur.rowcount)

        return await self._run(q)

    # --- outbox -----------------------------------------------------------------------------

    async def claim_due(self, now: float, limit: int, *, claimer: str, until: float) -> list[Alert]:
        """Claim up to ``limit`` pending alerts that are due and not claimed by anyone else
        (or whose claim expired) for ``claimer`` until ``until``; oldest first."""
        lock = self._lock_rows

        def q(conn: Connection) -> list[Alert]:
            sql = (  # the dialect's locking clause, no input
                "UPDATE alerts SET claimed_by = ?, claim_until = ? WHERE id IN ("  # noqa: S608
                "SELECT id FROM alerts WHERE status = ? AND next_attempt_at <= ? "
                "AND (claim_until IS NULL OR claim_until < ?) "
                f"ORDER BY next_attempt_at, id LIMIT ?{lock}) RETURNING *"
            )
            rows = conn.execute(
                sql, (claimer, until, Status.PENDING.value, now, now, limit)
            ).fetchall()
            return sorted((_load_alert(r) for r in rows), key=lambda a: (a.next_attempt_at, a.id))

        return await self._run(q)

    async def claim(self, alert_id: int, now: float, *, claimer: str, until: float) -> Alert | None:
        """Claim one pending alert (due or not) for ``claimer`` until ``until``, unless
        someone else holds an unexpired claim on it."""

        def q(conn: Connection) -> Alert | None:
            row = conn.execute(
                "UPDATE alerts SET claimed_by = ?, claim_until = ? WHERE id = ? AND status = ? "
                "AND (claim_until IS NULL OR claim_until < ? OR claimed_by = ?) RETURNING *",
                (claimer, until, alert_id, Status.PENDING.value, now, claimer),
            ).fetchone()
            return None if row is None else _load_alert(row)

        return await self._run(q)

    async def next_due_at(self) -> float | None:
        """When the next pending alert can be claimed (due, and any claim expired)."""

        def q(conn: Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(CASE WHEN claim_until > next_attempt_at THEN claim_until "
                "ELSE next_attempt_at END) AS due FROM alerts WHERE status = ?",
                (Status.PENDING.value,),
            ).fetchone()
            return None if row["due"] is None else float(row["due"])

        return await self._run(q, write=False)

    async def record_attempt(
        self,
        alert_id: int,
        *,
        delivered: bool,
        error: str | None,
        now: float,
        next_attempt_at: float | None,
        give_up: bool = False,
    ) -> None:
        status = Status.DELIVERED if delivered else (Status.FAILED if give_up else Status.PENDING)

        def q(conn: Connection) -> None:
            conn.execute(
                "UPDATE alerts SET attempts = attempts + 1, status = ?, last_error = ?, "
                "next_attempt_at = ?, delivered_at = ?, claimed_by = NULL, claim_until = NULL "
                "WHERE id = ? AND status = ?",
                (
                    status.value,
                    error,
                    None if delivered or give_up else next_attempt_at,
                    now if delivered else None,
                    alert_id,
                    Status.PENDING.value,
                ),
            )

        await self._run(q)

    async def requeue(self, alert_id: int | None, now: float) -> int:
        def q(conn: Connection) -> int:
            if alert_id is None:
                cur = conn.execute(
                    "UPDATE alerts SET status = ?, next_attempt_at = ?, queued_at = ?, "
                    "claimed_by = NULL, claim_until = NULL WHERE status = ?",
                    (Status.PENDING.value, now, now, Status.FAILED.value),
                )
            else:
                cur = conn.execute(
                    "UPDATE alerts SET status = ?, next_attempt_at = ?, queued_at = ?, "
                    "claimed_by = NULL, claim_until = NULL WHERE id = ? AND status IN (?, ?, ?)",
                    (
                        Status.PENDING.value,
                        now,
                        now,
                        alert_id,
                        Status.FAILED.value,
                        Status.PENDING.value,
                        Status.DELIVERED.value,
                    ),
                )
            return int(cur.rowcount)

        return await self._run(q)

    async def outbox_stats(self) -> OutboxStats:
        def q(conn: Connection) -> OutboxStats:
            row = conn.execute(
                "SELECT COUNT(*) AS pending, MIN(queued_at) AS oldest FROM alerts WHERE status = ?",
                (Status.PENDING.value,),
            ).fetchone()
            failed = conn.execute(
                "SELECT COUNT(*) AS failed FROM alerts WHERE status = ?", (Status.FAILED.value,)
            ).fetchone()
            return OutboxStats(
                pending=int(row["pending"]),
                failed=int(failed["failed"]),
                oldest_pending_at=row["oldest"],
            )

        return await self._run(q, write=False)

    # --- CT log positions (back-fill) -------------------------------------------------------

    async def log_positions(self) -> list[SavedPosition]:
        def q(conn: Connection) -> list[SavedPosition]:
            rows = conn.execute(
                "SELECT log, kind, position, high, gaps, updated_at, head FROM "
                "ct_log_positions ORDER BY log"
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

        return await self._run(q, write=False)

    async def save_log_positions(self, positions: Iterable[SavedPosition]) -> None:
        rows = [
            (
                p.log, p.kind, p.position, p.high, dumps([list(g) for g in p.gaps]),
                p.updated_at, None if p.head is None else dumps(tree_head_json(p.head)),
            )
            for p in positions
        ]  # fmt: skip

        def q(conn: Connection) -> None:
            for row in rows:
                conn.execute(
                    "INSERT INTO ct_log_positions "
                    "(log, kind, position, high, gaps, updated_at, head) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log) DO UPDATE SET "
                    "kind = excluded.kind, position = excluded.position, high = excluded.high, "
                    "gaps = excluded.gaps, updated_at = excluded.updated_at, "
                    "head = excluded.head",
                    row,
                )

        await self._run(q)

    async def record_log_evidence(self, evidence: LogEvidence) -> None:
        row = (evidence.log, evidence.kind, dumps(evidence.detail), evidence.found_at)

        def q(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO ct_log_evidence (log, kind, detail, found_at) VALUES (?, ?, ?, ?)",
                row,
            )

        await self._run(q)

    async def list_log_evidence(self, limit: int = 100) -> list[LogEvidence]:
        def q(conn: Connection) -> list[LogEvidence]:
            rows = conn.execute(
                "SELECT id, log, kind, detail, found_at FROM ct_log_evidence "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            return [
                LogEvidence(r["log"], r["kind"], loads(r["detail"]), r["found_at"], id=r["id"])
                for r in rows
            ]

        return await self._run(q, write=False)

    # --- moving a deployment (certwatch migrate-db) -----------------------------------------

    async def export_rows(
        self, table: str, key: str, batch: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row of ``table`` as stored, in batches ordered by ``key``."""
        after: Any = None
        while True:

            def q(conn: Connection, after: Any = after) -> list[dict[str, Any]]:
                where = "" if after is None else f"WHERE {key} > ?"
                rows = conn.execute(
                    f"SELECT * FROM {table} {where} ORDER BY {key} LIMIT ?",  # noqa: S608
                    (*(() if after is None else (after,)), batch),
                ).fetchall()
                return [_as_dict(r) for r in rows]

            rows = await self._run(q, write=False)
            if not rows:
                return
            yield rows
            after = rows[-1][key]

    async def import_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Insert ``rows`` (as :meth:`export_rows` gives them) where none of their unique
        values is taken yet, in one transaction; how many were new."""

        def q(conn: Connection) -> int:
            inserted = 0
            for row in rows:
                columns = list(row.keys())
                cur = conn.execute(
                    _insert_sql(table, columns, "ON CONFLICT DO NOTHING"),
                    tuple(row[c] for c in columns),
                )
                inserted += cur.rowcount
            return inserted

        return await self._run(q)
