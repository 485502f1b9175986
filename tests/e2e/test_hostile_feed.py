"""A feed that lies: indexes no log can have, text no database can hold, URLs that are not
CT logs. The whole service on each database backend, a real WebSocket feed, real CT logs
and other peers on loopback; certwatch stays up, keeps every alert, and keeps seeing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from certwatch.core.coverage import PLAUSIBLE_GROWTH
from certwatch.core.ctlog import MAX_TREE_SIZE
from certwatch.http.routes.health import UNLISTED_ERROR
from certwatch.store import SavedPosition, open_store
from tests.support.backfill import (
    WATCHED,
    coverage,
    errors,
    followed,
    hijack,
    log_health,
    send_range,
    settled,
    start_log,
    watching,
)
from tests.support.certs import CA
from tests.support.ctlog import TestLog, backfill_settings, message_for
from tests.support.servers import FeedServer, HttpPeer, Receiver
from tests.support.service import RunningService, make_settings, wait_until


async def coerced(service: RunningService) -> float:
    return await service.metric('certwatch_ct_coerced_fields_total{field="cert_index"}')


async def position_is(service: RunningService, log: TestLog, position: int) -> None:
    async def check() -> bool:
        entry = await followed(service, log)
        return entry is not None and entry["position"] == position

    await wait_until(check, within=30)


async def test_indexes_no_log_can_have_are_no_indexes(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    backend: dict[str, Any],
) -> None:
    """Negative, 2^63, 1e19 and 20-digit indexes are dropped and counted; nothing hangs."""
    # A DER-less watched tiled precert at index -5 used to spin the tile path for ever; a
    # gap from -300 to 5, or an index of 2^63 saved as a position, stopped the process.
    log = await start_log(nursery, "tiled")
    log.add_filler(6)
    der_less = ca.issue([f"api.{WATCHED}"])
    settings = backfill_settings(tmp_path, feed, receiver, log, **backend)
    async with watching(settings) as service:
        await send_range(feed, log, range(5))
        for bad in (-5, -300, 2**63, 1e19, "99999999999999999999"):
            message = message_for(log, 0, der_less if bad == -5 else None)
            message["data"]["cert_index"] = bad
            await feed.send(message)
        nul_url = message_for(log, 3)
        nul_url["data"]["source"]["url"] = log.source_url + "\x00"  # on PostgreSQL too
        await feed.send(nul_url)
        await feed.send(message_for(log, 5))
        [alert] = await receiver.wait_for(1)  # the DER-less precert, without its index
        await settled(service, log, 5)
        with trio.fail_after(1.5):
            health = await service.client.get("/healthz")
        assert await coerced(service) == 5
        assert await service.metric("certwatch_ct_untracked_total") == 1
    await service.stopped.wait()
    # Positions were saved: a restart back-fills what the log grew meanwhile.
    log.add_filler(2)
    assert log.add_issuance(hijack(ca)) == 8
    async with watching(settings) as service:
        [_, backfilled] = await receiver.wait_for(2)
        await settled(service, log, 8)
    assert health.status_code == 200
    assert alert.json()["log_index"] is None
    assert alert.json()["severity"] == "suspicious"
    assert backfilled.json()["log_index"] == 8
    assert not [path for path in log.requests if "-" in path]


async def test_an_implausible_index_for_a_real_log_is_refused(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    backend: dict[str, Any],
) -> None:
    """An index past the log's signed tree is refused and counted; gaps are still found."""
    # One frame claiming 2^40 - 1 for a real log turned gap detection off for good.
    log = await start_log(nursery, "rfc6962")
    log.add_filler(10)
    settings = backfill_settings(tmp_path, feed, receiver, log, **backend)
    async with watching(settings) as service:
        await send_range(feed, log, range(10))
        await settled(service, log, 9)
        await feed.send(message_for(log, MAX_TREE_SIZE - 1))
        log.add_filler(2)
        assert log.add_issuance(hijack(ca)) == 12
        log.add_filler(2)
        await feed.send(message_for(log, 14))  # a real gap: 10-13
        [delivery] = await receiver.wait_for(1)
        await settled(service, log, 14)
        entry = await log_health(service, log)
        refused = await errors(service, log, "implausible_index")
    await service.stopped.wait()
    async with watching(settings) as service:
        await settled(service, log, 14)
    assert delivery.json()["log_index"] == 12
    assert refused == 1
    assert (entry["missed"], entry["backfilled"], entry["unrecovered"]) == (4, 4, 0)


