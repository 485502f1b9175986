"""SQLite storage: watch entries, the inventory, registered keys and the alert outbox.

One connection, used only from worker threads through ``trio.to_thread.run_sync`` with a
``CapacityLimiter(1)``: the limiter stays held until the thread finishes, even when the
awaiting task is cancelled, so two threads never share the connection. Each call runs one
whole transaction (``BEGIN IMMEDIATE ... COMMIT``) in one thread; writes are never
abandoned half-way. WAL with ``synchronous=FULL``: a committed alert survives power loss.

Schema versions are ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades an older file on
open.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs
import msgspec
import trio

from certwatch.core.alerts import Alert, Status
from certwatch.core.recognition import InventoryCert, KnownKey
from certwatch.errors import StoreError, StoreUnavailable
from certwatch.store.interface import PRUNE_BATCH, Domain, OutboxStats, SavedPosition
from certwatch.store.rows import RowMapping, alert_rows, cert_rows, key_rows

__all__ = ["MIGRATIONS", "SQLiteStore"]

log = logging.getLogger("certwatch.store")

P = ParamSpec("P")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

MIGRATIONS: Sequence[str] = (
    # 1: the whole schema of certwatch 0.1.
    """
    CREATE TABLE domains (
        value    TEXT PRIMARY KEY,
        note     TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE certs (
        fingerprint_sha1   TEXT PRIMARY KEY,
        serial             TEXT,
        sans               TEXT NOT NULL,
        not_before         INTEGER NOT NULL,
        not_after          INTEGER NOT NULL,
        source             TEXT NOT NULL DEFAULT '',
        added_at           REAL NOT NULL,
        fingerprint_sha256 TEXT,
        authority_key_id   TEXT,
        tbs_sha256         TEXT,
        spki_sha256        TEXT,
        issuer             TEXT
    );
    CREATE INDEX certs_not_after ON certs (not_after);

    CREATE TABLE keys (
        spki_sha256 TEXT PRIMARY KEY,
        names       TEXT NOT NULL,
        note        TEXT NOT NULL DEFAULT '',
        added_at    REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE alerts (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL UNIQUE,
        kind            TEXT NOT NULL,
        issuance        TEXT NOT NULL,
        parent_id       INTEGER,
        status          TEXT NOT NULL,
        severity        TEXT,
        fingerprint     TEXT NOT NULL,
        matched_entries TEXT NOT NULL,
        matched_sans    TEXT NOT NULL,
        cert            TEXT NOT NULL,
        facts           TEXT NOT NULL,
        seen_at         REAL NOT NULL,
        created_at      REAL NOT NULL,
        decide_at       REAL,
        recognised_by   TEXT,
        resolved_at     REAL,
        resolved_by     TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        next_attempt_at REAL,
        delivered_at    REAL,
        queued_at       REAL
    );
    CREATE INDEX alerts_seen_at ON alerts (seen_at);
    CREATE INDEX alerts_issuance ON alerts (issuance);
    CREATE INDEX alerts_outbox ON alerts (status, next_attempt_at);
    """,
    # 2: retention counts from when certwatch stored an alert, not from the feed's ``seen``.
    """
    CREATE INDEX alerts_created_at ON alerts (created_at);
    """,
    # 3: how far each CT log has been processed, and the gaps back-fill has yet to fill.
    """
    CREATE TABLE ct_log_positions (
        log        TEXT PRIMARY KEY,
        kind       TEXT NOT NULL DEFAULT '',
        position   INTEGER,
        high       INTEGER NOT NULL,
        gaps       TEXT NOT NULL DEFAULT '[]',
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)


_json_encode = msgspec.json.encode


def _dumps(value: Any) -> str:
    return _json_encode(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


def _translate(e: sqlite3.Error) -> StoreError:
    """Map sqlite errors to certwatch's: transient faults become ``StoreUnavailable``."""
    message = str(e)
    if isinstance(e, sqlite3.OperationalError):
        return StoreUnavailable(f"database unavailable: {message}")
    return StoreError(f"database error: {message}")


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
    except sqlite3.Error as e:
        raise StoreError(
            f"cannot open database {str(path)!r}: {e} (does the directory exist and is it "
            "writable?)"
        ) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            log.warning("database %s: journal mode is %s, not WAL", path, mode)
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"cannot use database {str(path)!r}: {e}") from None
    except BaseException:
        conn.close()
        raise
    if check != "ok":
        conn.close()
        raise StoreError(f"database {str(path)!r} is damaged: {check}")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"database schema version {version} is newer than this certwatch knows "
            f"({len(MIGRATIONS)}): upgrade certwatch or restore a backup"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("migrating database schema to version %d", number)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _insert(conn: sqlite3.Connection, table: str, mapping: RowMapping[T], item: T) -> int:
    """Insert ``item`` as a row of ``table``; its rowid."""
    row = mapping.values(item)
    if mapping is alert_rows():
        row["fingerprint"] = row["cert"] and msgspec.json.decode(row["cert"])["fingerprint_sha1"]
    names = ", ".join(row)
    placeholders = ", ".join("?" * len(row))
    cur = conn.execute(
        f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({placeholders})",  # noqa: S608
        tuple(row.values()),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _insert_alert(conn: sqlite3.Connection, alert: Alert) -> Alert:
    return attrs.evolve(alert, id=_insert(conn, "alerts", alert_rows(), alert))


def _alert(row: sqlite3.Row) -> Alert:
    return alert_rows().load(row)


class SQLiteStore:
    """The :class:`~certwatch.store.interface.Store` on one SQLite file. Create with
    :meth:`open`; every method is one transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, threaded: bool = True) -> None:
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self.path = path
        self._threaded = threaded
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(
        cls, path: Path, *, threaded: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> SQLiteStore:
        """Open (creating and migrating as needed). Raises :class:`StoreError`.

        ``busy_timeout_ms`` is how long a write waits for another process's lock (a backup,
        the sqlite3 shell) before failing with :class:`StoreUnavailable`.
        ``threaded=False`` runs SQLite in the event loop's thread: only for tests on a
        virtual clock, where a worker thread would let time race ahead.
        """
        if threaded:
            conn = await trio.to_thread.run_sync(_connect, path, busy_timeout_ms)
        else:
            conn = _connect(path, busy_timeout_ms)
        return cls(conn, path, threaded=threaded)

    def close(self) -> None:
        self._conn.close()

    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``fn(conn, *args)`` as one transaction in the worker thread.

        Writes take the write lock up front (``BEGIN IMMEDIATE``) so they never fail half-way
        on a lock upgrade; reads use a deferred transaction (a consistent WAL snapshot).
        """
        call = functools.partial(self._transaction, fn, args, write)
        if not self._threaded:
            return call()
        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(e) from e
        return result

    # --- watch entries ----------------------------------------------------------------------

    async def list_domains(self) -> list[Domain]:
        def q(conn: sqlite3.Connection) -> list[Domain]:
            rows = conn.execute("SELECT value, note, added_at FROM domains ORDER BY value")
            return [Domain(r["value"], r["note"], r["added_at"]) for r in rows]

        return await self._run(q, write=False)

    async def domain_values(self) -> list[str]:
        """Just the entries (what the index needs at start)."""

        def q(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT value FROM domains")]

        return await self._run(q, write=False)

    async def upsert_domain(self, value: str, note: str, now: float) -> bool:
        """Add an entry or update its note; ``True`` when it is new."""

        def q(conn: sqlite3.Connection) -> bool:
            updated = conn.execute("UPDATE domains SET note = ? WHERE value = ?", (note, value))
            if updated.rowcount:
                return False
            conn.execute(
                "INSERT INTO domains (value, note, added_at) VALUES (?, ?, ?)", (value, note, now)
            )
            return True

        return await self._run(q)

    async def delete_domain(self, value: str) -> bool:
        def q(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM domains WHERE value = ?", (value,)).rowcount > 0

        return await self._run(q)

    # --- inventory --------------------------------------------------------------------------

    async def upsert_cert(self, cert: InventoryCert) -> InventoryCert | None:
        """Insert or replace a row keyed on its SHA-1; return the row it replaced."""

        def q(conn: sqlite3.Connection) -> InventoryCert | None:
            old = conn.execute(
                "SELECT * FROM certs WHERE fingerprint_sha1 = ?", (cert.fingerprint_sha1,)
            ).fetchone()
            _insert(conn, "certs", cert_rows(), cert)
            return None if old is None else cert_rows().load(old)

        return await self._run(q)

    async def list_certs(self, limit: int, offset: int) -> list[InventoryCert]:
        def q(conn: sqlite3.Connection) -> list[InventoryCert]:
            rows = conn.execute(
                "SELECT * FROM certs ORDER BY added_at DESC, fingerprint_sha1 LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return [cert_rows().load(r) for r in rows]

        return await self._run(q, write=False)

    async def cert_batches(self, size: int = 5000) -> AsyncIterator[list[InventoryCert]]:
        """Every row, a batch at a time, with only the columns the in-memory index uses.

        What start-up needs: reading 100,000 rows whole would churn far more memory than
        the index keeps.
        """
        after = ""
        while True:

            def q(conn: sqlite3.Connection, after: str = after) -> list[InventoryCert]:
                rows = conn.execute(
                    "SELECT fingerprint_sha1, serial, source, tbs_sha256, authority_key_id, "
                    "CASE WHEN authority_key_id IS NULL THEN sans END AS sans "
                    "FROM certs WHERE fingerprint_sha1 > ? ORDER BY fingerprint_sha1 LIMIT ?",
                    (after, size),
                )
                return [
                    InventoryCert(
                        fingerprint_sha1=r[0],
                        serial=r[1],
                        source=r[2],
                        tbs_sha256=r[3],
                        authority_key_id=r[4],
                        sans=tuple(_loads(r[5]) or ()),
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
        def q(conn: sqlite3.Connection) -> InventoryCert | None:
            row = conn.execute(
                "DELETE FROM certs WHERE fingerprint_sha1 = ? RETURNING *", (sha1,)
            ).fetchone()
            return None if row is None else cert_rows().load(row)

        return await self._run(q)

    async def prune_certs(self, expired_before: float) -> list[InventoryCert]:
        """Delete one batch of rows with ``not_after < expired_before``; return them."""

        def q(conn: sqlite3.Connection) -> list[InventoryCert]:
            rows = conn.execute(
                "DELETE FROM certs WHERE fingerprint_sha1 IN (SELECT fingerprint_sha1 FROM certs "
                "WHERE not_after < ? LIMIT ?) RETURNING *",
                (expired_before, PRUNE_BATCH),
            ).fetchall()
            return [cert_rows().load(r) for r in rows]

        return await self._run(q)

    # --- registered keys --------------------------------------------------------------------

    async def upsert_key(self, key: KnownKey) -> bool:
        """Register a key or replace its names and note; ``True`` when it is new."""

        def q(conn: sqlite3.Connection) -> bool:
            existed = conn.execute(
                "SELECT 1 FROM keys WHERE spki_sha256 = ?", (key.spki_sha256,)
            ).fetchone()
            _insert(conn, "keys", key_rows(), key)
            return existed is None

        return await self._run(q)

    async def list_keys(self) -> list[KnownKey]:
        def q(conn: sqlite3.Connection) -> list[KnownKey]:
            return [
                key_rows().load(r) for r in conn.execute("SELECT * FROM keys ORDER BY added_at")
            ]

        return await self._run(q, write=False)

    async def delete_key(self, spki_sha256: str) -> bool:
        def q(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM keys WHERE spki_sha256 = ?", (spki_sha256,))
            return cur.rowcount > 0

        return await self._run(q)

    # --- alerts -----------------------------------------------------------------------------

    async def insert_alert(self, alert: Alert) -> Alert:
        """Store a new alert; return it with its id."""
        return await self._run(_insert_alert, alert)

    async def get_alert(self, alert_id: int) -> Alert | None:
        def q(conn: sqlite3.Connection) -> Alert | None:
            row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            return None if row is None else _alert(row)

        return await self._run(q, write=False)

    async def decide(self, verdict: Alert) -> Alert | None:
        """Store the verdict on a held alert (its severity, status, recognition and queue
        times); ``None`` when it was not held any more (already decided)."""
        assert verdict.id is not None
        columns = alert_rows().values(verdict)
        changed = ("severity", "status", "recognised_by", "next_attempt_at", "queued_at")

        def q(conn: sqlite3.Connection) -> Alert | None:
            row = conn.execute(
                "UPDATE alerts SET severity = ?, status = ?, recognised_by = ?, "
                "next_attempt_at = ?, queued_at = ? WHERE id = ? AND status = ? RETURNING *",
                (*(columns[name] for name in changed), verdict.id, Status.HELD),
            ).fetchone()
            return None if row is None else _alert(row)

        return await self._run(q)

    async def resolve(self, follow_up: Alert) -> Alert | None:
        """Mark the follow-up's parent resolved (by the follow-up's recognition, at its
        creation) and store the follow-up, atomically.

        Returns the stored follow-up, or ``None`` when the parent was already resolved.
        """
        assert follow_up.parent_id is not None
        resolved_by = alert_rows().values(follow_up)["resolved_by"]

        def q(conn: sqlite3.Connection) -> Alert | None:
            cur = conn.execute(
                "UPDATE alerts SET resolved_at = ?, resolved_by = ? "
                "WHERE id = ? AND resolved_at IS NULL",
                (follow_up.created_at, resolved_by, follow_up.parent_id),
            )
            if not cur.rowcount:
                return None
            return _insert_alert(conn, follow_up)

        return await self._run(q)

    async def held_alerts(self) -> list[Alert]:
        def q(conn: sqlite3.Connection) -> list[Alert]:
            rows = conn.execute("SELECT * FROM alerts WHERE status = ? ORDER BY id", (Status.HELD,))
            return [_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def unresolved_suspicious(self, since: float) -> list[Alert]:
        """Suspicious alerts stored at or after ``since`` that no follow-up has resolved."""

        def q(conn: sqlite3.Connection) -> list[Alert]:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE kind = 'alert' AND severity = 'suspicious' "
                "AND resolved_at IS NULL AND created_at >= ? ORDER BY id",
                (since,),
            )
            return [_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def recent_issuances(self, since: float) -> list[tuple[str, int, float]]:
        """(issuance, alert id, created_at) of every alert stored at or after ``since``."""

        def q(conn: sqlite3.Connection) -> list[tuple[str, int, float]]:
            rows = conn.execute(
                "SELECT issuance, id, created_at FROM alerts WHERE kind = 'alert' "
                "AND created_at >= ? ORDER BY created_at",
                (since,),
            )
            return [(r[0], r[1], r[2]) for r in rows]

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
        """Newest first, filtered."""
        clauses: list[str] = []
        params: list[Any] = []
        if delivered is not None:
            clauses.append("status = ?" if delivered else "status != ?")
            params.append(Status.DELIVERED)
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

        def q(conn: sqlite3.Connection) -> list[Alert]:
            rows = conn.execute(
                f"SELECT * FROM alerts {where} ORDER BY seen_at DESC, id DESC LIMIT ?",  # noqa: S608
                (*params, limit),
            )
            return [_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def prune_alerts(self, created_before: float) -> int:
        """Delete one batch of settled alerts stored before ``created_before``; return the count.

        Only ``delivered`` and ``observed`` (observer mode: nothing to deliver to) alerts are
        settled. Held, pending and failed alerts are never pruned: an alert that never
        reached the receiver stays until it does. Retention counts from when certwatch
        stored the alert: a feed can report ``seen`` weeks in the past.
        """

        def q(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < ? "
                "AND status IN (?, ?) LIMIT ?)",
                (created_before, Status.DELIVERED, Status.OBSERVED, PRUNE_BATCH),
            )
            return cur.rowcount

        return await self._run(q)

    # --- outbox -----------------------------------------------------------------------------

    async def due_alerts(self, now: float, limit: int, exclude: Iterable[int] = ()) -> list[Alert]:
        """Pending alerts whose next attempt is due, oldest first."""
        skip = _dumps(list(exclude))

        def q(conn: sqlite3.Connection) -> list[Alert]:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE status = ? AND next_attempt_at <= ? "
                "AND id NOT IN (SELECT value FROM json_each(?)) "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (Status.PENDING, now, skip, limit),
            )
            return [_alert(r) for r in rows]

        return await self._run(q, write=False)

    async def next_due_at(self, exclude: Iterable[int] = ()) -> float | None:
        """When the next pending alert (other than ``exclude``) is due."""
        skip = _dumps(list(exclude))

        def q(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(next_attempt_at) FROM alerts WHERE status = ? "
                "AND id NOT IN (SELECT value FROM json_each(?))",
                (Status.PENDING, skip),
            ).fetchone()
            return row[0]  # type: ignore[no-any-return]

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
        """Record one delivery attempt and the alert's next state."""
        status = Status.DELIVERED if delivered else (Status.FAILED if give_up else Status.PENDING)

        def q(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE alerts SET attempts = attempts + 1, status = ?, last_error = ?, "
                "next_attempt_at = ?, delivered_at = ? WHERE id = ? AND status = ?",
                (
                    status,
                    error,
                    None if delivered or give_up else next_attempt_at,
                    now if delivered else None,
                    alert_id,
                    Status.PENDING,
                ),
            )

        await self._run(q)

    async def requeue(self, alert_id: int | None, now: float) -> int:
        """Queue one failed or pending alert (or, with ``None``, every failed one) again."""

        def q(conn: sqlite3.Connection) -> int:
            if alert_id is None:
                cur = conn.execute(
                    "UPDATE alerts SET status = ?, next_attempt_at = ?, queued_at = ? "
                    "WHERE status = ?",
                    (Status.PENDING, now, now, Status.FAILED),
                )
            else:
                cur = conn.execute(
                    "UPDATE alerts SET status = ?, next_attempt_at = ?, queued_at = ? "
                    "WHERE id = ? AND status IN (?, ?, ?)",
                    (
                        Status.PENDING,
                        now,
                        now,
                        alert_id,
                        Status.FAILED,
                        Status.PENDING,
                        Status.DELIVERED,
                    ),
                )
            return cur.rowcount

        return await self._run(q)

    async def outbox_stats(self) -> OutboxStats:
        def q(conn: sqlite3.Connection) -> OutboxStats:
            pending, oldest = conn.execute(
                "SELECT COUNT(*), MIN(queued_at) FROM alerts WHERE status = ?", (Status.PENDING,)
            ).fetchone()
            (failed,) = conn.execute(
                "SELECT COUNT(*) FROM alerts WHERE status = ?", (Status.FAILED,)
            ).fetchone()
            return OutboxStats(pending=pending, failed=failed, oldest_pending_at=oldest)

        return await self._run(q, write=False)

    # --- CT log positions (back-fill) -------------------------------------------------------

    async def log_positions(self) -> list[SavedPosition]:
        def q(conn: sqlite3.Connection) -> list[SavedPosition]:
            rows = conn.execute(
                "SELECT log, kind, position, high, gaps, updated_at FROM "
                "ct_log_positions ORDER BY log"
            )
            return [
                SavedPosition(
                    log=r["log"],
                    kind=r["kind"],
                    position=r["position"],
                    high=r["high"],
                    gaps=tuple((a, b) for a, b in _loads(r["gaps"])),
                    updated_at=r["updated_at"],
                )
                for r in rows
            ]

        return await self._run(q, write=False)

    async def save_log_positions(self, positions: Iterable[SavedPosition]) -> None:
        rows = [
            (p.log, p.kind, p.position, p.high, _dumps([list(g) for g in p.gaps]), p.updated_at)
            for p in positions
        ]

        def q(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO ct_log_positions "
                "(log, kind, position, high, gaps, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._run(q)
