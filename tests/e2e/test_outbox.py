"""At-least-once delivery across receiver outages and certwatch restarts (real sockets)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from certwatch.store.sqlite import SQLiteStore
from tests.support.alerts import pending_alert
from tests.support.certs import CA
from tests.support.servers import FeedServer, HttpPeer, Receiver
from tests.support.service import (
    TOKEN,
    RunningService,
    make_settings,
    run_service,
    wait_until,
    wired,
)
from tests.support.timing import FAST, OUTBOX


async def all_alerts_tried(service: RunningService, count: int, attempts: int) -> None:
    async def tried() -> bool:
        alerts = await service.alerts()
        return len(alerts) == count and all(a["attempts"] >= attempts for a in alerts)

    await wait_until(tried)


async def test_receiver_down_then_back_gets_every_alert_once(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Down past the quick attempts, then answering 503, then back: each alert arrives once."""
    await receiver.down()  # connection refused
    settings = wired(tmp_path, feed, receiver, timing=OUTBOX)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        for i in range(5):
            await feed.send(ca.issue([f"h{i}.example.org"]).message())
        await all_alerts_tried(service, 5, attempts=4)
        assert all(a["status"] == "pending" for a in await service.alerts())
        assert "ConnectError" in (await service.alerts())[0]["last_error"]

        receiver.responses = [503] * 5
        await receiver.start(nursery, port=receiver.port)
        deliveries = await receiver.wait_for(5)
        await wait_until(lambda: _all_delivered(service))
        alerts = await service.alerts()
        assert await service.metric("certwatch_outbox_pending") == 0

    delivered_ids = Counter(d.headers["webhook-id"] for d in deliveries)
    assert sorted(delivered_ids) == sorted(a["event_id"] for a in alerts)
    assert set(delivered_ids.values()) == {1}
    # Every attempt of one alert carried that alert's id.
    by_body = {d.json()["alert_id"]: d.headers["webhook-id"] for _, d in receiver.log}
    for status, delivery in receiver.log:
        assert delivery.headers["webhook-id"] == by_body[delivery.json()["alert_id"]], status


async def _all_delivered(service: RunningService) -> bool:
    return all(a["delivered"] for a in await service.alerts())