async def test_a_lie_before_any_tree_head_is_cut_back_by_the_first(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A first-ever index past the log's tree is cut back when its signed head arrives."""
    log = await start_log(nursery, "tiled")
    log.add_filler(20)
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await feed.send(message_for(log, MAX_TREE_SIZE - 1))  # the log's first message
        await position_is(service, log, 19)  # its tree head (20) cut the claim back
        await send_range(feed, log, range(10, 20))
        log.add_filler(1)
        assert log.add_issuance(hijack(ca)) == 21
        await feed.send(message_for(log, 22))  # a real gap: 20-21
        [delivery] = await receiver.wait_for(1)
        await settled(service, log, 22)
        entry = await log_health(service, log)
    assert delivery.json()["log_index"] == 21
    assert entry["unrecovered"] == 0


async def test_a_head_with_a_bad_signature_claiming_a_huge_tree_is_not_believed(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    backend: dict[str, Any],
) -> None:
    """At start, a tree head of 2^40 entries whose signature fails opens no gap."""
    log = await start_log(nursery, "rfc6962")
    log.add_filler(5)
    settings = backfill_settings(tmp_path, feed, receiver, log, **backend)
    async with watching(settings) as service:
        await send_range(feed, log, range(5))
        await settled(service, log, 4)
    await service.stopped.wait()
    log.lie_size = MAX_TREE_SIZE
    async with watching(settings) as service:

        async def counted() -> bool:
            return await errors(service, log, "bad_signature") >= 1

        await wait_until(counted, within=30)
        cover = await coverage(service)
        entry = await log_health(service, log)
    assert (cover["pending"], cover["unrecovered"]) == (0, 0)
    assert entry["position"] == 4


async def test_a_saved_position_no_log_can_have_is_not_taken_in(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    backend: dict[str, Any],
) -> None:
    """A saved position of 2^62 with a negative gap is ignored; the log starts afresh."""
    log = await start_log(nursery, "rfc6962")
    log.add_filler(5)
    settings = backfill_settings(tmp_path, feed, receiver, log, **backend)
    store = await open_store(settings)
    try:
        bogus = SavedPosition(log.url, "rfc6962", 2**62, 2**62, ((-5, 3),), 0.0)
        await store.save_log_positions([bogus])
    finally:
        store.close()
    async with watching(settings) as service:
        await send_range(feed, log, range(3, 5))
        await settled(service, log, 4)
        log.add_issuance(hijack(ca))
        log.add_filler(1)
        await feed.send(message_for(log, 6))
        [delivery] = await receiver.wait_for(1)
    assert delivery.json()["log_index"] == 5


async def test_a_saved_position_past_the_logs_tree_is_cut_back(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A saved position past what the log holds (an older certwatch's) is cut back at start."""
    log = await start_log(nursery, "rfc6962")
    log.add_filler(8)
    settings = backfill_settings(tmp_path, feed, receiver, log)
    store = await open_store(settings)
    try:
        high = 4 + PLAUSIBLE_GROWTH + 10
        saved = SavedPosition(log.url, "rfc6962", 4, high, ((5, high),), 0.0)
        await store.save_log_positions([saved])
    finally:
        store.close()
    log.add_issuance(hijack(ca))  # 8
    async with watching(settings) as service:
        [delivery] = await receiver.wait_for(1)  # the downtime 5-8, back-filled
        await settled(service, log, 8)
        entry = await log_health(service, log)
    assert delivery.json()["log_index"] == 8
    assert entry["unrecovered"] == 0


async def test_unlisted_logs_are_read_only_as_ct_logs_and_say_nothing_of_how_they_fail(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver
) -> None:
    """Credentials, queries and other schemes are not followed; failures are not shown."""
    # A hostile feed made certwatch GET any URL, with Basic credentials and the query, and
    # /healthz reported each target's refusal or status: a port scanner.
    peer = await HttpPeer().start(nursery)
    listed = await start_log(nursery, "rfc6962")
    settings = backfill_settings(tmp_path, feed, receiver, listed)
    hostile = [
        f"http://user:secret@127.0.0.1:{peer.port}/creds",
        f"http://127.0.0.1:{peer.port}/query?token=abc",
        f"ftp://127.0.0.1:{peer.port}/other",
    ]
    plain = peer.url("plain").rstrip("/")
    async with watching(settings) as service:
        for url in [*hostile, plain]:
            for index in (0, 10):  # a gap, for back-fill to fill
                message = message_for(listed, index)
                message["data"]["source"]["url"] = url
                await feed.send(message)

        async def plain_failed() -> bool:
            logs = (await coverage(service))["logs"]
            return any(x["log"] == plain and x["last_error"] for x in logs)

        await wait_until(plain_failed, within=30)
        cover = await coverage(service)
        metrics = (await service.client.get("/metrics")).text
    assert cover["untracked"] == 6
    assert [x["log"] for x in cover["logs"] if not x["listed"]] == [plain]
    [entry] = [x for x in cover["logs"] if x["log"] == plain]
    assert entry["last_error"] == UNLISTED_ERROR
    paths = {path.split("?")[0] for _, path, _ in peer.requests}
    assert paths == {"/plain/ct/v1/get-sth"} or paths <= {
        "/plain/ct/v1/get-sth",
        "/plain/ct/v1/get-entries",
    }
    assert all("authorization" not in headers for _, _, headers in peer.requests)
    assert all("token" not in path for _, path, _ in peer.requests)
    reasons = {
        line.split('reason="')[1].split('"')[0]
        for line in metrics.splitlines()
        if line.startswith("certwatch_ct_log_errors_total{") and plain in line
    }
    assert reasons == {"unlisted"}


async def test_control_characters_in_a_log_url_reach_no_label(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver
) -> None:
    """source.url with ESC, a newline or NUL is not followed, so never a metric label."""
    log = await start_log(nursery, "rfc6962")
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        for url in (
            "http://a.example/\x1b[31mred",
            "http://b.example/x\ny",
            "http://c.example/\x00",
        ):
            message = message_for(log, 1)
            message["data"]["source"]["url"] = url
            await feed.send(message)
        await feed.send(message_for(log, 0))
        await settled(service, log, 0)
        metrics = (await service.client.get("/metrics")).text
        untracked = await service.metric("certwatch_ct_untracked_total")
    assert untracked == 3
    assert not any(c in metrics for c in "\x1b\x00")
    assert "a.example" not in metrics
    assert "b.example" not in metrics


async def test_nul_in_a_watched_certificates_text_is_stored_and_delivered(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    backend: dict[str, Any],
) -> None:
    """A NUL in the fingerprint, issuer and log name is stored as U+FFFD on every backend."""
    # On PostgreSQL both replicas exited 1: a text column cannot hold NUL.
    log = await start_log(nursery, "rfc6962")
    settings = backfill_settings(tmp_path, feed, receiver, log, **backend)
    message = hijack(ca).message("go-full", log_url=log.url, index=0)
    leaf = message["data"]["leaf_cert"]
    leaf["fingerprint"] = "AB:\x00" + leaf["fingerprint"]
    leaf["issuer"]["O"] = "Evil\x00Corp"
    message["data"]["source"]["name"] = "log\x00name"
    async with watching(settings) as service:
        await feed.send(message)
        [delivery] = await receiver.wait_for(1)
        [stored] = await service.alerts()
    event = delivery.json()
    assert event["issuer_o"] == "Evil\ufffdCorp"
    assert event["source_log"] == "log\ufffdname"
    assert stored["fingerprint"].startswith("ab\ufffd")


async def test_json_with_control_characters_in_strings_never_stops_the_pipeline(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Frames with control characters anywhere are processed; the next alert still goes out."""
    settings = backfill_settings(tmp_path, feed, receiver)
    async with watching(settings) as service:
        for text in ("\x00", "\x1b[2J", "\u202e", "\ud7ff"):
            message = ca.issue([f"x.{WATCHED}"]).message("go-full", index=1)
            message["data"]["source"]["url"] = text
            message["data"]["leaf_cert"]["subject"]["CN"] = text
            message["data"]["update_type"] = text
            await feed.send(json.dumps(message))
        await receiver.wait_for(4)
        health = (await service.client.get("/healthz")).json()
    assert health["feed"]["processed"] == 4
    assert len(receiver.deliveries) == 4


@pytest.mark.parametrize("value", ["a\x00b", "bell\x07", "esc\x1b[0m"])
async def test_control_characters_in_text_fields_are_422_on_every_backend(
    tmp_path: Path, backend: dict[str, Any], value: str, ca: CA
) -> None:
    """A NUL or another control character in a note or source is 422 naming the field."""
    # PostgreSQL answered 503 "database unavailable" where SQLite answered 201.
    settings = make_settings(tmp_path, **backend)
    issuance = ca.issue([f"www.{WATCHED}"])
    async with watching(settings) as service:
        domain = await service.client.post("/domains", json={"value": "a.example", "note": value})
        cert = await service.client.post(
            "/certs", json={"pem": issuance.final_pem(), "source": value}
        )
        pushed = await service.client.post(
            "/certs",
            params={"source": value},
            content=issuance.final_pem(),
            headers={"content-type": "application/x-pem-file"},
        )
        key = await service.client.post(
            "/keys", json={"pem": issuance.public_key_pem(), "names": ["a.example"], "note": value}
        )
        listed = await service.client.get("/domains")
    for response, field in ((domain, "note"), (cert, "source"), (pushed, "source"), (key, "note")):
        assert response.status_code == 422, response.text
        assert response.json()["fields"][0]["field"] == field
        assert "control characters" in response.json()["fields"][0]["problem"]
    assert listed.json() == [
        {"value": WATCHED, "note": "", "added_at": listed.json()[0]["added_at"]}
    ]
