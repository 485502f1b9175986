"""Back-fill through the whole service: what certstream did not deliver, read from the log.

Each test runs the real supervisor with a WebSocket feed, real CT logs on loopback (a real
Merkle tree, real signatures, both read APIs), a webhook receiver and a SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from certwatch.version import __version__
from tests.support.backfill import (
    WATCHED,
    coverage,
    errors,
    hijack,
    log_health,
    log_with_hijack,
    send_range,
    settled,
    skip,
    start_log,
    watching,
)
from tests.support.certs import CA
from tests.support.ctlog import backfill_settings, message_for
from tests.support.servers import FeedServer, Receiver
from tests.support.service import run_service, wait_until


@pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
async def test_a_hijack_hidden_in_a_feed_gap_is_read_from_the_log(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA, kind: str
) -> None:
    """A hijack in entries certstream skipped is back-filled, verified and alerted once."""
    # certstream skips entries 6-298; entry 270 is the hijack, verified against the signed tree
    # (partial tiles too) and observed via the log.
    log = await start_log(nursery, kind)
    log.add_filler(270)
    assert log.add_issuance(hijack(ca)) == 270
    log.add_filler(29)  # 300 entries: a tiled log's last tile is partial (44)
    log.gzip = "raw" if kind == "tiled" else None  # a compressed tile, without being asked
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await send_range(feed, log, range(6))
        await feed.send(message_for(log, 299))
        [delivery] = await receiver.wait_for(1)
        await settled(service, log, 299)
        entry = await log_health(service, log)
        backfilled = await service.metric(
            f'certwatch_ct_backfilled_entries_total{{log="{log.url}"}}'
        )
    event = delivery.json()
    assert event["severity"] == "suspicious"
    assert event["matched_sans"] == [f"login.{WATCHED}"]
    assert event["observed_via"] == "ct-log"
    assert event["log_url"] == log.url
    assert event["log_index"] == 270
    assert event["log_verified"] is True
    assert event["update_type"] == "PrecertLogEntry"
    assert event["source_log"] == f"Test '{log.name}' log"
    assert (entry["missed"], entry["backfilled"], entry["unrecovered"]) == (293, 293, 0)
    assert backfilled == 293
    assert len(receiver.deliveries) == 1
    read = sorted(set(log.answered))
    if kind == "rfc6962":  # exactly the missing entries, in requests of at most 256
        assert read == [(6, 261), (262, 298)]
    else:  # the two tiles they are in: the first full, the second partial (44 of 300)
        assert read == [(0, 255), (256, 299)]
    assert log.user_agents == {f"certwatch/{__version__}"}


async def test_the_window_of_a_reconnect_is_back_filled(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A hijack logged while the feed connection was down is read from the log."""
    # certstream's first index after the reconnect opens the gap.
    log = await start_log(nursery, "rfc6962")
    log.add_filler(5)
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await send_range(feed, log, range(5))
        await settled(service, log, 4)
        await feed.drop()
        log.add_filler(3)
        assert log.add_issuance(hijack(ca)) == 8
        log.add_filler(4)
        await feed.wait_for_connections(2)
        await feed.send(message_for(log, 12))
        [delivery] = await receiver.wait_for(1)
        await settled(service, log, 12)
        entry = await log_health(service, log)
    assert delivery.json()["log_index"] == 8
    assert (entry["missed"], entry["backfilled"]) == (0, 7)  # not missed: not connected
    assert log.answered == [(5, 11)]


