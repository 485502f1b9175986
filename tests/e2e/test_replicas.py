"""Three certwatch processes on one PostgreSQL database: one alert per issuance, deliveries
that survive kill -9, views that follow each other, a database that restarts.

Each replica reads a feed of its own (the test sends every message to all of them), all
deliver to one webhook receiver. The replicas run with production timings (they are
separate processes): a dead replica's delivery claim expires after the webhook timeout
(2 s here) plus 10 s, and replicas look at the outbox every 5 s.
"""

from __future__ import annotations

import collections
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from certwatch.store.postgres import PostgresStore
from tests.support.certs import CA, Issuance
from tests.support.postgres import PostgresCluster
from tests.support.replicas import Fleet, open_fleet
from tests.support.servers import Receiver
from tests.support.service import TOKEN

pytestmark = pytest.mark.slow

WATCHED = "fleet.example"


@pytest.fixture
async def fleet(
    nursery: trio.Nursery, tmp_path: Path, pg_url: str, receiver: Receiver
) -> AsyncIterator[Fleet]:
    """Three replicas, started and ready, with the database and receiver they share."""
    env = {
        **os.environ,
        "API_TOKEN": TOKEN,
        "DATABASE_URL": pg_url,
        "WEBHOOK_URL": receiver.url,
        "WEBHOOK_TIMEOUT_S": "2",
        "SUSPICIOUS_GRACE_S": "1",
        "CT_BACKFILL": "0",
        "LOG_LEVEL": "INFO",
    }
    async with open_fleet(nursery, env, tmp_path, watch=WATCHED) as fleet:
        yield fleet


async def delivered(receiver: Receiver, issuances: list[Issuance]) -> dict[str, set[str]]:
    """Wait until every issuance has been delivered; its event ids by issuance."""
    wanted = {f"{i.serial:x}" for i in issuances}
    with trio.fail_after(120):
        while True:
            events: dict[str, set[str]] = collections.defaultdict(set)
            for delivery in receiver.deliveries:
                events[delivery.serial].add(delivery.headers["webhook-id"])
            if wanted <= events.keys():
                return events
            await receiver.wait_for(len(receiver.deliveries) + 1)


async def stored_alerts(pg_url: str) -> list[Any]:
    store = await PostgresStore.open(pg_url)
    try:
        return await store.list_alerts(limit=1000)
    finally:
        store.close()


async def test_every_issuance_is_one_event_across_the_fleet(
    fleet: Fleet, receiver: Receiver, ca: CA, pg_url: str
) -> None:
    """Three replicas see every certificate: each issuance stored once, one event id."""
    issuances = [ca.issue([f"www{n}.{WATCHED}"]) for n in range(20)]
    for issuance in issuances:
        await fleet.send(issuance.message("go-full"))
    events = await delivered(receiver, issuances)
    assert all(len(ids) == 1 for ids in events.values()), events
    alerts = await stored_alerts(pg_url)
    assert len(alerts) == 20
    assert len({a.issuance for a in alerts}) == 20


async def test_killing_the_leader_ten_times_loses_nothing(
    fleet: Fleet, receiver: Receiver, ca: CA, pg_url: str
) -> None:
    """kill -9 of the leader ten times mid-stream: each issuance stored and delivered once."""
    # The leader runs the hold timer and cleanup; it is started again after each kill.
    issuances = []
    for round_ in range(10):
        batch = [ca.issue([f"r{round_}n{n}.{WATCHED}"]) for n in range(3)]
        issuances.extend(batch)
        for issuance in batch:
            await fleet.send(issuance.message("go-full"))
        leader = await fleet.leader()
        leader.kill()
        leader.start()
        await leader.wait_ready()
    events = await delivered(receiver, issuances)
    assert all(len(ids) == 1 for ids in events.values()), events
    alerts = await stored_alerts(pg_url)
    assert len(alerts) == len(issuances) == 30
    assert {a.status for a in alerts} == {"delivered"}


async def test_a_push_to_one_replica_is_recognised_by_another_within_2_s(
    fleet: Fleet, receiver: Receiver, ca: CA
) -> None:
    """A certificate pushed to replica A is recognised by replica B within 2 s."""
    a, b, _ = fleet.replicas
    issuance = ca.issue([f"api.{WATCHED}"])
    before = (await b.health())["known_fingerprints"]
    started = trio.current_time()
    response = await a.client.post("/certs", json={"pem": issuance.final_pem()})
    assert response.status_code == 201, response.text
    with trio.fail_after(10):
        # B is another process: its views are only seen through its API.
        while (await b.health())["known_fingerprints"] == before:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert trio.current_time() - started <= 2.0
    await b.feed.send(issuance.message("go-full"))  # only B sees it
    [delivery] = await receiver.wait_for(1)
    assert delivery.json()["severity"] == "info"


async def test_a_database_restart_mid_stream_loses_nothing(
    fleet: Fleet, receiver: Receiver, ca: CA, pg_url: str, postgres: PostgresCluster
) -> None:
    """PostgreSQL restarting mid-stream: replicas reconnect and every issuance arrives once."""
    # Alerts wait for the database, as with a locked SQLite file.
    issuances = [ca.issue([f"db{n}.{WATCHED}"]) for n in range(20)]
    for issuance in issuances[:10]:
        await fleet.send(issuance.message("go-full"))
    await trio.to_thread.run_sync(postgres.restart)
    for issuance in issuances[10:]:
        await fleet.send(issuance.message("go-full"))
    events = await delivered(receiver, issuances)
    assert all(len(ids) == 1 for ids in events.values()), events
    assert len(await stored_alerts(pg_url)) == 20
    for replica in fleet.replicas:
        assert (await replica.health())["database"]["ok"]
