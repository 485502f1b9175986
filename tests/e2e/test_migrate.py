"""certwatch migrate-db: a SQLite deployment copied into a real PostgreSQL, twice."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import trio

from certwatch.core.alerts import Kind, Severity, Status
from certwatch.core.lookalikes import Brand
from certwatch.core.policy import Rule, RuleKind
from certwatch.core.recognition import InventoryCert, KnownKey
from certwatch.store import LogEvidence, SavedPosition, SQLiteStore
from certwatch.store.postgres import PostgresStore
from tests.support.alerts import pending_alert
from tests.support.service import run_certwatch


async def a_deployment(path: Path) -> None:
    """A SQLite database with a bit of everything in it."""
    store = await SQLiteStore.open(path)
    try:
        await store.upsert_domain("example.org", "prod", 1.0)
        await store.upsert_domain("example.net", "", 2.0)
        for n in range(3):
            await store.upsert_cert(
                InventoryCert(f"{n:040x}", ("a.example.org",), 1, 2_000_000_000)
            )
        await store.upsert_key(KnownKey("ab" * 32, ("a.example.org",), "lb", 3.0))
        for scope in ("status.example.org", "help.example.org"):
            await store.insert_rule(
                Rule(RuleKind.EXPECT, scope, ("letsencrypt.org",), "vendor", 4.0, None)
            )
        await store.upsert_brand(Brand("example.org", "example", "", ("example.net",), 5.0))
        await store.record_log_evidence(LogEvidence("https://log.example", "fork", {}, 6.0))
        delivered = await store.insert_alert(pending_alert(1, 10.0))
        assert delivered.id is not None
        await store.record_attempt(delivered.id, status=Status.DELIVERED, error=None, now=11.0)
        pending = await store.insert_alert(pending_alert(2, 12.0))
        await store.claim(pending.id or 0, 12.0, claimer="old", until=99.0)
        held = attrs.evolve(pending_alert(3, 13.0), status=Status.HELD, severity=None,
                            decide_at=73.0)  # fmt: skip
        await store.insert_alert(held)
        await store.resolve(attrs.evolve(pending_alert(1, 14.0), event_id="follow-up",
                                         kind=Kind.RESOLVED, parent_id=delivered.id,
                                         severity=Severity.INFO))  # fmt: skip
        await store.save_log_positions(
            [SavedPosition("https://log.example", "tiled", 10, 20, ((11, 19),), 5.0)]
        )
    finally:
        store.close()


async def test_a_sqlite_deployment_moves_to_postgresql_and_twice_is_harmless(
    tmp_path: Path, pg_url: str
) -> None:
    """migrate-db copies every table with its state, once; new alerts number after them."""
    # A pending alert arrives unclaimed; a second run copies nothing.
    path = tmp_path / "cw.db"
    await a_deployment(path)
    env = {**os.environ, "DB_PATH": str(path), "DATABASE_URL": pg_url}
    first = await trio.to_thread.run_sync(lambda: run_certwatch("migrate-db", env=env))
    second = await trio.to_thread.run_sync(lambda: run_certwatch("migrate-db", env=env))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "domains: 2 read, 2 copied, 0 already there",
        "certs: 3 read, 3 copied, 0 already there",
        "keys: 1 read, 1 copied, 0 already there",
        "rules: 2 read, 2 copied, 0 already there",
        "brands: 1 read, 1 copied, 0 already there",
        "alerts: 4 read, 4 copied, 0 already there",
        "ct_log_positions: 1 read, 1 copied, 0 already there",
        "ct_log_evidence: 1 read, 1 copied, 0 already there",
        "caa_rrsets: 0 read, 0 copied, 0 already there",
    ]
    assert second.returncode == 0, second.stderr
    assert all(line.endswith(" 0 copied, " + line.split(" read")[0].split(": ")[1]
               + " already there") for line in second.stdout.splitlines())  # fmt: skip
    assert "test-password" not in first.stdout + first.stderr

    source = await SQLiteStore.open(path)
    target = await PostgresStore.open(pg_url)
    try:
        assert await target.list_domains() == await source.list_domains()
        assert await target.list_certs(100, 0) == await source.list_certs(100, 0)
        assert await target.list_keys() == await source.list_keys()
        assert await target.list_rules() == await source.list_rules()
        assert await target.list_brands() == await source.list_brands()
        assert await target.log_positions() == await source.log_positions()
        copied = {a.event_id: a for a in await target.list_alerts()}
        original = {a.event_id: a for a in await source.list_alerts()}
        assert copied == original
        assert [a.status for a in await target.held_alerts()] == [Status.HELD]
        due = await target.claim_due(100.0, 10, claimer="new", until=200.0)  # unclaimed now
        assert {a.event_id for a in due} == {pending_alert(2, 12.0).event_id, "follow-up"}
        new = await target.insert_alert(pending_alert(9, 20.0))
        assert (new.id or 0) > max(a.id or 0 for a in copied.values())
        # Every table with ids numbers new rows after the copied ones.
        rule = await target.insert_rule(Rule(RuleKind.PROTECT, "login.example.org", (), "", 7.0))
        assert rule.id == 3
        await target.record_log_evidence(LogEvidence("https://log.example", "fork", {}, 8.0))
        assert sorted(e.id or 0 for e in await target.list_log_evidence()) == [1, 2]
    finally:
        source.close()
        target.close()


def test_migrate_db_needs_both_databases(tmp_path: Path) -> None:
    """Without DATABASE_URL, or without the SQLite file, migrate-db says which, in a line."""
    env = {**os.environ, "DB_PATH": str(tmp_path / "missing.db")}
    env.pop("DATABASE_URL", None)
    done = run_certwatch("migrate-db", env=env)
    assert (done.returncode, done.stderr.strip()) == (
        2, "certwatch: DATABASE_URL: required, the PostgreSQL database to copy into",
    )  # fmt: skip
    env["DATABASE_URL"] = "postgresql://u:p@/db?host=/nowhere"
    done = run_certwatch("migrate-db", env=env)
    assert done.returncode == 1
    assert "no database at" in done.stderr