async def test_downtime_is_back_filled_after_a_restart(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """After a restart, what the log grew meanwhile is read and its hijack alerted."""
    # From the saved position to the log's tree size.
    log = await start_log(nursery, "tiled")
    log.add_filler(10)
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await send_range(feed, log, range(10))
        await settled(service, log, 9)
    await service.stopped.wait()
    log.add_filler(20)
    assert log.add_issuance(hijack(ca)) == 30
    log.add_filler(5)
    async with run_service(settings) as service:
        [delivery] = await receiver.wait_for(1)
        await settled(service, log, 35)
    event = delivery.json()
    assert (event["severity"], event["log_index"], event["observed_via"]) == (
        "suspicious", 30, "ct-log",
    )  # fmt: skip


async def test_an_issuance_seen_live_and_back_filled_gives_one_event(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A back-filled precert and its final certificate delivered live are one event."""
    log = await start_log(nursery, "rfc6962")
    issuance = hijack(ca)
    log.add_filler(15)
    assert log.add_issuance(issuance, "precert") == 15
    log.add_filler(4)
    assert log.add_issuance(issuance, "final") == 20
    settings = backfill_settings(tmp_path, feed, receiver, log)
    async with watching(settings) as service:
        await send_range(feed, log, range(10))
        await feed.send(message_for(log, 20, issuance, which="final"))  # skips 10-19
        await receiver.wait_for(1)
        await settled(service, log, 20)
        alerts = await service.alerts()
    assert len(receiver.deliveries) == 1
    assert len(alerts) == 1


async def test_a_tiled_precert_without_der_is_recognised_by_its_registered_key(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A DER-less tiled precert read from the log in the grace period is info by its key."""
    # certstream-server-go shows a tiled log's precert without DER.
    log = await start_log(nursery, "tiled")
    issuance = ca.issue([f"api.{WATCHED}"])
    log.add_filler(7)
    assert log.add_issuance(issuance) == 7
    settings = backfill_settings(tmp_path, feed, receiver, log, suspicious_grace_s=30.0)
    async with watching(settings) as service:
        response = await service.client.post(
            "/keys", json={"pem": issuance.public_key_pem(), "names": [f"api.{WATCHED}"]}
        )
        assert response.status_code == 201, response.text
        await send_range(feed, log, range(7))
        await feed.send(message_for(log, 7, issuance))  # go-tiled: no as_der
        [delivery] = await receiver.wait_for(1)
        lookups = (await coverage(service))["lookups"]
    event = delivery.json()
    assert event["severity"] == "info"
    assert event["recognised_by"]["evidence"] == "key"
    assert event["observed_via"] == "certstream"
    assert lookups == 1


async def test_with_no_grace_a_der_less_precert_is_corrected_by_a_follow_up(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """With no grace, a DER-less precert is suspicious, then resolved once read from the log."""
    # SUSPICIOUS_GRACE_S=0: the entry read from the log recognises it by its registered key.
    log = await start_log(nursery, "tiled")
    issuance = ca.issue([f"api.{WATCHED}"])
    assert log.add_issuance(issuance) == 0
    settings = backfill_settings(tmp_path, feed, receiver, log, suspicious_grace_s=0.0)
    async with watching(settings) as service:
        await service.client.post(
            "/keys", json={"pem": issuance.public_key_pem(), "names": [f"api.{WATCHED}"]}
        )
        await feed.send(message_for(log, 0, issuance))
        deliveries = await receiver.wait_for(2)
    # (deliveries are not ordered: the follow-up may overtake the alert it resolves)
    events = {d.json()["event"]: d.json() for d in deliveries}
    assert events["alert"]["severity"] == "suspicious"
    assert events["resolved"]["severity"] == "info"
    assert events["resolved"]["recognised_by"]["evidence"] == "key"
    assert events["resolved"]["alert_id"] == events["alert"]["alert_id"]


async def test_with_backfill_off_no_request_reaches_the_log(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """CT_BACKFILL=0: a gap is only counted; the log is never asked anything."""
    log = await start_log(nursery, "tiled")
    log.add_filler(5)
    log.add_issuance(hijack(ca))
    log.add_filler(5)
    issuance = ca.issue([f"other.{WATCHED}"])
    settings = backfill_settings(tmp_path, feed, receiver, log, ct_backfill=False)
    async with watching(settings) as service:
        await send_range(feed, log, range(3))
        await feed.send(message_for(log, 10))  # skips 3-9, the hijack among them
        await feed.send(message_for(log, 11, issuance))  # DER-less: no lookup either
        await receiver.wait_for(1)
        cover = await coverage(service)
        missed = await service.metric(
            f'certwatch_ct_missed_entries_total{{log="{log.source_url}"}}'
        )
    assert log.requests == []
    assert missed == 7
    assert (cover["backfill"], cover["log_list"], cover["lookups"]) == (False, None, 0)
    assert receiver.deliveries[0].json()["matched_sans"] == [f"other.{WATCHED}"]


async def test_over_the_limit_the_oldest_entries_are_read_and_the_rest_counted(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """CT_BACKFILL_MAX_ENTRIES=20: of a gap of 99, 20 are read and 79 counted unrecovered."""
    # The oldest 20; the unrecovered count is shown in /healthz.
    log = await start_log(nursery, "rfc6962")
    log.add_filler(5)
    log.add_issuance(hijack(ca))  # 5: inside the part that is read
    log.add_filler(94)
    settings = backfill_settings(tmp_path, feed, receiver, log, ct_backfill_max_entries=20)
    async with watching(settings) as service:
        await feed.send(message_for(log, 0))
        await feed.send(message_for(log, 100))
        await receiver.wait_for(1)
        await settled(service, log, 100)
        entry = await log_health(service, log)
        unrecovered = await service.metric(
            f'certwatch_ct_unrecovered_entries_total{{log="{log.url}"}}'
        )
    assert (entry["backfilled"], entry["unrecovered"]) == (20, 79)
    assert unrecovered == 79
    assert receiver.deliveries[0].json()["log_index"] == 5


class TestFaultyLogs:
    """A log that misbehaves is counted by reason; certwatch keeps working."""

    async def test_a_log_that_caps_get_entries_is_read_to_the_end(
        self, tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """A log answering 3 entries per get-entries is asked again from the next one."""
        log = await start_log(nursery, "rfc6962")
        log.add_filler(40)
        log.add_issuance(hijack(ca))
        log.add_filler(9)
        log.max_entries = 3
        async with watching(backfill_settings(tmp_path, feed, receiver, log)) as service:
            await feed.send(message_for(log, 0))
            await feed.send(message_for(log, 50))
            [delivery] = await receiver.wait_for(1)
            await settled(service, log, 50)
            entry = await log_health(service, log)
        assert delivery.json()["log_index"] == 40
        assert entry["backfilled"] == 49
        gets = [r for r in log.requests if r.endswith("get-entries")]
        assert len(gets) >= 17  # 49 entries, 3 at a time

    @pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
    @pytest.mark.parametrize(
        ("fault", "reason", "count", "verified"),
        [
            ("rate_limit", "rate_limited", 3, True),  # 429 with Retry-After, 3 times
            ("truncate", "malformed", 1, True),  # an answer cut short, once
            ("bad_signature", "bad_signature", None, False),  # every tree head
        ],
    )
    async def test_a_misbehaving_log_is_counted_and_the_gap_still_filled(
        self,
        tmp_path: Path,
        nursery: trio.Nursery,
        feed: FeedServer,
        receiver: Receiver,
        ca: CA,
        kind: str,
        fault: str,
        reason: str,
        count: int | None,
        verified: bool,
    ) -> None:
        """A rate-limiting, truncating or badly signing log is retried and the gap filled."""
        # Each fault is counted by reason; the alert is verified only with a good STH signature.
        log = await log_with_hijack(nursery, kind, ca, key="rsa")
        setattr(log, fault, count or True)
        async with watching(backfill_settings(tmp_path, feed, receiver, log)) as service:
            await skip(feed, log, 1, 5)
            [delivery] = await receiver.wait_for(1)
            await settled(service, log, 6)
            counted = await errors(service, log, reason)
        assert counted == count if count else counted >= 1
        assert (delivery.json()["log_index"], delivery.json()["log_verified"]) == (3, verified)

    @pytest.mark.parametrize("kind", ["rfc6962", "tiled"])
    async def test_an_entry_the_tree_does_not_hold_alerts_unverified(
        self,
        tmp_path: Path,
        nursery: trio.Nursery,
        feed: FeedServer,
        receiver: Receiver,
        ca: CA,
        kind: str,
    ) -> None:
        """An entry that does not prove against the tree is bad_proof, still alerted, unverified."""
        # The log serves a matching certificate at an index its tree holds something else for.
        log = await start_log(nursery, kind)
        log.add_filler(7)
        log.serve_instead(4, hijack(ca))
        async with watching(backfill_settings(tmp_path, feed, receiver, log)) as service:
            await skip(feed, log, 1, 5)
            [delivery] = await receiver.wait_for(1)
            await settled(service, log, 6)
            assert await errors(service, log, "bad_proof") == 1
        event = delivery.json()
        assert (event["severity"], event["log_index"], event["log_verified"]) == (
            "suspicious", 4, False,
        )  # fmt: skip

    async def test_a_log_that_stays_down_is_given_up_and_certwatch_goes_on(
        self, tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """A log refusing connections leaves its gap unrecovered; live alerts keep flowing."""
        # It is retried for the retry period first; live alerts flow meanwhile and after.
        log = await start_log(nursery, "rfc6962")
        log.add_filler(20)
        await log.down()
        live = ca.issue([f"live.{WATCHED}"])
        async with watching(backfill_settings(tmp_path, feed, receiver, log)) as service:
            await feed.send(message_for(log, 0))
            await feed.send(message_for(log, 10))  # 1-9: a gap the log cannot fill
            await feed.send(message_for(log, 11, live, which="final"))
            await receiver.wait_for(1)

            async def given_up() -> bool:
                return bool((await log_health(service, log))["unrecovered"] == 9)

            await wait_until(given_up, within=30)
            entry = await log_health(service, log)
            assert await errors(service, log, "unreachable") >= 2
        assert (entry["pending"], entry["position"]) == (0, 11)
        assert entry["last_error"].startswith("unreachable")
        assert receiver.deliveries[0].json()["matched_sans"] == [f"live.{WATCHED}"]


async def test_a_precert_from_a_precert_signing_certificate_keeps_its_issuance(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A precert signed by a precert signing certificate matches the LB's final cert: info."""
    # The signing certificate is read from the tiled log's issuer/ endpoint; the match is by key
    # id and serial and by the TBS the log holds.
    log = await start_log(nursery, "tiled")
    signer = ca.precert_signer()
    issuance = ca.issue([f"www.{WATCHED}"], precert_signer=signer)
    log.add_filler(1)
    assert log.add(issuance.precert, precert=True, chain=[signer.cert, ca.cert]) == 1
    log.add_filler(2)
    async with watching(backfill_settings(tmp_path, feed, receiver, log)) as service:
        response = await service.client.post("/certs", json={"pem": issuance.final_pem()})
        assert response.status_code == 201, response.text
        await feed.send(message_for(log, 0))
        await feed.send(message_for(log, 3))
        [delivery] = await receiver.wait_for(1)
    event = delivery.json()
    assert event["severity"] == "info"
    assert event["recognised_by"]["evidence"] == "tbs"  # the logged TBS is the final's
    assert event["issuance_id"].startswith(f"aki:{ca.key_id.hex()}:")
    assert any(r.startswith(f"{log.name}/issuer/") for r in log.requests)


async def test_without_a_log_list_logs_are_read_from_certstreams_url_unverified(
    tmp_path: Path,
    nursery: trio.Nursery,
    feed: FeedServer,
    receiver: Receiver,
    ca: CA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the log list, gaps fill from the feed's source, alerts unverified, said once."""
    # CT_LOG_LIST unreadable: source.url and source.type are used; log_verified is false.
    log = await log_with_hijack(nursery, "rfc6962", ca)
    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"operators": [')  # cut short, as by a failed download
    settings = backfill_settings(tmp_path, feed, receiver, log, ct_log_list=str(garbled))
    async with watching(settings) as service:
        await skip(feed, log, 1, 5)
        [delivery] = await receiver.wait_for(1)
        cover = await coverage(service)
    event = delivery.json()
    assert (event["log_url"], event["log_index"], event["log_verified"]) == (log.url, 3, False)
    assert cover["log_list"]["logs"] == 0
    assert "not JSON" in cover["log_list"]["error"]
    [entry] = cover["logs"]
    assert (entry["listed"], entry["verifiable"]) == (False, False)
    said = [r for r in caplog.records if "cannot load the CT log list" in r.getMessage()]
    assert len(said) == 1


async def test_gaps_in_many_logs_are_all_filled(
    tmp_path: Path, nursery: trio.Nursery, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Six logs with a gap each (more than fill at once) are back-filled, one alert each."""
    logs = [
        await log_with_hijack(nursery, "tiled" if n % 2 else "rfc6962", ca, name=f"log{n}")
        for n in range(6)
    ]
    async with watching(backfill_settings(tmp_path, feed, receiver, *logs)) as service:
        for log in logs:
            await skip(feed, log, 1, 5)
        deliveries = await receiver.wait_for(6)
        for log in logs:
            await settled(service, log, 6)
    assert sorted(d.json()["log_url"] for d in deliveries) == sorted(log.url for log in logs)
    assert len(receiver.deliveries) == 6
