"""Every HTTP body certwatch reads is bounded, whatever its encoding stack: real peers on
loopback serving what a hostile CT log, log list server or webhook receiver would."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs
import pytest
import trio

from certwatch.core.loglist import MAX_LOGS, LogInfo, LogKind
from certwatch.delivery.webhook import WebhookSender
from certwatch.errors import CTLogError
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.sources.ctlog import MAX_ANSWER_BYTES, CTLogReader
from certwatch.sources.loglist import LogListLoader
from certwatch.store.sqlite import SQLiteStore
from tests.support.alerts import pending_alert
from tests.support.ctlog import log_list
from tests.support.servers import DripServer, HttpPeer, gzip_bomb
from tests.support.timing import BACKFILL

GZIP_GZIP = {"Content-Encoding": "gzip, gzip", "Content-Type": "application/octet-stream"}
BOMB = gzip_bomb(64 * 1024 * 1024)
"""A few hundred bytes that a decoding client inflates to 64 MiB (a real attack used
4 GiB: the bound is what matters, and 64 MiB is eight times it)."""


@pytest.fixture
async def peer(nursery: trio.Nursery) -> HttpPeer:
    return await HttpPeer().start(nursery)


async def test_a_ct_logs_gzip_stack_bomb_is_refused_within_the_bound(peer: HttpPeer) -> None:
    """A data tile served gzip, gzip is refused as malformed at the answer bound, counted."""
    peer.routes["log/tile/data/000"] = (200, GZIP_GZIP, BOMB)
    info = LogInfo(peer.url("log").rstrip("/"), LogKind.TILED)
    metrics = Metrics()
    async with CTLogReader(metrics.coverage, timeout_s=5) as reader:
        with pytest.raises(CTLogError, match=f"over {MAX_ANSWER_BYTES:,} bytes") as caught:
            await reader.data_tile(info, 0, 256)
    assert caught.value.reason == "malformed"
    errors = metrics.registry.get_sample_value(
        "certwatch_ct_log_errors_total", {"log": info.read_url, "reason": "malformed"}
    )
    assert errors == 1
    assert peer.requests[0][2]["accept-encoding"] == "gzip, identity"


async def test_an_issuer_over_64_kib_is_refused(peer: HttpPeer) -> None:
    """An issuer certificate of 1 MiB is refused before it reaches the cache."""
    body = bytes(1024 * 1024)
    import hashlib

    digest = hashlib.sha256(body).digest()
    peer.routes[f"log/issuer/{digest.hex()}"] = (200, {}, body)
    info = LogInfo(peer.url("log").rstrip("/"), LogKind.TILED)
    async with CTLogReader(Metrics().coverage, timeout_s=5) as reader:
        with pytest.raises(CTLogError, match="an issuer over 65,536 bytes"):
            await reader.issuer(info, digest)


def loader(source: str, request_timeout_s: float = 5) -> LogListLoader:
    metrics = Metrics()
    timing = attrs.evolve(BACKFILL, ct_request_timeout_s=request_timeout_s)
    return LogListLoader(
        source, Coverage(metrics.coverage, backfill=True), metrics.coverage, timing
    )


async def test_a_log_list_url_serving_a_gzip_stack_bomb_is_refused(peer: HttpPeer) -> None:
    """The log list's URL answering a gzip, gzip bomb fails the load, within the bound."""
    peer.routes["log_list.json"] = (200, GZIP_GZIP, BOMB)
    list_loader = loader(peer.url("log_list.json"))
    assert not await list_loader.load()
    assert list_loader.error is not None
    assert "decoded answer is over 4,194,304 bytes" in list_loader.error


async def test_a_log_list_url_dripping_bytes_is_cut_off(nursery: trio.Nursery) -> None:
    """A server sending a byte every 0.1 s for ever fails the load after 3 request timeouts."""
    drip = await DripServer(every_s=0.1).start(nursery)
    list_loader = loader(drip.url, request_timeout_s=0.5)
    started = time.monotonic()
    assert not await list_loader.load()
    assert list_loader.error == "not loaded within 1.5 s"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
async def test_a_log_list_path_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    """/dev/zero, a FIFO nobody writes and a directory fail the load at once, said so."""
    if kind == "device":
        path = "/dev/zero"
    elif kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    else:
        path = str(tmp_path)
    list_loader = loader(path)
    with trio.fail_after(5):
        assert not await list_loader.load()
    assert list_loader.error is not None
    assert "regular file" in list_loader.error or "Is a directory" in list_loader.error


async def test_a_list_of_60000_logs_is_refused_without_holding_the_event_loop(
    tmp_path: Path,
) -> None:
    """A 60,000-log list is refused by count, parsed off the event loop."""
    document = log_list()
    document["operators"][0]["logs"] = [{"url": f"https://l.example/{n}/"} for n in range(60_000)]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(document))
    list_loader = loader(str(path))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        started = time.monotonic()
        assert not await list_loader.load()
        elapsed = time.monotonic() - started
        nursery.cancel_scope.cancel()
    assert list_loader.error == f"60000 logs; a log list holds at most {MAX_LOGS}"
    # the loop kept ticking while the list was read and parsed (no single long stall)
    assert ticks >= elapsed / 0.01 / 4


async def test_a_receivers_gzip_stack_error_body_is_not_inflated(
    tmp_path: Path, peer: HttpPeer
) -> None:
    """A 500 whose small body is a gzip, gzip bomb is recorded as unread; retries go on."""
    peer.routes["hook"] = (500, GZIP_GZIP, BOMB)
    store = await SQLiteStore.open(tmp_path / "db")
    try:
        alert = await store.insert_alert(pending_alert(0, time.time()))
        assert alert.id is not None
        sender = WebhookSender(
            peer.url("hook"), store, Metrics().outbox, BACKFILL,
            timeout_s=5, retry_period_s=3600, claimer="test",
        )  # fmt: skip
        send, receive = trio.open_memory_channel[int](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run, receive)
            await send.send(alert.id)
            with trio.fail_after(10):
                await peer.wait_for(3)  # the three quick attempts
            nursery.cancel_scope.cancel()
        [stored] = await store.list_alerts()
    finally:
        store.close()
    assert stored.attempts >= 2
    assert stored.last_error is not None
    assert stored.last_error.startswith("HTTP 500: (an error body that was not read:")
    assert "over 4,096 bytes" in stored.last_error
