"""Alert decisions: dedupe, the grace window, late registrations, restarts, cleanup.

These run on a virtual clock (``autojump_clock``) against a real SQLite file, with SQLite
called inline (``threaded=False``) so that virtual time cannot race past a worker thread.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import attrs
import trio
import trio.testing

from certwatch.core.alerts import Alert, Status
from certwatch.core.identity import fingerprint
from certwatch.core.messages import read_update
from certwatch.core.names import WatchIndex
from certwatch.core.recognition import Inventory, InventoryCert, KnownKey
from certwatch.metrics import Metrics
from certwatch.pipeline.alerter import Alerter
from certwatch.pipeline.cleanup import Cleanup
from certwatch.store import PRUNE_BATCH, AlerterStore
from certwatch.store.sqlite import SQLiteStore
from certwatch.store.views import CHANGES_RETENTION_S, Views
from tests.support.alerts import pending_alert
from tests.support.certs import CA, Issuance

EPOCH = time.time()  # feed messages carry real `seen` times
GRACE = 60.0


def virtual_wall_clock() -> float:
    return EPOCH + trio.current_time()


def row(issuance: Issuance, **overrides: Any) -> InventoryCert:
    push = issuance.push()
    values: dict[str, Any] = {
        "fingerprint_sha1": fingerprint(push["fingerprint"]),
        "serial": push["serial"],
        "sans": tuple(push["sans"]),
        "not_before": push["not_before"],
        "not_after": push["not_after"],
        "source": "lb:test",
    }
    values.update(overrides)
    return InventoryCert(**values)


@attrs.define
class World:
    """An alerter over a real SQLite file, with the outbox channel's far end."""

    store: SQLiteStore
    views: Views
    alerter: Alerter
    outbox: trio.MemoryReceiveChannel[int]
    metrics: Metrics
    nursery: trio.Nursery
    index: WatchIndex

    async def see(self, message: dict[str, Any]) -> None:
        raw = json.dumps(message)
        match = self.index.match(message["data"]["leaf_cert"]["all_domains"])
        assert match is not None
        await self.alerter.on_match(read_update(raw), match)

    @property
    def inventory(self) -> Inventory:
        return self.views.inventory

    async def register(self, cert: InventoryCert) -> None:
        await self.views.upsert_cert(cert)
        await self.alerter.reconcile()

    async def alerts(self) -> list[Alert]:
        return list(reversed(await self.store.list_alerts(limit=1000)))

    def queued(self) -> list[int]:
        out = []
        while True:
            try:
                out.append(self.outbox.receive_nowait())
            except trio.WouldBlock:
                return out


@asynccontextmanager
async def world(
    path: Path,
    *,
    grace: float = GRACE,
    clock: Callable[[], float] = virtual_wall_clock,
    adopt_every_s: float | None = None,
    seen_by_alerter: Callable[[SQLiteStore], AlerterStore] = lambda store: store,
) -> AsyncIterator[World]:
    store = await SQLiteStore.open(path, threaded=False)
    try:
        views = await Views.load(store)  # as the service loads them
        metrics = Metrics()
        send, receive = trio.open_memory_channel[int](100)
        alerter = Alerter(
            seen_by_alerter(store),
            views.inventory,
            metrics.alerts,
            grace_s=grace,
            retention_s=30 * 86400,
            outbox=send,
            clock=clock,
        )
        await alerter.load()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(alerter.run_holds, adopt_every_s=adopt_every_s))
            yield World(
                store, views, alerter, receive, metrics, nursery, WatchIndex(["example.org"])
            )
            nursery.cancel_scope.cancel()
    finally:
        store.close()


