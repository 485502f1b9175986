"""What only the PostgreSQL store does, on a real server: migrations among replicas, the
leader's lock, notifications, a server that restarts or cannot be reached."""

from __future__ import annotations

import os
import time

import psycopg
import pytest
import trio

from certwatch.errors import StoreError, StoreUnavailable
from certwatch.store.postgres import MIGRATIONS, PostgresStore, connection_options
from tests.support.postgres import PASSWORD, PostgresCluster
from tests.support.service import run_certwatch


class TestSchema:
    async def test_replicas_starting_together_migrate_once(self, pg_url: str) -> None:
        """Three stores opened at once on a new database: one migration, three stores."""
        stores: list[PostgresStore] = []

        async def open_one() -> None:
            stores.append(await PostgresStore.open(pg_url))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(open_one)
        try:
            with psycopg.connect(pg_url) as conn:
                versions = conn.execute("SELECT version FROM certwatch_schema").fetchall()
            assert versions == [(n,) for n in range(1, len(MIGRATIONS) + 1)]  # each once
        finally:
            for store in stores:
                store.close()

    async def test_a_newer_schema_is_refused(self, pg_url: str) -> None:
        """A database from a newer certwatch is refused with a message."""
        (await PostgresStore.open(pg_url)).close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("INSERT INTO certwatch_schema VALUES (%s)", (len(MIGRATIONS) + 1,))
        with pytest.raises(StoreError, match="newer than this certwatch knows"):
            await PostgresStore.open(pg_url)

    async def test_an_unreachable_database_names_the_variable_not_the_password(
        self, postgres: PostgresCluster
    ) -> None:
        """A server that is not there: a StoreError naming DATABASE_URL, password hidden."""
        url = postgres.url("nosuchdatabase")
        with pytest.raises(StoreError, match="DATABASE_URL: cannot use") as caught:
            await PostgresStore.open(url, connect_timeout_s=2)
        assert PASSWORD not in str(caught.value)
        assert "***@" in str(caught.value)


class TestLeader:
    def test_connections_detect_a_vanished_host_unless_the_url_says_otherwise(self) -> None:
        """Connections get TCP keepalives (a dead host noticed in ~25 s); the URL's own win."""
        ours = connection_options("postgresql://u@db.internal/certwatch")
        assert ours["keepalives_idle"] == 10
        assert ours["tcp_user_timeout"] == 30_000
        theirs = connection_options("postgresql://u@db/certwatch?keepalives_idle=60")
        assert "keepalives_idle" not in theirs
        assert theirs["keepalives_count"] == 3

    async def test_one_replica_leads_and_another_takes_over_when_it_dies(self, pg_url: str) -> None:
        """The leader role is one replica's; when its connection ends, another takes it."""
        first, second = await PostgresStore.open(pg_url), await PostgresStore.open(pg_url)
        try:
            assert await first.try_lead() is True
            assert await first.still_leading() is True
            assert await second.try_lead() is False
            first.close()  # as a killed process's connections end
            assert await second.try_lead() is True
            assert await second.still_leading() is True
        finally:
            second.close()

    async def test_giving_the_role_up_frees_it(self, pg_url: str) -> None:
        """stop_leading() lets another replica lead at once."""
        first, second = await PostgresStore.open(pg_url), await PostgresStore.open(pg_url)
        try:
            assert await first.try_lead()
            await first.stop_leading()
            assert await first.still_leading() is False
            assert await second.try_lead()
        finally:
            first.close()
            second.close()


class TestNotifications:
    async def test_a_change_wakes_a_waiting_replica(self, pg_url: str) -> None:
        """A change made by one replica wakes another's wait at once, not after the poll."""
        writer, reader = await PostgresStore.open(pg_url), await PostgresStore.open(pg_url)
        try:
            woke = trio.Event()

            async def wait() -> None:
                await reader.wait_for_changes(60)
                woke.set()

            # The reader listens from its first wait on: a notification that arrives while it
            # is not waiting is kept (by psycopg, or the socket) for its next wait.
            await reader.wait_for_changes(0.01)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await writer.upsert_domain("example.org", "", 1.0)
                with trio.fail_after(10):
                    await woke.wait()
            assert [c.key for c in await reader.changes_since(0)] == ["example.org"]
        finally:
            writer.close()
            reader.close()


class TestFaults:
    async def test_a_restarted_server_is_unavailable_then_used_again(
        self, postgres: PostgresCluster, pg_url: str
    ) -> None:
        """A restarted server fails calls as StoreUnavailable at most once, then works again."""
        # On new connections; the leader's lock was lost with the old ones.
        store = await PostgresStore.open(pg_url)
        try:
            await store.upsert_domain("a.example", "", 1.0)
            assert await store.try_lead()
            await trio.to_thread.run_sync(postgres.restart)
            results: list[bool | None] = []
            for _ in range(3):
                try:
                    results.append(await store.upsert_domain("b.example", "", 2.0))
                except StoreUnavailable:
                    results.append(None)
            assert True in results
            assert await store.domains_in(["a.example", "b.example"]) == ["a.example", "b.example"]
            assert await store.still_leading() is False
            assert await store.try_lead() is True
        finally:
            store.close()


class TestUnusableDatabase:
    @pytest.mark.parametrize(
        ("change", "cause"),
        [
            ("database", 'database "no_such_db" does not exist'),
            ("role", 'role "ghost" does not exist'),
            ("port", "Connection refused"),
        ],
    )
    def test_an_unusable_database_is_one_line_with_its_cause(
        self, postgres: PostgresCluster, change: str, cause: str
    ) -> None:
        """No such database or role, nothing listening: one line saying which, at once."""
        url = postgres.url("no_such_db")
        if change == "role":
            url = postgres.new_database().replace("certwatch:", "ghost:", 1)
        elif change == "port":
            url = "postgresql://certwatch:x@127.0.0.1:9/certwatch?connect_timeout=5"
        started = time.monotonic()
        result = run_certwatch(
            env={**os.environ, "API_TOKEN": "x", "API_PORT": "0", "DATABASE_URL": url}
        )
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("certwatch: DATABASE_URL: cannot use ")
        assert cause in lines[0]
        assert PASSWORD not in lines[0]
        assert time.monotonic() - started < 10  # not the pool's whole timeout, retrying
