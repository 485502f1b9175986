"""CT logs that fail, stall, lie or fork, and lookups aimed at them: each log on its own
budget, so no log delays another's back-fill or lookups, and a log that lies is caught.
The whole service, real CT logs (real Merkle trees and signatures) and peers on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from certwatch.store import open_store
from tests.support.backfill import (
    WATCHED,
    coverage,
    errors,
    hijack,
    send_range,
    settled,
    start_log,
    watching,
)
from tests.support.certs import CA
from tests.support.ctlog import TestLog, backfill_settings, message_for
from tests.support.servers import FeedServer, Receiver, SilentServer
from tests.support.service import wait_until


async def test_failing_logs_never_delay_another_logs_backfill(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Four logs answering 503 for hours leave a turn to a fifth: its hijack is back-filled."""
    # The four used to hold every back-fill turn through their retries (6 h per gap).
    failing = [await start_log(nursery, "rfc6962", name=f"down{n}") for n in range(4)]
    genuine = await start_log(nursery, "rfc6962", name="genuine")
    for log in failing:
        log.add_filler(10)
    genuine.add_filler(5)
    assert genuine.add_issuance(hijack(ca)) == 5
    genuine.add_filler(4)
    settings = backfill_settings(
        tmp_path, feed, receiver, *failing, genuine, ct_backfill_retry_period_s=21600.0
    )
    async with watching(settings) as service:
        for log in failing:
            await feed.send(message_for(log, 0))
            log.unavailable = True
            await feed.send(message_for(log, 9))  # a gap it cannot fill

        async def all_failing() -> bool:
            cover = await coverage(service)
            return sum(1 for x in cover["logs"] if x["last_error"]) == 4

        await wait_until(all_failing, within=30)
        await feed.send(message_for(genuine, 0))
        await feed.send(message_for(genuine, 9))  # skips 1-8, the hijack among them
        [delivery] = await receiver.wait_for(1)
        await settled(service, genuine, 9)
    assert delivery.json()["log_index"] == 5


