"""End to end through the real supervisor: WebSocket feed, SQLite file, Hypercorn, webhook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.certs import CA, unrelated_message
from tests.support.servers import FeedServer, Receiver
from tests.support.service import make_settings, run_service, wait_until, wired

CONTRACT_FIELDS = {
    "fingerprint_sha1",
    "severity",
    "matched_entries",
    "matched_sans",
    "all_sans",
    "issuer_o",
    "issuer_cn",
    "not_before",
    "not_after",
    "lifetime_days",
    "source_log",
    "cert_link",
    "serial",
    "update_type",
    "seen_at",
}


async def test_unknown_cert_on_watched_name_sends_one_suspicious_webhook(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """An unknown cert for a watched name is one `suspicious` webhook, every field right."""
    issuance = ca.issue(["api.example.net", "*.api.example.net", "www.example.net"])
    message = issuance.message("go-full", seen=1795821670.25)
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.net")
        await feed.send(message)
        (delivery,) = await receiver.wait_for(1)

    body = delivery.json()
    assert body.keys() >= CONTRACT_FIELDS
    leaf = message["data"]["leaf_cert"]
    assert body["severity"] == "suspicious"
    assert body["fingerprint_sha1"] == leaf["fingerprint"].replace(":", "").lower()
    assert body["matched_entries"] == ["example.net"]
    assert body["matched_sans"] == ["*.api.example.net", "api.example.net", "www.example.net"]
    assert body["all_sans"] == leaf["all_domains"]
    assert body["issuer_o"] == "Example Trust Services"
    assert body["issuer_cn"] == "ETS R1"
    assert body["not_before"] == leaf["not_before"]
    assert body["not_after"] == leaf["not_after"]
    assert body["lifetime_days"] == round((leaf["not_after"] - leaf["not_before"]) / 86400, 2)
    assert body["source_log"] == "Example 'Quokka2026h2' log"
    assert body["cert_link"] == message["data"]["cert_link"]
    assert body["serial"] == leaf["serial_number"]
    assert body["update_type"] == "PrecertLogEntry"
    assert body["seen_at"] == 1795821670.25
    assert delivery.headers["content-type"] == "application/json"


async def test_inventoried_cert_sends_info(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A certificate the LB pushed to the inventory gives an `info` event."""
    issuance = ca.issue(["shop.example.org"])
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        pushed = await service.client.post("/certs", json=issuance.push())
        assert pushed.status_code == 201, pushed.text
        await feed.send(issuance.message("go-full", which="final"))
        (delivery,) = await receiver.wait_for(1)
        (alert,) = await service.alerts()
    assert delivery.json()["severity"] == "info"
    assert alert["severity"] == "info"
    assert alert["delivered"] is True