async def test_receiver_down_across_a_restart_gets_every_alert(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Receiver down, certwatch restarted, receiver back: pending alerts resume and arrive."""
    await receiver.down()
    settings = wired(tmp_path, feed, receiver, timing=OUTBOX)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        for i in range(3):
            await feed.send(ca.issue([f"h{i}.example.org"]).message())
        await all_alerts_tried(service, 3, attempts=3)
    await receiver.start(nursery, port=receiver.port)
    async with run_service(settings) as service:
        deliveries = await receiver.wait_for(3)
        await wait_until(lambda: _all_delivered(service))
    assert len({d.headers["webhook-id"] for d in deliveries}) == 3


async def test_failed_alerts_can_be_requeued(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """After the retry period an alert is `failed`; an operator re-queues it and it arrives."""
    receiver.responses = [500] * 6
    settings = wired(tmp_path, feed, receiver, timing=OUTBOX, webhook_retry_period_s=0.5)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["a.example.org"]).message())

        async def failed() -> bool:
            alerts = await service.alerts(status="failed")
            return len(alerts) == 1

        await wait_until(failed)
        assert await service.metric("certwatch_outbox_failed") == 1
        (alert,) = await service.alerts(status="failed")
        assert alert["last_error"].startswith("HTTP 500")
        assert alert["delivered_at"] is None
        receiver.responses = []
        response = await service.client.post("/alerts/retry-failed")
        assert response.json() == {"requeued": 1}
        await receiver.wait_for(1)
        await wait_until(lambda: _all_delivered(service))
        (alert,) = await service.alerts(delivered="true")
        assert alert["delivered_at"] is not None
        again = await service.client.post(f"/alerts/{alert['id']}/retry")
        assert again.json() == {"requeued": 1}  # a delivered alert can be sent again on purpose
        await receiver.wait_for(2)
        assert (await service.client.post("/alerts/999/retry")).status_code == 404


async def test_a_big_backlog_with_a_slow_receiver_keeps_memory_bounded(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """1,000 pending alerts and a 2 s receiver: the feed flows, nothing is dropped."""
    # The backlog stays in the database: at most 4 deliveries in flight, nothing queued in
    # memory (rates and memory are measured in benchmarks/outbox_backlog.py).
    receiver.delay = 2.0
    settings = wired(tmp_path, feed, receiver, timing=OUTBOX)
    store = await SQLiteStore.open(settings.db_path)
    await store.upsert_domain("example.org", "", 0.0)
    for n in range(1000):
        await store.insert_alert(pending_alert(n, time.time()))
    store.close()
    async with run_service(settings) as service:
        assert await service.metric("certwatch_outbox_pending") == 1000
        for i in range(500):
            await feed.send(ca.issue(["unwatched.example.com"]).message())
            if i % 50 == 0:
                await feed.send(ca.issue([f"new{i}.example.org"]).message())
        await wait_until(lambda: _processed(service, 510))
        health = (await service.client.get("/healthz")).json()
        assert health["feed"]["dropped"] == 0
        assert health["outbox"]["pending"] >= 1000
        assert receiver.attempts <= len(receiver.deliveries) + 4
        assert len(await service.alerts(limit=1000, status="pending")) == 1000


async def _count(service: RunningService, n: int) -> bool:
    return len(await service.alerts(limit=1000)) == n


async def _processed(service: RunningService, n: int) -> bool:
    return await service.metric('certwatch_ct_messages_total{type="certificate_update"}') >= n


@pytest.mark.slow
async def test_kill_9_at_random_moments_loses_no_stored_alert(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """20 kill -9s while alerts are created and delivered: the DB stays sound, none is lost."""
    rng = random.Random(20261127)
    db = tmp_path / "cw.db"
    env = {
        **os.environ,
        "API_TOKEN": TOKEN,
        "API_PORT": "0",
        "DB_PATH": str(db),
        "CERTSTREAM_URL": feed.url,
        "WEBHOOK_URL": receiver.url,
        "SUSPICIOUS_GRACE_S": "0",
    }
    receiver.delay = 0.002
    store = await SQLiteStore.open(db)
    await store.upsert_domain("example.org", "", 0.0)
    store.close()
    sent = 0
    for round_ in range(20):
        accepted = feed.accepted
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "certwatch"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with trio.fail_after(30):
                await feed.wait_for_connections(accepted + 1)
            for _ in range(rng.randint(1, 8)):
                await feed.send(ca.issue([f"r{round_}-{sent}.example.org"]).message())
                sent += 1
            await trio.sleep(rng.uniform(0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        _check_database(db, receiver)

    # A last, undisturbed run delivers everything still pending.
    proc = await trio.lowlevel.open_process([sys.executable, "-m", "certwatch"], env=env)
    try:

        async def drained() -> bool:
            return _pending(db) == 0

        await wait_until(drained, within=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    stored = _event_ids(db)
    assert stored, "no alert was stored at all"
    assert stored <= {d.headers["webhook-id"] for d in receiver.deliveries}


def _check_database(db: Path, receiver: Receiver) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        acknowledged = {d.headers["webhook-id"] for d in receiver.deliveries}
        for event_id, status in conn.execute("SELECT event_id, status FROM alerts"):
            if event_id not in acknowledged:
                assert status == "pending", (event_id, status)
            else:
                assert status in ("pending", "delivered"), (event_id, status)
    finally:
        conn.close()


def _pending(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM alerts WHERE status = 'pending'").fetchone()[0]
        )
    finally:
        conn.close()


def _event_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {row[0] for row in conn.execute("SELECT event_id FROM alerts")}
    finally:
        conn.close()


async def test_shutdown_does_not_wait_for_a_dead_receiver(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """SIGTERM with a delivery hanging stops at once; the alert goes out after the restart."""
    receiver.delay = 3600
    settings = wired(tmp_path, feed, receiver, timing=OUTBOX)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["a.example.org"]).message())
        await receiver.wait_for(0, attempts=1)  # the delivery is in flight, hanging
        with trio.fail_after(FAST.shutdown_grace_s + 3):
            service.shutdown.set()
            await service.stopped.wait()
    receiver.delay = 0
    async with run_service(settings) as service:
        (delivery,) = await receiver.wait_for(1)
        await wait_until(lambda: _all_delivered(service))
    assert delivery.json()["matched_sans"] == ["a.example.org"]


async def test_a_receivers_error_body_with_nul_is_recorded_on_every_backend(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    ca: CA,
    backend: dict[str, Any],
) -> None:
    """A 500 whose body holds NUL is recorded as U+FFFD; the quick retries go on."""
    # It used to become "internal error: StoreError" on PostgreSQL, skipping the retries.
    peer = await HttpPeer().start(nursery)
    peer.routes["hook"] = (500, {"Content-Type": "text/plain"}, b"bad\x00body")
    settings = make_settings(
        tmp_path, certstream_url=feed.url, webhook_url=peer.url("hook"), timing=OUTBOX, **backend
    )
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["www.example.org"]).message())
        await peer.wait_for(3)
        await all_alerts_tried(service, 1, attempts=3)
        [alert] = await service.alerts()
    assert alert["last_error"] == "HTTP 500: bad\ufffdbody"
    assert alert["status"] == "pending"


async def test_on_sqlite_a_restart_delivers_at_once_not_after_the_old_lease(
    tmp_path: Path, receiver: Receiver
) -> None:
    """An alert a killed process had claimed is delivered at once after a restart."""
    # One process owns the file: the previous run's claims are its own, and void.
    settings = make_settings(tmp_path, webhook_url=receiver.url, timing=OUTBOX)
    store = await SQLiteStore.open(settings.db_path)
    try:
        pending = await store.insert_alert(pending_alert(1, time.time()))
        claimed = await store.claim(
            pending.id or 0, time.time(), claimer="dead:1", until=time.time() + 3600
        )
        assert claimed.alert is not None
    finally:
        store.close()
    async with run_service(settings):
        with trio.fail_after(10):  # the lease had an hour to run
            [delivery] = await receiver.wait_for(1)
    assert delivery.headers["webhook-id"] == pending.event_id