async def test_hostile_lookups_never_delay_a_genuine_one(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Lookups stuck on sixteen silent logs leave a genuine DER-less precert recognised."""
    # They used to fill every lookup slot: the genuine one waited past its grace period, and
    # a certificate recognised by its registered key paged as suspicious.
    silent = [await SilentServer().start(nursery) for _ in range(16)]
    log = await start_log(nursery, "tiled")
    ours = ca.issue([f"api.{WATCHED}"])
    log.add_filler(3)
    assert log.add_issuance(ours) == 3
    settings = backfill_settings(tmp_path, feed, receiver, log, suspicious_grace_s=5.0)
    async with watching(settings) as service:
        await service.client.post(
            "/keys", json={"pem": ours.public_key_pem(), "names": [f"api.{WATCHED}"]}
        )
        for n, server in enumerate(silent):
            hostile = ca.issue([f"h{n}.{WATCHED}"]).message("go-tiled", index=1)
            hostile["data"]["source"]["url"] = server.url(f"log{n}").rstrip("/")
            hostile["data"]["source"]["type"] = "tiled"
            await feed.send(hostile)

        async def all_stuck() -> bool:
            return sum(server.connections for server in silent) >= 16

        await wait_until(all_stuck, within=30)
        await feed.send(message_for(log, 3, ours))  # go-tiled: no DER, so a lookup
        await receiver.wait_for(17)
        by_name = {d.json()["matched_sans"][0]: d.json() for d in receiver.deliveries}
    assert by_name[f"api.{WATCHED}"]["severity"] == "info"
    assert by_name[f"api.{WATCHED}"]["recognised_by"]["evidence"] == "key"
    assert {by_name[f"h{n}.{WATCHED}"]["severity"] for n in range(16)} == {"suspicious"}


async def test_copies_of_one_der_less_frame_are_one_lookup(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A thousand copies of one DER-less frame make one lookup, not a thousand."""
    # 80,000 copies used to add 296 MB of waiting lookups.
    silent = await SilentServer().start(nursery)
    message = ca.issue([f"api.{WATCHED}"]).message("go-tiled", index=7)
    message["data"]["source"]["url"] = silent.url("log").rstrip("/")
    message["data"]["source"]["type"] = "tiled"
    settings = backfill_settings(tmp_path, feed, receiver)
    async with watching(settings) as service:
        for _ in range(1000):
            await feed.send(message)

        async def processed() -> bool:
            health = (await service.client.get("/healthz")).json()
            return bool(health["feed"]["processed"] >= 1000)

        await wait_until(processed, within=60)
        lookups = (await coverage(service))["lookups"]
    assert lookups == 1
    assert len(receiver.deliveries) <= 1  # one issuance, one alert (if already decided)


async def head_saved(settings: Any) -> None:
    """Wait until a log's verified tree head is saved with its position."""

    async def saved() -> bool:
        store = await open_store(settings)
        try:
            return any(p.head is not None for p in await store.log_positions())
        finally:
            store.close()

    await wait_until(saved, within=30)


async def counted(service: Any, log: TestLog, reason: str) -> None:
    """Wait until the log has an error of ``reason`` counted."""

    async def check() -> bool:
        return await errors(service, log, reason) >= 1

    await wait_until(check, within=30)


async def evidence(settings: Any) -> list[Any]:
    store = await open_store(settings)
    try:
        return await store.list_log_evidence()
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
async def test_a_log_that_forks_is_caught_and_certwatch_goes_on(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    kind: str,
) -> None:
    """Another root for entries already signed is counted inconsistent, its evidence kept."""
    log = await start_log(nursery, kind)
    log.add_filler(10)
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await send_range(feed, log, range(10))
        await settled(service, log, 9)
        await head_saved(settings)
        log.fork(3, ca.issue(["forked.example.net"]))  # entry 3 changes: a split view
        log.add_filler(5)
        assert log.add_issuance(hijack(ca)) == 15
        log.add_filler(1)
        await feed.send(message_for(log, 16))  # past the head certwatch knows, with a gap
        await counted(service, log, "inconsistent")
        [delivery] = await receiver.wait_for(1)  # and it goes on: the gap is still filled
        await settled(service, log, 16)
        inconsistent = await errors(service, log, "inconsistent")
    [found] = await evidence(settings)
    assert inconsistent == 1
    assert delivery.json()["log_index"] == 15
    assert (found.log, found.kind) == (log.url, "inconsistent")
    assert found.detail["earlier"]["size"] == 10
    assert found.detail["later"]["size"] == 17
    assert found.detail["problem"] == "no consistency proof leads from one to the other"


async def test_a_log_that_shrinks_is_caught(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver
) -> None:
    """A newer signed tree head of a smaller tree is counted inconsistent."""
    log = await start_log(nursery, "rfc6962")
    log.add_filler(20)
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await send_range(feed, log, range(20))
        await settled(service, log, 19)
        log.shrink(12)
        await feed.send(message_for(log, 20))  # asks for a newer head: a smaller one comes
        await counted(service, log, "inconsistent")
    [found] = await evidence(settings)
    assert found.detail["problem"] == "the later head is of a smaller tree"
    assert (found.detail["earlier"]["size"], found.detail["later"]["size"]) == (20, 12)


async def test_a_fork_while_certwatch_was_stopped_is_caught_at_start(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    backend: dict[str, Any],
) -> None:
    """The last signed head is saved: a log that forked during a restart is caught."""
    log: TestLog = await start_log(nursery, "tiled")
    log.add_filler(300)
    settings = backfill_settings(tmp_path, feed, receiver, log, **backend)
    async with watching(settings) as service:
        await send_range(feed, log, range(290, 300))
        await settled(service, log, 299)
        await head_saved(settings)
    await service.stopped.wait()
    log.fork(100, ca.issue(["forked.example.net"]))
    log.add_filler(3)
    async with watching(settings) as service:
        await counted(service, log, "inconsistent")
        await settled(service, log, 302)
    [found] = await evidence(settings)
    assert (found.detail["earlier"]["size"], found.detail["later"]["size"]) == (300, 303)
