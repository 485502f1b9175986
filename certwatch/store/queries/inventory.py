"""The ``certs`` and ``keys`` tables: what the LBs pushed, and keys registered in advance."""

from __future__ import annotations

from collections.abc import Sequence

from certwatch.core.recognition import InventoryCert, KnownKey
from certwatch.store.interface import PRUNE_BATCH
from certwatch.store.queries import Connection, Dialect, loads, upsert
from certwatch.store.rows import cert_rows, key_rows

__all__ = [
    "cert_batch",
    "certs_in",
    "delete_cert",
    "delete_key",
    "keys_in",
    "list_certs",
    "list_keys",
    "prune_certs",
    "upsert_cert",
    "upsert_key",
]


# --- certificates -----------------------------------------------------------------------------


def upsert_cert(conn: Connection, cert: InventoryCert) -> InventoryCert | None:
    """Insert or replace a row keyed on its SHA-1; the row it replaced."""
    old = conn.execute(
        "SELECT * FROM certs WHERE fingerprint_sha1 = ?", (cert.fingerprint_sha1,)
    ).fetchone()
    upsert(conn, "certs", "fingerprint_sha1", cert_rows(), cert)
    return None if old is None else cert_rows().load(old)


def list_certs(conn: Connection, limit: int, offset: int) -> list[InventoryCert]:
    rows = conn.execute(
        "SELECT * FROM certs ORDER BY added_at DESC, fingerprint_sha1 LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return [cert_rows().load(r) for r in rows]


def certs_in(conn: Connection, dialect: Dialect, sha1s: Sequence[str]) -> list[InventoryCert]:
    where, parameter = dialect.in_list("fingerprint_sha1", sha1s)
    rows = conn.execute(f"SELECT * FROM certs WHERE {where}", (parameter,))  # noqa: S608
    return [cert_rows().load(r) for r in rows]


def cert_batch(conn: Connection, after: str, size: int) -> list[InventoryCert]:
    """The rows after ``after``, with only the columns the in-memory index uses."""
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


def delete_cert(conn: Connection, sha1: str) -> InventoryCert | None:
    row = conn.execute(
        "DELETE FROM certs WHERE fingerprint_sha1 = ? RETURNING *", (sha1,)
    ).fetchone()
    return None if row is None else cert_rows().load(row)


def prune_certs(conn: Connection, expired_before: float) -> list[InventoryCert]:
    """Delete at most ``PRUNE_BATCH`` rows with ``not_after < expired_before``."""
    rows = conn.execute(
        "DELETE FROM certs WHERE fingerprint_sha1 IN (SELECT fingerprint_sha1 FROM certs "
        "WHERE not_after < ? LIMIT ?) RETURNING *",
        (expired_before, PRUNE_BATCH),
    ).fetchall()
    return [cert_rows().load(r) for r in rows]


# --- keys -------------------------------------------------------------------------------------


def upsert_key(conn: Connection, key: KnownKey) -> bool:
    """Register a key or replace its names and note; ``True`` when it is new."""
    existed = conn.execute(
        "SELECT 1 AS found FROM keys WHERE spki_sha256 = ?", (key.spki_sha256,)
    ).fetchone()
    upsert(conn, "keys", "spki_sha256", key_rows(), key)
    return existed is None


def list_keys(conn: Connection) -> list[KnownKey]:
    rows = conn.execute("SELECT * FROM keys ORDER BY added_at, spki_sha256")
    return [key_rows().load(r) for r in rows]


def keys_in(conn: Connection, dialect: Dialect, spki_sha256s: Sequence[str]) -> list[KnownKey]:
    where, parameter = dialect.in_list("spki_sha256", spki_sha256s)
    rows = conn.execute(f"SELECT * FROM keys WHERE {where}", (parameter,))  # noqa: S608
    return [key_rows().load(r) for r in rows]


def delete_key(conn: Connection, spki_sha256: str) -> bool:
    return bool(conn.execute("DELETE FROM keys WHERE spki_sha256 = ?", (spki_sha256,)).rowcount)
