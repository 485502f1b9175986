"""What only the SQLite store does, on real files: schema versions, locks, old rows.

(What both stores do is in test_store.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from certwatch.core.recognition import Evidence, InventoryCert, Recognition
from certwatch.errors import StoreError, StoreUnavailable
from certwatch.store.sqlite import MIGRATIONS, SQLiteStore, _statements


def cert(n: int, not_after: int = 2_000_000_000) -> InventoryCert:
    return InventoryCert(
        fingerprint_sha1=f"{n:040x}", sans=("a.example.org",), not_before=1, not_after=not_after
    )


class TestSchema:
    async def test_new_file_gets_the_current_schema_in_wal_mode(self, tmp_path: Path) -> None:
        """A new database is created at the latest user_version, in WAL mode."""
        store = await SQLiteStore.open(tmp_path / "cw.db")
        store.close()
        conn = sqlite3.connect(tmp_path / "cw.db")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"domains", "certs", "keys", "alerts"} <= tables
        conn.close()

    async def test_reopening_keeps_data_and_does_not_migrate_again(self, tmp_path: Path) -> None:
        """Opening an up-to-date file changes nothing and keeps every row."""
        store = await SQLiteStore.open(tmp_path / "cw.db")
        await store.upsert_domain("example.org", "note", 1.0)
        store.close()
        store = await SQLiteStore.open(tmp_path / "cw.db")
        assert [d.value for d in await store.list_domains()] == ["example.org"]
        store.close()

    async def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A file from a newer certwatch is refused with a message, not silently used."""
        conn = sqlite3.connect(tmp_path / "cw.db")
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        conn.close()
        with pytest.raises(StoreError, match="newer than this certwatch knows"):
            await SQLiteStore.open(tmp_path / "cw.db")

    @pytest.mark.parametrize(
        ("setup", "message"),
        [("missing-dir", "cannot open database"), ("garbage", "cannot use database")],
    )
    async def test_unusable_files_are_clear_errors(
        self, tmp_path: Path, setup: str, message: str
    ) -> None:
        """A missing directory or a file that is not SQLite is a StoreError naming the path."""
        path = tmp_path / "missing" / "cw.db"
        if setup == "garbage":
            path = tmp_path / "cw.db"
            path.write_bytes(b"this is not a database, just text " * 200)
        with pytest.raises(StoreError, match=message) as caught:
            await SQLiteStore.open(path)
        assert str(path) in str(caught.value)


class TestTransactions:
    async def test_a_held_write_lock_is_store_unavailable(self, tmp_path: Path) -> None:
        """Another process holding the write lock past the busy timeout: StoreUnavailable."""
        store = await SQLiteStore.open(tmp_path / "cw.db", busy_timeout_ms=50)
        other = sqlite3.connect(tmp_path / "cw.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.upsert_domain("example.org", "", 1.0)
        assert [d.value for d in await store.list_domains()] == []  # reads still work (WAL)
        other.execute("ROLLBACK")
        other.close()
        assert await store.upsert_domain("example.org", "", 1.0) is True
        store.close()


class TestRows:
    async def test_rows_written_by_the_previous_release_still_load(self, tmp_path: Path) -> None:
        """An alert row in the JSON certwatch 0.1 wrote (dicts, hex serial) loads typed."""
        store = await SQLiteStore.open(tmp_path / "cw.db")
        store.close()
        conn = sqlite3.connect(tmp_path / "cw.db", isolation_level=None)
        conn.execute(
            "INSERT INTO alerts (event_id, kind, issuance, status, severity, fingerprint, "
            "matched_entries, matched_sans, cert, facts, seen_at, created_at, recognised_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "evt-old", "alert", "aki:58f0:2620", "delivered", "info", "1beb" + "0" * 36,
                '["example.net"]', '["www.example.net"]',
                '{"fingerprint_sha1": "1beb0000000000000000000000000000000000", '
                '"all_sans": ["www.example.net"], "issuer": "/C=US/CN=ETS R1", '
                '"issuer_o": null, "issuer_cn": "ETS R1", "not_before": 1, "not_after": 2, '
                '"source_log": "Quokka", "source_url": "https://ct.example", "cert_link": "", '
                '"cert_index": 5, "serial": "2620", "update_type": "PrecertLogEntry"}',
                '{"names": ["www.example.net"], "subject_cn": null, "sha1": null, '
                '"sha256": null, "authority_key_id": "58f0", "serial": "2620", "issuer": "", '
                '"tbs_sha256": null, "spki_sha256": null}',
                1.0, 2.0,
                '{"evidence": "issuance", "source": "lb:a", "ref": "aa"}',
            ),
        )  # fmt: skip
        conn.close()
        store = await SQLiteStore.open(tmp_path / "cw.db")
        (alert,) = await store.list_alerts()
        store.close()
        assert alert.facts.serial == 0x2620
        assert alert.facts.names == frozenset({"www.example.net"})
        assert alert.cert.cert_index == 5
        assert alert.recognised_by == Recognition(Evidence.ISSUANCE, "lb:a", "aa")
        assert (alert.kind, alert.status, alert.severity) == ("alert", "delivered", "info")

    async def test_version_4_keeps_older_duplicate_issuances(self, tmp_path: Path) -> None:
        """A version 3 file with two alerts of one issuance upgrades, keeping both rows."""
        # Possible past retention: the newer keeps the issuance; the change log and claims exist.
        path = tmp_path / "cw.db"
        conn = sqlite3.connect(path, isolation_level=None)
        for script in MIGRATIONS[:3]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 3")
        for n in (1, 2):
            conn.execute(
                "INSERT INTO alerts (id, event_id, kind, issuance, status, fingerprint, "
                "matched_entries, matched_sans, cert, facts, seen_at, created_at) "
                "VALUES (?, ?, 'alert', 'aki:ab:01', 'delivered', '', '[]', '[]', '{}', "
                "'{\"names\": []}', 1.0, 1.0)",
                (n, f"evt-{n}"),
            )
        conn.close()
        store = await SQLiteStore.open(path)
        await store.upsert_domain("example.org", "", 1.0)
        changes = await store.changes_since(0)
        store.close()
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT id, issuance FROM alerts ORDER BY id").fetchall()
        conn.close()
        assert rows == [(1, "aki:ab:01#1"), (2, "aki:ab:01")]
        assert [(c.kind, c.key) for c in changes] == [("domain", "example.org")]


async def test_alerts_decided_before_rules_existed_get_their_reason(tmp_path: Path) -> None:
    """Upgrading a version 5 file: decided alerts get reason recognised or unrecognised."""
    conn = sqlite3.connect(tmp_path / "cw.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    for n, severity in enumerate(["info", "suspicious", None]):
        conn.execute(
            "INSERT INTO alerts (event_id, kind, issuance, status, severity, fingerprint, "
            "matched_entries, matched_sans, cert, facts, seen_at, created_at) VALUES "
            "(?, 'alert', ?, 'pending', ?, '', '[]', '[]', '{}', '{}', 1, 1)",
            (f"evt-{n}", f"i{n}", severity),
        )
    conn.close()
    store = await SQLiteStore.open(tmp_path / "cw.db")
    store.close()
    conn = sqlite3.connect(tmp_path / "cw.db")
    reasons = conn.execute("SELECT severity, reason FROM alerts ORDER BY id").fetchall()
    conn.close()
    assert reasons == [("info", "recognised"), ("suspicious", "unrecognised"), (None, None)]
