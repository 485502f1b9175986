"""SQLite storage: the embedded default, one process on one file.

The queries are :mod:`.sql`'s; this module owns the connection. One connection, used only
from worker threads through ``trio.to_thread.run_sync`` with a
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from certwatch.errors import StoreError, StoreUnavailable
from certwatch.store.queries import Dialect, alerts, dumps
from certwatch.store.sql import SQLStore

__all__ = ["MIGRATIONS", "SQLiteStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000

VIEW_TABLES = (
    ("domains", "domain", "value", ("value", "note", "added_at")),
    ("certs", "cert", "fingerprint_sha1", (
        "fingerprint_sha1", "serial", "sans", "not_before", "not_after", "source", "added_at",
        "fingerprint_sha256", "authority_key_id", "tbs_sha256", "spki_sha256", "issuer",
    )),
    ("keys", "key", "spki_sha256", ("spki_sha256", "names", "note", "added_at")),
    ("rules", "rule", "id", (
        "id", "kind", "scope", "issuers", "note", "created_at", "expires_at",
    )),
    ("brands", "brand", "domain", ("domain", "label", "note", "allow", "added_at")),
)  # fmt: skip
"""The tables the views mirror: (table, kind of change, key column, columns)."""


def _change_triggers(tables: Sequence[str] = ("domains", "certs", "keys")) -> str:
    """Triggers that log every change to these views' tables in ``changes``, whoever makes
    it (the old row as JSON, for an update or a delete)."""
    script = []
    for table, kind, key, columns in VIEW_TABLES:
        if table not in tables:
            continue
        old = "json_object(" + ", ".join(f"'{c}', OLD.{c}" for c in columns) + ")"
        for op, row, before in (("INSERT", "NEW", "NULL"), ("UPDATE", "NEW", old),
                                ("DELETE", "OLD", old)):  # fmt: skip
            script.append(
                f"CREATE TRIGGER {table}_{op.lower()} AFTER {op} ON {table} BEGIN\n"  # noqa: S608
                f"    INSERT INTO changes (kind, key, old, at) VALUES ('{kind}', {row}.{key}, "
                f"{before}, (julianday('now') - 2440587.5) * 86400.0);\nEND;\n"
            )
    return "".join(script)


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
    # 4: the same schema as PostgreSQL's: deliveries claimed with a lease, one alert per
    # issuance in the database (older duplicates, possible only past retention, keep
    # their rows under a distinct issuance), and the log of changes to the views' tables.
    "".join([
        """
    ALTER TABLE alerts ADD COLUMN claimed_by TEXT;
    ALTER TABLE alerts ADD COLUMN claim_until REAL;
    UPDATE alerts SET issuance = issuance || '#' || id WHERE kind = 'alert' AND id NOT IN
        (SELECT MAX(id) FROM alerts WHERE kind = 'alert' GROUP BY issuance);
    CREATE UNIQUE INDEX alerts_one_per_issuance ON alerts (issuance) WHERE kind = 'alert';
    CREATE TABLE changes (
        id   INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        key  TEXT NOT NULL,
        old  TEXT,
        at   REAL NOT NULL
    );
    CREATE INDEX changes_at ON changes (at);
    """,
        _change_triggers(),
    ]),
    # 5: each CT log's newest verified tree head, and the evidence of logs that misbehaved.
    """
    ALTER TABLE ct_log_positions ADD COLUMN head TEXT;
    CREATE TABLE ct_log_evidence (
        id       INTEGER PRIMARY KEY,
        log      TEXT NOT NULL,
        kind     TEXT NOT NULL,
        detail   TEXT NOT NULL,
        found_at REAL NOT NULL
    );
    """,
    # 6: rules and triage: the organisation's rules (a views table, logged like the
    # others), and on each alert the ladder's reason, rule and CA, and its acknowledgement.
    "".join([
        """
    CREATE TABLE rules (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL,
        scope      TEXT NOT NULL,
        issuers    TEXT NOT NULL,
        note       TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        expires_at REAL
    );
    ALTER TABLE alerts ADD COLUMN reason TEXT;
    ALTER TABLE alerts ADD COLUMN issuer_ca TEXT;
    ALTER TABLE alerts ADD COLUMN rule TEXT;
    ALTER TABLE alerts ADD COLUMN acknowledged_at REAL;
    ALTER TABLE alerts ADD COLUMN acknowledged_scope TEXT;
    ALTER TABLE alerts ADD COLUMN acknowledged_note TEXT;
    UPDATE alerts SET reason = CASE severity WHEN 'info' THEN 'recognised'
        WHEN 'suspicious' THEN 'unrecognised' END WHERE severity IS NOT NULL;
    """,
        _change_triggers(("rules",)),
    ]),
    # 7: CAA: every RRset seen (since when, unchanged), and each alert's CAA evaluation.
    """
    CREATE TABLE caa_rrsets (
        id         INTEGER PRIMARY KEY,
        owner      TEXT NOT NULL,
        records    TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen  REAL NOT NULL,
        UNIQUE (owner, records)
    );
    CREATE INDEX caa_rrsets_last_seen ON caa_rrsets (last_seen);
    ALTER TABLE alerts ADD COLUMN caa TEXT;
    """,
    # 8: the lookalike watch: the brands (a views table, logged like the others), and on
    # each lookalike alert the names that imitate them.
    "".join([
        """
    CREATE TABLE brands (
        domain   TEXT PRIMARY KEY,
        label    TEXT NOT NULL,
        note     TEXT NOT NULL DEFAULT '',
        allow    TEXT NOT NULL DEFAULT '[]',
        added_at REAL NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE alerts ADD COLUMN lookalikes TEXT;
    """,
        _change_triggers(("brands",)),
    ]),
)  # fmt: skip


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


def _statements(script: str) -> list[str]:
    """A script's statements (a trigger's body holds semicolons of its own)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    assert not buffer.strip(), f"an incomplete statement: {buffer!r}"
    return statements


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
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _json_in_list(column: str, values: Sequence[Any]) -> tuple[str, Any]:
    condition = f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 - a column name
    return condition, dumps(list(values))


class SQLiteStore(SQLStore):
    """The :class:`~certwatch.store.interface.Store` on one SQLite file. Create with
    :meth:`open`; every method is one transaction."""

    backend = "sqlite"
    dialect = Dialect(in_list=_json_in_list)

    def __init__(self, conn: sqlite3.Connection, path: Path, *, threaded: bool = True) -> None:
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self.path = path
        self._threaded = threaded
        self.size = 1
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
        store = cls(conn, path, threaded=threaded)
        # One process uses the file: every delivery claim in it was a previous run's, and
        # none of its deliveries is under way any more. Its alerts go out now, not when
        # those leases expire.
        await store._run(alerts.release_claims)
        return store

    def close(self) -> None:
        self._conn.close()

    # --- one process: always the leader, nothing to wait for but time -----------------------

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone(), write=False)
        return time.perf_counter() - started

    async def try_lead(self) -> bool:
        return True

    async def still_leading(self) -> bool:
        return True

    async def stop_leading(self) -> None:
        return None

    async def wait_for_changes(self, at_most_s: float) -> None:
        """Only this process writes the file (or an operator's shell): poll."""
        await trio.sleep(at_most_s)

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