async def test_unwatched_and_repeated_certs_send_nothing_more(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """An unwatched cert sends nothing and the same cert seen twice sends one event."""
    first = ca.issue(["a.example.org"])
    marker = ca.issue(["marker.example.org"])
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(first.message("go-full"))
        await feed.send(unrelated_message("www.example.org.evil.test"))
        await feed.send(first.message("go-full"))  # the same precert again
        await feed.send(marker.message("go-full"))  # processed after the three above
        await receiver.wait_for(2)
        alerts = await service.alerts()
    assert {a["matched"][0] for a in alerts} == {"example.org"}
    assert len(alerts) == 2
    assert all(a["delivered"] for a in alerts)
    assert sorted(d.json()["all_sans"] for d in receiver.deliveries) == [
        ["a.example.org"],
        ["marker.example.org"],
    ]


async def test_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Two failed attempts are retried; the third delivers and the alert shows delivered."""
    receiver.responses = [500, 503]
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["x.example.org"]).message())
        await receiver.wait_for(1)
        assert receiver.attempts == 3

        async def delivered() -> bool:
            (alert,) = await service.alerts()
            return bool(alert["delivered"])

        await wait_until(delivered)
        (alert,) = await service.alerts()
        assert alert["attempts"] == 3
        assert await service.metric('certwatch_webhook_total{result="failure"}') == 2
        assert await service.metric('certwatch_webhook_total{result="success"}') == 1
        assert await service.metric("certwatch_webhook_duration_seconds_count") == 3


async def test_receiver_that_always_fails_leaves_the_alert_undelivered(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """After three failed attempts the alert is stored as not delivered, with the error."""
    receiver.responses = [500, 500, 500]
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["x.example.org"]).message())
        await receiver.wait_for(0, attempts=3)

        async def three_attempts_recorded() -> bool:
            (alert,) = await service.alerts()
            return bool(alert["attempts"] == 3)

        await wait_until(three_attempts_recorded)
        (alert,) = await service.alerts()
    assert alert["delivered"] is False
    assert alert["status"] == "pending"
    assert alert["last_error"].startswith("HTTP 500")
    assert receiver.deliveries == []


async def test_feed_reconnects_after_the_server_drops_it(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """When the feed server drops the connection, certwatch reconnects and later certs alert."""
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.wait_for_connections(1)
        await feed.drop()
        await feed.wait_for_connections(2)
        await feed.send(ca.issue(["after.example.org"]).message())
        (delivery,) = await receiver.wait_for(1)
        health = (await service.client.get("/healthz")).json()
    assert delivery.json()["all_sans"] == ["after.example.org"]
    assert health["feed"]["connected"] is True
    assert health["feed"]["connections"] == 2


async def test_garbage_frames_are_counted_and_skipped(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Malformed frames are counted by reason and the consumer keeps going."""
    settings = wired(tmp_path, feed, receiver)
    garbage: list[str | bytes] = [
        "not json at all",
        "[1, 2, 3]",
        '{"message_type": "certificate_update", "data": {"leaf_cert": {"all_domains": 7}}}',
        '{"message_type": "surprise", "data": {}}',
        b"\xff\xfe binary junk",
        "[" * 5000 + "]" * 5000,
    ]
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        for frame in garbage:
            await feed.send(frame)
        await feed.send({"message_type": "heartbeat", "timestamp": 1.0})
        await feed.send(ca.issue(["after.example.org"]).message())
        await receiver.wait_for(1)
        metric = service.metric
        assert await metric('certwatch_ct_messages_total{type="malformed"}') == 5
        assert await metric('certwatch_ct_messages_total{type="unknown"}') == 1
        assert await metric('certwatch_ct_messages_total{type="heartbeat"}') == 1
        assert await metric('certwatch_ct_messages_total{type="certificate_update"}') == 1
        assert await metric('certwatch_ct_skipped_total{reason="invalid_json"}') == 3
        assert await metric('certwatch_ct_skipped_total{reason="not_object"}') == 1
        assert await metric('certwatch_ct_skipped_total{reason="invalid_field"}') == 1
        assert await metric('certwatch_ct_skipped_total{reason="unknown_type"}') == 1
        assert (await service.client.get("/healthz")).json()["feed"]["connections"] == 1


async def test_metrics_gauges_follow_state(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Connected, last-event, entry and inventory gauges reflect the service's state."""
    issuance = ca.issue(["a.example.org"])
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await service.add_domain("example.net")
        await service.client.post("/certs", json=issuance.push())
        await feed.send(issuance.message())
        await receiver.wait_for(1)
        assert await service.metric("certwatch_ws_connected") == 1
        assert await service.metric("certwatch_watch_entries") == 2
        assert await service.metric("certwatch_known_fingerprints") == 1
        assert await service.metric("certwatch_dedupe_cache_size") == 1
        assert await service.metric('certwatch_alerts_total{severity="info"}') == 1
        assert await service.metric("certwatch_last_ct_event_timestamp_seconds") > 1.7e9
        feed.reject_status = 503
        await feed.drop()

        async def disconnected() -> bool:
            return await service.metric("certwatch_ws_connected") == 0

        await wait_until(disconnected)


async def test_shutdown_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    """On shutdown the API answers the request already in flight, and its change is kept."""
    settings = make_settings(tmp_path)
    body_started, release = trio.Event(), trio.Event()
    responses: list[httpx.Response] = []

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"value": "slow.'
        body_started.set()
        await release.wait()
        yield b'example.org"}'

    async with run_service(settings) as service:

        async def post() -> None:
            responses.append(
                await service.client.post(
                    "/domains", content=slow_body(), headers={"content-type": "application/json"}
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            await body_started.wait()
            service.shutdown.set()  # what SIGTERM does
            release.set()
    assert responses[0].status_code == 201
    async with run_service(settings) as service:
        domains = (await service.client.get("/domains")).json()
    assert [d["value"] for d in domains] == ["slow.example.org"]


async def test_observer_mode_stores_and_logs_without_sending(
    tmp_path: Path, feed: FeedServer, ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    """Without WEBHOOK_URL an alert is stored (status `observed`) and logged, nothing sent."""
    settings = make_settings(tmp_path, certstream_url=feed.url)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["a.example.org"]).message())

        async def stored() -> bool:
            return len(await service.alerts()) == 1

        await wait_until(stored)
        (alert,) = await service.alerts()
        health = (await service.client.get("/healthz")).json()
    assert (alert["severity"], alert["status"], alert["delivered"]) == (
        "suspicious",
        "observed",
        False,
    )
    assert health["webhook"] == "observer mode"
    assert "alert suspicious: a.example.org" in caplog.text


async def test_a_hanging_webhook_never_slows_the_feed(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """While the receiver hangs, every later matching cert is still read, stored and queued."""
    receiver.delay = 3600  # answers nothing within the test
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        for i in range(30):
            await feed.send(ca.issue([f"host{i}.example.org"]).message())

        async def all_stored() -> bool:
            return len(await service.alerts()) == 30

        await wait_until(all_stored)
        health = (await service.client.get("/healthz")).json()
        assert receiver.attempts <= 4  # deliveries run 4 at a time; the rest wait in the outbox
        assert health["feed"]["dropped"] == 0
        assert await service.metric("certwatch_feed_queue_depth") == 0