class TestDecisions:
    async def test_recognised_cert_is_info_at_once(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An inventoried issuance is decided `info` immediately, even with a grace period."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db") as w:
            await w.register(row(issuance))
            await w.see(issuance.message("go-tiled"))
            (alert,) = await w.alerts()
            assert (alert.severity, alert.status) == ("info", "pending")
            assert alert.recognised_by is not None
            assert alert.recognised_by.as_dict() == {
                "evidence": "serial_and_names",
                "source": "lb:test",
                "ref": issuance.final_sha1,
            }
            assert w.queued() == [alert.id]

    async def test_unrecognised_cert_is_held_then_suspicious(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An unknown issuance is stored held, and declared suspicious when the grace ends."""
        async with world(tmp_path / "db") as w:
            await w.see(ca.issue(["a.example.org"]).message())
            (alert,) = await w.alerts()
            assert (alert.status, alert.severity) == ("held", None)
            assert w.queued() == []
            await trio.sleep(GRACE - 1)
            assert (await w.alerts())[0].status == "held"
            await trio.sleep(2)
            (alert,) = await w.alerts()
            assert (alert.status, alert.severity) == ("pending", "suspicious")
            assert w.queued() == [alert.id]
            assert (
                w.metrics.registry.get_sample_value(
                    "certwatch_alerts_total", {"severity": "suspicious"}
                )
                == 1
            )

    async def test_zero_grace_decides_at_once(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With SUSPICIOUS_GRACE_S=0 an unknown issuance is suspicious immediately."""
        async with world(tmp_path / "db", grace=0) as w:
            await w.see(ca.issue(["a.example.org"]).message())
            (alert,) = await w.alerts()
            assert alert.severity == "suspicious"

    async def test_registration_during_the_hold_gives_one_info(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A deploy hook registering the cert during the hold turns the alert into `info`."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db") as w:
            await w.see(issuance.message("go-tiled"))
            await trio.sleep(GRACE / 2)
            await w.register(row(issuance))
            await trio.sleep(GRACE * 2)
            (alert,) = await w.alerts()
            assert (alert.severity, alert.status) == ("info", "pending")
            assert len(w.queued()) == 1

    async def test_registration_after_suspicious_sends_a_follow_up(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A late registration resolves a suspicious alert with a `resolved` follow-up event."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db") as w:
            await w.see(issuance.message("go-tiled"))
            await trio.sleep(GRACE + 1)
            await w.register(row(issuance))
            await w.register(row(issuance))  # a second push resolves nothing twice
            original, follow_up = await w.alerts()
            assert original.severity == "suspicious"
            assert original.resolved_by is not None
            assert original.resolved_by.evidence == "serial_and_names"
            assert follow_up.kind == "resolved"
            assert follow_up.parent_id == original.id
            assert follow_up.issuance == original.issuance
            assert follow_up.severity == "info"
            assert w.queued() == [original.id, follow_up.id]

    async def test_registered_key_decides_new_issuances(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A key registered in advance recognises an issuance with it, not one with another key."""
        ours = ca.issue(["a.example.org"])
        async with world(tmp_path / "db", grace=0) as w:
            key = KnownKey(ours.spki_sha256(), ("a.example.org",))
            await w.views.upsert_key(key)
            await w.see(ours.message("go-full"))
            await w.see(ca.issue(["a.example.org"]).message("go-full"))
            ok, bad = await w.alerts()
            assert ok.severity == "info"
            assert ok.recognised_by is not None
            assert ok.recognised_by.evidence == "key"
            assert bad.severity == "suspicious"


class HeldReadsWait:
    """A store whose next read of the held alerts, once armed, waits with what it read until
    the test lets it go (what a slow shared database does to the leader's read)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self.armed = False
        self.reading = trio.Event()
        self.go = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def held_alerts(self) -> list[Alert]:
        held = await self._store.held_alerts()
        if self.armed:
            self.armed = False
            self.reading.set()
            await self.go.wait()
        return held


class TestSharedStore:
    async def test_a_hold_decided_during_the_leaders_read_is_not_held_again(
        self, tmp_path: Path, ca: CA
    ) -> None:
        """A hold decided while the leader reads the held alerts stays decided, not held."""
        issuance = ca.issue(["a.example.org"])
        wrappers: list[HeldReadsWait] = []

        def wrap(store: SQLiteStore) -> AlerterStore:
            wrappers.append(HeldReadsWait(store))
            return cast(AlerterStore, wrappers[0])

        async with world(tmp_path / "db", adopt_every_s=0.2, seen_by_alerter=wrap) as w:
            slow = wrappers[0]
            await w.see(issuance.message("go-tiled"))
            await trio.testing.wait_all_tasks_blocked()  # held; the leader waits for its next read
            assert w.alerter.held == 1
            slow.armed = True
            await slow.reading.wait()  # the leader has read the held alert, and waits
            await w.register(row(issuance))  # decided meanwhile: info
            slow.go.set()
            await trio.testing.wait_all_tasks_blocked()  # the leader took up what is held
            assert w.alerter.held == 0
            (alert,) = await w.alerts()
            assert (alert.severity, alert.status) == ("info", "pending")


class TestDedupe:
    async def test_copies_of_one_issuance_make_one_alert(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Three log copies and the final cert of one issuance are one alert."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db", grace=0) as w:
            await w.see(issuance.message("go-full", log_url="https://log-a"))
            await w.see(issuance.message("go-tiled", log_url="https://log-b"))
            await w.see(issuance.message("elixir", log_url="https://log-c"))
            await w.see(issuance.message("go-full", which="final"))
            assert len(await w.alerts()) == 1
            assert w.alerter.remembered == 1

    async def test_distinct_tiled_issuances_are_distinct_alerts(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Tiled precerts of three issuances (all with the blank fingerprint) are three alerts."""
        async with world(tmp_path / "db", grace=0) as w:
            for _ in range(3):
                await w.see(ca.issue(["a.example.org"]).message("go-tiled"))
            assert len(await w.alerts()) == 3

    async def test_a_later_copy_that_is_recognised_decides_a_held_alert(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A held tiled precert is decided `info` by its copy whose DER shows our registered key."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db") as w:
            await w.views.upsert_key(KnownKey(issuance.spki_sha256(), ("a.example.org",)))
            await w.see(issuance.message("go-tiled"))  # no DER: the key cannot be seen
            assert (await w.alerts())[0].status == "held"
            await w.see(issuance.message("go-full"))
            (alert,) = await w.alerts()
            assert alert.severity == "info"

    async def test_restart_between_copies_still_one_alert(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An issuance alerted before a restart is not alerted again by a copy after it."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db", grace=0) as w:
            await w.see(issuance.message("go-full"))
        async with world(tmp_path / "db", grace=0) as w:
            assert w.alerter.remembered == 1
            await w.see(issuance.message("go-tiled"))
            assert len(await w.alerts()) == 1

    async def test_restart_during_the_hold_still_decides(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A held alert survives a restart and is decided when its grace ends."""
        async with world(tmp_path / "db") as w:
            await w.see(ca.issue(["a.example.org"]).message())
            await trio.sleep(GRACE / 2)
        async with world(tmp_path / "db") as w:
            assert w.alerter.held == 1
            await trio.sleep(GRACE)
            (alert,) = await w.alerts()
            assert (alert.status, alert.severity) == ("pending", "suspicious")
            assert w.queued() == [alert.id]


class TestCleanup:
    async def test_ticker_expires_certs_and_alerts(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Each tick removes certs past not_after + grace and old alerts, from memory too."""
        old, fresh = ca.issue(["old.example.org"]), ca.issue(["new.example.org"])
        now = virtual_wall_clock()
        async with world(tmp_path / "db", grace=0) as w:
            await w.register(row(old, not_after=int(now) + 1000))
            await w.register(row(fresh, not_after=int(now) + 10 * 86400))
            await w.see(old.message())
            cleanup = Cleanup(
                w.store,
                w.views,
                w.alerter,
                interval_s=3600,
                cert_grace_s=86400,
                alert_retention_s=3 * 86400,
                clock=virtual_wall_clock,
            )
            w.nursery.start_soon(cleanup.run)
            await trio.sleep(86400 + 1000 - 1)
            assert len(w.inventory) == 2
            await trio.sleep(3600)  # the next tick
            assert len(w.inventory) == 1
            assert [c.fingerprint_sha1 for c in await w.store.list_certs(1000, 0)] == [
                fresh.final_sha1
            ]
            # The alert is still pending (not delivered): cleanup never drops it.
            await trio.sleep(3 * 86400)
            assert len(await w.alerts()) == 1
            alert = (await w.alerts())[0]
            assert alert.id is not None
            await w.store.record_attempt(
                alert.id, status=Status.DELIVERED, error=None, now=virtual_wall_clock()
            )
            await trio.sleep(3600)
            assert await w.alerts() == []
            assert w.alerter.remembered == 0

    async def test_only_settled_alerts_expire_counting_from_when_they_were_stored(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Only delivered and observed alerts past retention go, counted from when stored."""
        # Held, pending and failed never do; a fresh alert whose feed says `seen` 40 days ago stays.
        now = virtual_wall_clock()
        day = 86400.0
        async with world(tmp_path / "db", grace=0) as w:
            ids = {}
            for n, (status, created_days_ago, seen_days_ago) in enumerate(
                [
                    ("delivered", 31, 31),
                    ("observed", 31, 31),
                    ("held", 31, 31),
                    ("pending", 31, 31),
                    ("failed", 31, 31),
                    ("delivered", 1, 40),  # the feed's clock says 40 days ago
                    ("delivered", 29, 29),
                ]
            ):
                alert = attrs.evolve(
                    pending_alert(n, now),
                    status=Status(status),
                    created_at=now - created_days_ago * day,
                    seen_at=now - seen_days_ago * day,
                    decide_at=now if status == "held" else None,
                )
                ids[(status, created_days_ago)] = (await w.store.insert_alert(alert)).id
            cleanup = Cleanup(
                w.store, w.views, w.alerter,
                interval_s=3600, cert_grace_s=0, alert_retention_s=30 * day,
                clock=virtual_wall_clock,
            )  # fmt: skip
            report = await cleanup.run_once()
            kept = {a.id for a in await w.store.list_alerts(limit=100)}
        assert report.alerts == 2
        assert kept == {
            ids[("held", 31)],
            ids[("pending", 31)],
            ids[("failed", 31)],
            ids[("delivered", 1)],
            ids[("delivered", 29)],
        }

    async def test_large_backlog_is_removed_in_batches(
        self, tmp_path: Path, ca: CA, autojump_clock: trio.testing.MockClock
    ) -> None:
        """More expired rows than one batch are all removed by one run."""
        issuance = ca.issue(["a.example.org"])
        async with world(tmp_path / "db", grace=0) as w:
            for i in range(1234):
                cert = row(issuance, fingerprint_sha1=f"{i:040x}", not_after=1000, not_before=1)
                await w.views.upsert_cert(cert)
            cleanup = Cleanup(
                w.store, w.views, w.alerter,
                interval_s=3600, cert_grace_s=0, alert_retention_s=86400,
                clock=virtual_wall_clock,
            )  # fmt: skip
            report = await cleanup.run_once()
            assert report.certs == 1234
            assert len(w.inventory) == 0

    async def test_change_log_is_kept_for_its_retention_only(self, tmp_path: Path) -> None:
        """Cleanup deletes the views' change log past its retention, and keeps newer changes."""
        async with world(tmp_path / "db", grace=0, clock=time.time) as w:
            for i in range(PRUNE_BATCH + 5):  # more than one batch
                await w.views.add_domain(f"d{i}.example.org", "", time.time())
            last = await w.store.last_change()
            cleanup = Cleanup(
                w.store, w.views, w.alerter,
                interval_s=3600, cert_grace_s=0, alert_retention_s=86400,
            )  # fmt: skip
            assert (await cleanup.run_once()).changes == 0  # all within retention
            # Those changes were made longer ago than the retention (the triggers stamp
            # the database's own time, so the rows are aged rather than the clock moved).
            with contextlib.closing(sqlite3.connect(tmp_path / "db")) as conn, conn:
                conn.execute("UPDATE changes SET at = at - ?", (CHANGES_RETENTION_S + 60,))
            await w.views.add_domain("new.example.org", "", time.time())
            report = await cleanup.run_once()
            assert report.changes == PRUNE_BATCH + 5
            assert [c.key for c in await w.store.changes_since(0)] == ["new.example.org"]
            assert await w.store.last_change() == last + 1
