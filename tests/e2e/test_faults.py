"""Hostile input and faults: the feed, the API's connections, the database, the receiver.

Every test runs the real service with real peers on loopback and ends by checking that
certwatch is still doing its job (connected, processing, alerting) and has not leaked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from tests.support.certs import (
    CA,
    pem,
    public_key_pem_with_unknown_algorithm,
    unrelated_message,
    with_extensions,
    with_unknown_key_algorithm,
    with_version,
)
from tests.support.servers import FeedServer, RawFeed, Receiver
from tests.support.service import (
    TOKEN,
    RunningService,
    make_settings,
    run_service,
    wait_until,
    wired,
)
from tests.support.timing import QUICK


def client_sockets_to(port: int) -> int:
    """This process's TCP connections whose remote end is ``port`` (from /proc/net/tcp)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[9] in inodes:
            count += 1
    return count


async def read_to_the_end(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes. A server that closes with our unread
    bytes in its buffer resets the connection: the data before the reset still arrives."""
    received = b""
    with contextlib.suppress(trio.BrokenResourceError):
        while chunk := await stream.receive_some(65536):
            received += chunk
    return received


def tasks_living() -> int:
    return trio.lowlevel.current_statistics().tasks_living


async def processed(service: RunningService, at_least: int) -> bool:
    total = await service.metric('certwatch_ct_messages_total{type="certificate_update"}')
    return total >= at_least


class TestFeedFaults:
    async def test_a_silent_server_is_left_after_its_ping_timeout(
        self, tmp_path: Path, nursery: trio.Nursery, ca: CA
    ) -> None:
        """A server that stops answering pings is dropped; the next connection processes."""
        message = json.dumps(ca.issue(["a.example.org"]).message())
        feed = await RawFeed(["silent"], [message]).start(nursery)
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.wait_for_connections(2)
            await wait_until(lambda: processed(service, 1))
            health = (await service.client.get("/healthz")).json()
            assert health["feed"]["connected"] is True
            assert await service.metric("certwatch_ws_reconnects_total") >= 1
            assert len(await service.alerts()) == 1
            assert client_sockets_to(feed.port) == 1

    async def test_a_connection_closed_mid_frame_is_retried(
        self, tmp_path: Path, nursery: trio.Nursery, ca: CA
    ) -> None:
        """Half a frame then a TCP close: reconnect, and the whole message comes next time."""
        message = json.dumps(ca.issue(["a.example.org"]).message())
        feed = await RawFeed(["mid-frame", "mid-frame"], [message]).start(nursery)
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.wait_for_connections(3)
            await wait_until(lambda: processed(service, 1))
            assert await service.metric('certwatch_ct_messages_total{type="malformed"}') == 0
            assert len(await service.alerts()) == 1
            assert client_sockets_to(feed.port) == 1

    async def test_a_refused_upgrade_is_retried(self, tmp_path: Path, feed: FeedServer) -> None:
        """503 on the upgrade: counted, reported in /healthz, retried until accepted."""
        feed.reject_status = 503
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=QUICK)
        async with run_service(settings) as service:

            async def refused_twice() -> bool:
                return await service.metric("certwatch_ws_reconnects_total") >= 2

            await wait_until(refused_twice)
            health = (await service.client.get("/healthz")).json()
            assert health["feed"]["last_error"] == "connect failed: rejected with HTTP 503"
            assert health["feed"]["connected"] is False
            feed.reject_status = None
            await feed.wait_for_connections(1)
            await feed.send(unrelated_message())
            await wait_until(lambda: processed(service, 1))

    async def test_a_refused_connection_is_a_counted_retry(self, tmp_path: Path) -> None:
        """Nothing listening on the feed's port: retried with backoff, counted as refused."""
        settings = make_settings(tmp_path, timing=QUICK)  # the discard port: nothing listens
        async with run_service(settings) as service:

            async def refused_twice() -> bool:
                return (
                    await service.metric('certwatch_ws_connect_failures_total{reason="refused"}')
                    >= 2
                )

            await wait_until(refused_twice)
            health = (await service.client.get("/healthz")).json()
        assert health["feed"]["connected"] is False
        assert health["feed"]["last_error"].startswith("connect failed: ")

    @pytest.mark.parametrize(
        ("fault", "reason"),
        [
            ("no-upgrade", "timeout"),
            ("ssh", "timeout"),  # a one-line banner never ends an HTTP header block
            ("garbage", "protocol"),
            ("http-200", "rejected"),
            ("bad-accept", "protocol"),
        ],
    )
    async def test_a_handshake_fault_is_a_counted_retry(
        self, tmp_path: Path, nursery: trio.Nursery, ca: CA, fault: str, reason: str
    ) -> None:
        """Twice a server that is no WebSocket server: two failures by reason, then it works."""
        message = json.dumps(ca.issue(["a.example.org"]).message())
        feed = await RawFeed([fault, fault], [message]).start(nursery)
        timing = attrs.evolve(QUICK, connect_timeout_s=0.3)
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=timing)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.wait_for_connections(1)
            await wait_until(lambda: processed(service, 1))
            failures = await service.metric(
                f'certwatch_ws_connect_failures_total{{reason="{reason}"}}'
            )
            assert len(await service.alerts()) == 1
            assert feed.connections == 3
            assert client_sockets_to(feed.port) == 1
        assert failures == 2

    async def test_a_matching_certificate_with_wrong_typed_fields_still_alerts(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """Odd but usable fields are coerced and counted; the alert is stored and delivered."""
        # source.url null, a null name, cert_index "123", serial and fingerprint null, seen "x",
        # extensions [].
        message = ca.issue(["evil.example.org"]).message("go-full")
        data, leaf = message["data"], message["data"]["leaf_cert"]
        data["source"]["url"] = None
        data["cert_index"] = "123"
        data["seen"] = "x"
        leaf["all_domains"] = [None, *leaf["all_domains"]]
        leaf["serial_number"] = None
        leaf["fingerprint"] = None
        leaf["extensions"] = []
        settings = wired(tmp_path, feed, receiver, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.send(message)
            (delivery,) = await receiver.wait_for(1)
            counts = {
                field: await service.metric(
                    f'certwatch_ct_coerced_fields_total{{field="{field}"}}'
                )
                for field in (
                    "source.url", "cert_index", "seen", "all_domains",
                    "serial_number", "fingerprint", "extensions", "as_der",
                )
            }  # fmt: skip
        payload = delivery.json()
        assert (payload["severity"], payload["matched_sans"]) == (
            "suspicious",
            ["evil.example.org"],
        )
        assert payload["serial"] == ""
        assert counts == {**dict.fromkeys(counts, 1.0), "as_der": 0.0}

    async def test_a_message_over_the_size_cap_closes_and_reconnects(
        self, tmp_path: Path, feed: FeedServer, ca: CA
    ) -> None:
        """A 17 MiB frame (cap 16 MiB) closes the connection with 1009; the next one works."""
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.wait_for_connections(1)
            await feed.send(
                '{"message_type": "certificate_update", "x": "' + "a" * (17 << 20) + '"}'
            )
            await feed.wait_for_connections(2)
            await feed.send(ca.issue(["a.example.org"]).message())
            await wait_until(lambda: processed(service, 1))
            health = (await service.client.get("/healthz")).json()
            assert "1009" in health["feed"]["last_error"]
            assert len(await service.alerts()) == 1
            assert client_sockets_to(feed.port) == 1

    async def test_a_certificate_with_10000_sans(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """10,000 names on one certificate are matched and alerted like any other."""
        message = ca.issue(["a.example.org"]).message("go-lite")
        names = [f"host{i}.unrelated{i % 50}.example.com" for i in range(9_999)]
        message["data"]["leaf_cert"]["all_domains"] = [*names, "deep.a.example.org"]
        settings = wired(tmp_path, feed, receiver, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.send(message)
            (delivery,) = await receiver.wait_for(1)
        assert delivery.json()["matched_sans"] == ["deep.a.example.org"]
        assert len(delivery.json()["all_sans"]) == 10_000

    async def test_a_burst_of_50000_messages(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """50,000 frames back to back are all read; the cert after them still alerts."""
        frames = [json.dumps(unrelated_message(f"www.burst{i}.example.com")) for i in range(20)]
        settings = wired(tmp_path, feed, receiver, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.wait_for_connections(1)
            (conn,) = feed.connections
            for i in range(50_000):
                await conn.send_message(frames[i % len(frames)])
            await feed.send(ca.issue(["after.example.org"]).message())
            await receiver.wait_for(1)
            health = (await service.client.get("/healthz")).json()
        assert health["feed"]["messages"] == 50_001
        assert health["feed"]["processed"] + health["feed"]["dropped"] == 50_001
        assert health["feed"]["connections"] == 1

    async def test_random_bytes_are_skipped_without_dropping_the_connection(
        self, tmp_path: Path, feed: FeedServer, ca: CA
    ) -> None:
        """Random binary and text frames are counted as malformed; the connection stays."""
        rng = random.Random(7)
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.wait_for_connections(1)
            baseline_tasks = tasks_living()
            for _ in range(200):
                await feed.send(rng.randbytes(rng.randint(1, 2000)))
                await feed.send("".join(chr(rng.randint(32, 0x2FFF)) for _ in range(50)))
            await feed.send(ca.issue(["a.example.org"]).message())
            await wait_until(lambda: processed(service, 1))
            malformed = await service.metric('certwatch_ct_messages_total{type="malformed"}')
            health = (await service.client.get("/healthz")).json()
            assert malformed == 400
            assert health["feed"]["connections"] == 1
            assert len(await service.alerts()) == 1
            assert tasks_living() == baseline_tasks

    async def test_repeated_faults_leak_neither_sockets_nor_tasks(
        self, tmp_path: Path, feed: FeedServer
    ) -> None:
        """After ten server-side disconnects, one connection and the same number of tasks."""
        settings = make_settings(tmp_path, certstream_url=feed.url, timing=QUICK)
        async with run_service(settings) as service:
            await feed.wait_for_connections(1)
            await service.client.get("/healthz")
            baseline_tasks = tasks_living()
            for n in range(2, 12):
                await feed.drop()
                await feed.wait_for_connections(n)
            await feed.send(unrelated_message())
            await wait_until(lambda: processed(service, 1))
            assert client_sockets_to(feed.port) == 1

            async def settled() -> bool:
                return tasks_living() == baseline_tasks

            await wait_until(settled)


class TestHostileCertificates:
    """Certificates that cryptography rejects: an alert from the feed, a 4xx from the API."""

    @pytest.mark.parametrize("forge", ["unknown key algorithm", "version 8"])
    async def test_a_matching_unparsable_certificate_still_alerts(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA, forge: str
    ) -> None:
        """A hijack in an unparseable certificate is delivered, named from the message."""
        # The next certificate is processed as usual.
        issuance = ca.issue(["evil.example.org"])
        if forge == "unknown key algorithm":
            der = with_unknown_key_algorithm(issuance.precert)
        else:
            der = with_version(issuance.precert, 8)
        message = issuance.message("go-full")
        message["data"]["leaf_cert"]["as_der"] = base64.b64encode(der).decode()
        settings = wired(tmp_path, feed, receiver, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.send(message)
            await feed.send(ca.issue(["next.example.org"]).message())
            deliveries = await receiver.wait_for(2)
            alerts = await service.alerts()
        first = deliveries[0].json()
        assert (first["severity"], first["matched_sans"]) == ("suspicious", ["evil.example.org"])
        assert first["serial"] == message["data"]["leaf_cert"]["serial_number"]
        assert first["issuance_id"].startswith(f"aki:{ca.key_id.hex()}:")
        assert deliveries[1].json()["matched_sans"] == ["next.example.org"]
        assert len(alerts) == 2

    async def test_pushes_the_parser_rejects_get_422_naming_the_field(
        self, tmp_path: Path, ca: CA
    ) -> None:
        """PEM bodies, pem fields and keys that cryptography rejects: 422 naming the field."""
        issuance = ca.issue(["a.example.org"])
        bad_key = pem(with_unknown_key_algorithm(issuance.final))
        bad_version = pem(with_version(issuance.final, 8))
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            client = service.client
            pem_type = {"content-type": "application/x-pem-file"}
            unknown_key = public_key_pem_with_unknown_algorithm()
            answers = {
                "body key": await client.post("/certs", content=bad_key, headers=pem_type),
                "body version": await client.post("/certs", content=bad_version, headers=pem_type),
                "pem key": await client.post("/certs", json={"pem": bad_key}),
                "key pem": await client.post(
                    "/keys",
                    json={"pem": unknown_key, "names": ["a.example.org"]},
                ),
                "key cert": await client.post(
                    "/keys", json={"pem": bad_key, "names": ["a.example.org"]}
                ),
            }
            assert (await client.get("/certs")).json() == []
            assert (await client.get("/keys")).json() == []
        expected = {
            "body key": ("body", "public key"),
            "body version": ("body", "X.509 version 8 is not valid"),
            "pem key": ("pem", "public key"),
            "key pem": ("pem", "cannot read"),
            "key cert": ("pem", "public key"),
        }
        for name, response in answers.items():
            assert response.status_code == 422, (name, response.text)
            (problem,) = response.json()["fields"]
            field, words = expected[name]
            assert problem["field"] == field, name
            assert words in problem["problem"], (name, problem)
            assert "ParseError" not in response.text

    async def test_a_push_with_36000_extensions_is_refused_without_parsing_it(
        self, tmp_path: Path, ca: CA
    ) -> None:
        """A ~950 KiB PEM of 36,000 extensions is refused by size; the API stays responsive."""
        # How long the event loop is held is measured in benchmarks/hostile_push.py.
        big = pem(with_extensions(ca, ["a.example.org"], 36_000))
        assert 800_000 < len(big) < 1024 * 1024
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            response = await service.client.post(
                "/certs", content=big, headers={"content-type": "application/x-pem-file"}
            )
            health = await service.client.get("/healthz")
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "body"
        assert (
            "certificates over 65,536 are not accepted" in response.json()["fields"][0]["problem"]
        )
        assert health.status_code == 200


class TestApiConnections:
    async def test_slowloris_headers_are_cut_off(self, tmp_path: Path) -> None:
        """A client dribbling its headers is disconnected after the idle timeout."""
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            host, port = service.url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                closed = False
                with trio.fail_after(5):
                    for i in range(100):
                        # The server's close may come as a FIN (b"") or, with our dribbled
                        # bytes still unread on its side, as a reset: either is the cut-off.
                        try:
                            await stream.send_all(b"X-Slow-%d: 1\r\n" % i)
                            with trio.move_on_after(0.1):
                                closed = await stream.receive_some(1024) == b""
                        except trio.BrokenResourceError:
                            closed = True
                        if closed:
                            break
            assert closed
            assert (await service.client.get("/healthz")).status_code == 200

    async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
        self, tmp_path: Path
    ) -> None:
        """After a response, a keep-alive connection left idle is closed by the server."""
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            host, port = service.url.removeprefix("http://").rsplit(":", 1)
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                received = b""
                # The read timeout (30 s) would close it too: only the idle timeout is this quick.
                with trio.fail_after(QUICK.api_idle_timeout_s + 4):
                    while chunk := await stream.receive_some(65536):
                        received += chunk
            assert received.startswith(b"HTTP/1.1 200")

    async def test_shutdown_does_not_wait_for_idle_keep_alive_connections(
        self, tmp_path: Path
    ) -> None:
        """An idle keep-alive connection (a Prometheus scraper's) is closed at once on shutdown."""
        timing = attrs.evolve(QUICK, shutdown_grace_s=5, api_idle_timeout_s=5)
        async with (
            run_service(make_settings(tmp_path, timing=timing)) as service,
            httpx.AsyncClient() as scraper,
        ):
            assert (await scraper.get(service.url + "/metrics")).status_code == 200
            started = trio.current_time()
            service.shutdown.set()
            await service.stopped.wait()
            assert trio.current_time() - started < 2

    @pytest.mark.parametrize(
        "request_line",
        [
            b"GET /alerts?since=\xc3\xa9 HTTP/1.1",
            b"GET /healthz\xff HTTP/1.1",
            b"GET /domains?x=\x01 HTTP/1.1",
            b"GET / HTTP/1.1\r\nBad Header: x",
        ],
    )
    async def test_requests_http_cannot_parse_get_a_json_400(
        self, tmp_path: Path, request_line: bytes
    ) -> None:
        """A raw non-ASCII or control byte in the URL, a broken header: 400 with a JSON error."""
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            host, port = service.url.removeprefix("http://").rsplit(":", 1)
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(request_line + b"\r\nHost: x\r\n\r\n")
                with trio.fail_after(5):
                    received = await read_to_the_end(stream)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert b"content-type: application/json" in head.lower()
        assert "malformed HTTP request" in json.loads(body)["error"]

    async def test_headers_too_large_get_a_json_431(self, tmp_path: Path) -> None:
        """A header block still incomplete past 16 KiB: 431 with a JSON error."""
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            host, port = service.url.removeprefix("http://").rsplit(":", 1)
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 200_000)
                with trio.fail_after(5):
                    received = await read_to_the_end(stream)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431")
        assert json.loads(body) == {"error": "request headers too large"}

    async def test_slow_bodies_get_408(self, tmp_path: Path) -> None:
        """A body that does not arrive within the body timeout is answered 408, nothing stored."""
        async with run_service(make_settings(tmp_path, timing=QUICK)) as service:
            host, port = service.url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(
                    b"POST /domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    + TOKEN.encode()
                    + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                    + b'{"value": "exa'
                )
                received = b""
                with trio.fail_after(5):
                    while b"}" not in received:
                        received += await stream.receive_some(4096)
            assert received.startswith(b"HTTP/1.1 408")
            assert (await service.client.get("/domains")).json() == []

    async def test_the_token_never_reaches_logs_or_bodies(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA,
        caplog: pytest.LogCaptureFixture,
    ) -> None:  # fmt: skip
        """Failed and successful requests at DEBUG level: no token, no secret, in any log line."""
        secret = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
        wrong = "wrong-token-that-must-not-appear"
        caplog.set_level(logging.DEBUG)
        settings = wired(tmp_path, feed, receiver, webhook_secret=secret, timing=QUICK)
        bodies = []
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            async with httpx.AsyncClient(base_url=service.url) as anonymous:
                for headers in [
                    {"Authorization": f"Bearer {wrong}"},
                    {"Authorization": f"Token {TOKEN}"},
                    {"Authorization": wrong},
                    {},
                ]:
                    response = await anonymous.post("/domains", headers=headers, json={})
                    bodies.append(response.text)
            bodies.append((await service.client.post("/domains", json={"value": 5})).text)
            await feed.send(ca.issue(["a.example.org"]).message())
            await receiver.wait_for(1)
        text = caplog.text + "".join(bodies)
        for needle in (TOKEN, wrong, secret, secret.removeprefix("whsec_")):
            assert needle not in text
        assert "delivered alert suspicious" in caplog.text  # the logs were captured


class TestStorageFaults:
    async def test_a_locked_database_answers_503_then_recovers(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
    ) -> None:
        """Another process holding the write lock: 503 JSON, alerts wait; released: all works."""
        settings = wired(tmp_path, feed, receiver, timing=QUICK)
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            other = sqlite3.connect(settings.db_path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            try:
                response = await service.client.post("/domains", json={"value": "example.net"})
                assert response.status_code == 503
                assert response.headers["retry-after"] == "5"
                assert "database is unavailable" in response.json()["error"]
                await feed.send(ca.issue(["a.example.org"]).message())
                await wait_until(lambda: processed(service, 1))
                assert receiver.deliveries == []
            finally:
                other.execute("ROLLBACK")
                other.close()
            (delivery,) = await receiver.wait_for(1)  # the alert waited, then went out
            assert delivery.json()["matched_sans"] == ["a.example.org"]
            again = await service.client.post("/domains", json={"value": "example.net"})
            assert again.status_code == 201
            domains = [d["value"] for d in (await service.client.get("/domains")).json()]
            assert domains == ["example.net", "example.org"]

    @pytest.mark.parametrize("fault", ["read-only, empty", "read-only, existing", "garbage"])
    def test_unusable_database_at_start_is_a_clear_error(self, tmp_path: Path, fault: str) -> None:
        """A DB_PATH on a read-only filesystem or not SQLite: exit 1, the path, no traceback."""
        directory = tmp_path / "state"
        directory.mkdir()
        db = directory / "cw.db"
        command = [sys.executable, "-m", "certwatch"]
        if fault == "garbage":
            db.write_bytes(b"not a database " * 500)
        else:
            if fault == "read-only, existing":
                sqlite3.connect(db).execute("CREATE TABLE x (y)").connection.close()
            # A read-only bind mount in a private mount namespace: a real EROFS, which even
            # root cannot write through.
            if shutil.which("unshare") is None:
                pytest.skip("needs unshare(1) for a read-only mount")
            probe = subprocess.run(
                ["unshare", "-m", "true"], capture_output=True, check=False, timeout=10
            )
            if probe.returncode != 0:
                pytest.skip("mount namespaces are not permitted here")
            script = f'mount --bind -o ro "{directory}" "{directory}" && exec "$@"'
            command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
        result = subprocess.run(
            command,
            env={**os.environ, "API_TOKEN": TOKEN, "API_PORT": "0", "DB_PATH": str(db)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert str(db) in result.stderr
        assert "Traceback" not in result.stderr


class TestReceiverFaults:
    @pytest.mark.parametrize(
        ("fault", "error"),
        [
            ("redirect", "HTTP 302 redirect to http://elsewhere.example/ (not followed)"),
            ("client error", "HTTP 404"),
            ("server error", "HTTP 500"),
            ("huge body", "HTTP 500"),
            ("hanging", "timed out"),
            ("tls", "ConnectError"),
        ],
    )
    async def test_each_fault_is_a_counted_failure_and_retried(
        self, tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA, fault: str, error: str
    ) -> None:
        """Redirects, 4xx, 5xx, huge bodies, hangs and TLS errors: failures, retried, feed on."""
        hook = receiver.url
        timing = QUICK
        if fault == "redirect":
            receiver.responses = [(302, {"Location": "http://elsewhere.example/"})] * 3
        elif fault == "client error":
            receiver.responses = [404] * 3
        elif fault == "server error":
            receiver.responses = [500] * 3
        elif fault == "huge body":
            receiver.responses = [(500, {"X-Huge": "1"})] * 3
            receiver.huge_body = 50 * 1024 * 1024
        elif fault == "hanging":
            receiver.delay = 3600
        else:
            hook = hook.replace("http://", "https://")  # TLS to a plain HTTP server
        settings = make_settings(
            tmp_path, certstream_url=feed.url, webhook_url=hook, timing=timing,
            webhook_timeout_s=0.5,
        )  # fmt: skip
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            await feed.send(ca.issue(["a.example.org"]).message())

            async def retried() -> bool:
                alerts = await service.alerts()
                return bool(alerts) and alerts[0]["attempts"] >= 3

            await wait_until(retried, within=20)
            (alert,) = await service.alerts()
            assert alert["status"] == "pending"
            assert error in alert["last_error"]
            assert await service.metric('certwatch_webhook_total{result="failure"}') >= 3
            # Meanwhile the feed is processed as usual.
            await feed.send(unrelated_message())
            await wait_until(lambda: processed(service, 2))
        assert receiver.deliveries == []
