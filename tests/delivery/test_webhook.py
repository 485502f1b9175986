"""Webhook delivery policy, on a virtual clock with httpx's MockTransport.

Real-socket delivery is covered end to end in test_e2e.py; here the schedule, the headers
and the outbox states are checked exactly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio
import trio.testing

from certwatch.core.alerts import Alert, webhook_payload
from certwatch.delivery import webhook
from certwatch.delivery.webhook import WebhookSender, sign
from certwatch.metrics import Metrics
from certwatch.store.sqlite import SQLiteStore
from certwatch.version import __version__
from tests.support.alerts import pending_alert
from tests.support.timing import PRODUCTION

EPOCH = 1_800_000_000.0
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def clock() -> float:
    return EPOCH + trio.current_time()


@attrs.define
class Hook:
    """A scripted receiver behind MockTransport, recording (virtual time, request)."""

    script: list[httpx.Response] = attrs.field(factory=list)
    default: Callable[[], httpx.Response] = lambda: httpx.Response(200)
    requests: list[tuple[float, httpx.Request]] = attrs.field(factory=list)
    changed: trio.Event = attrs.field(factory=trio.Event)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((trio.current_time(), request))
        self.changed.set()
        self.changed = trio.Event()
        return self.script.pop(0) if self.script else self.default()

    async def wait_for(self, count: int) -> None:
        while len(self.requests) < count:
            await self.changed.wait()

    def times(self) -> list[float]:
        return [round(t, 3) for t, _ in self.requests]


@asynccontextmanager
async def sending(
    tmp_path: Path,
    hook: Hook,
    *,
    retry_period: float = 86400,
    alerts: int = 1,
    claimed_by: str | None = None,
) -> AsyncIterator[tuple[SQLiteStore, trio.MemorySendChannel[int], Metrics]]:
    """A sender over ``alerts`` pending alerts (each claimed for an hour by another replica,
    ``claimed_by``, if given)."""
    store = await SQLiteStore.open(tmp_path / "db", threaded=False)
    metrics = Metrics()
    ids = []
    for n in range(alerts):
        stored = await store.insert_alert(pending_alert(n, clock()))
        assert stored.id is not None
        ids.append(stored.id)
        if claimed_by is not None:
            await store.claim(stored.id, clock(), claimer=claimed_by, until=clock() + 3600)
    sender = WebhookSender(
        "https://hooks.example/certwatch",
        store,
        metrics.outbox,
        PRODUCTION,
        timeout_s=10,
        retry_period_s=retry_period,
        secret=SECRET,
        clock=clock,
        rng=lambda: 0.5,
        transport=httpx.MockTransport(hook.handle),
    )
    send, receive = trio.open_memory_channel[int](16)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run, receive)
            yield store, send, metrics
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def verify_standard_webhook(secret: str, headers: httpx.Headers, body: bytes, now: float) -> bool:
    """An independent Standard Webhooks verifier (the spec's algorithm, written from scratch)."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > 300:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    content = b".".join([msg_id.encode(), timestamp.encode(), body])
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


def claims(metrics: Metrics, result: str) -> float | None:
    return metrics.registry.get_sample_value("certwatch_outbox_claims_total", {"result": result})


class TestClaims:
    async def test_each_claim_for_an_attempt_is_counted_won(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Delivering an alert counts its claims won (the channel's and the poller's)."""
        hook = Hook()
        async with sending(tmp_path, hook) as (_, send, metrics):
            await send.send(1)
            await hook.wait_for(1)
            await trio.sleep(60)
        assert len(hook.requests) == 1
        assert (claims(metrics, "won") or 0) >= 1
        assert claims(metrics, "lost") == 0

    async def test_an_alert_another_replica_holds_is_counted_lost(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An alert claimed by another replica is not sent here, and the claim is lost."""
        hook = Hook()
        async with sending(tmp_path, hook, claimed_by="other:1") as (_, send, metrics):
            await send.send(1)
            await trio.sleep(60)
        assert hook.requests == []
        assert (claims(metrics, "won"), claims(metrics, "lost")) == (0, 1)


class TestDelivery:
    async def test_delivers_with_standard_webhooks_headers(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A pending alert is POSTed once with a stable id, a timestamp and a valid signature."""
        hook = Hook()
        async with sending(tmp_path, hook) as (store, _, metrics):
            await hook.wait_for(1)
            await trio.testing.wait_all_tasks_blocked()
            (alert,) = await store.list_alerts()
        _, request = hook.requests[0]
        assert request.headers["webhook-id"] == "evt-0"
        assert request.headers["content-type"] == "application/json"
        assert verify_standard_webhook(SECRET, request.headers, request.content, clock())
        assert not verify_standard_webhook(SECRET, request.headers, request.content + b" ", clock())
        body = json.loads(request.content)
        assert body["severity"] == "suspicious"
        assert body["event"] == "alert"
        assert alert.status == "delivered"
        assert alert.delivered_at is not None
        assert (
            metrics.registry.get_sample_value("certwatch_webhook_total", {"result": "success"}) == 1
        )
        assert request.headers["user-agent"] == f"certwatch/{__version__}"

    async def test_quick_attempts_then_a_growing_schedule_then_dead(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Attempts at 0, 1 and 5 s, then 30 s, 60 s, ... doubling, until the period ends."""
        hook = Hook(default=lambda: httpx.Response(500, text="boom"))
        async with sending(tmp_path, hook, retry_period=600) as (store, _, _metrics):
            await hook.wait_for(7)
            await trio.sleep(3600)
            (alert,) = await store.list_alerts()
        # The 8th attempt would fall at 935 s, past the 600 s period: dead after the 7th.
        assert hook.times() == [0, 1, 5, 35, 95, 215, 455]
        assert {r.headers["webhook-id"] for _, r in hook.requests} == {"evt-0"}
        assert alert.status == "failed"
        assert alert.attempts == 7
        assert alert.last_error == "HTTP 500: boom"

    async def test_retry_after_is_honoured(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 429 with Retry-After delays the next attempt by that long."""
        hook = Hook(script=[httpx.Response(429, headers={"Retry-After": "120"})])
        async with sending(tmp_path, hook) as (store, _, _metrics):
            await hook.wait_for(2)
            await trio.testing.wait_all_tasks_blocked()
            (alert,) = await store.list_alerts()
        assert hook.times() == [0, 120]
        assert alert.status == "delivered"
        assert alert.attempts == 2

    @pytest.mark.parametrize("header", ["\u00b2", "\u0661\u0662\u0660", "1e3", "-5", "soon"])
    async def test_an_unreadable_retry_after_is_ignored_and_counted(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock, header: str
    ) -> None:
        """A 503 whose Retry-After is no number or date: the usual schedule, one count."""
        # Raw bytes, as a receiver sends them (httpx would encode a str header as ASCII).
        hook = Hook(script=[httpx.Response(503, headers=[(b"Retry-After", header.encode())])])
        async with sending(tmp_path, hook) as (store, _, metrics):
            await hook.wait_for(2)
            await trio.testing.wait_all_tasks_blocked()
            (alert,) = await store.list_alerts()
        assert hook.times() == [0, 1]
        assert alert.status == "delivered"
        ignored = metrics.registry.get_sample_value("certwatch_webhook_retry_after_ignored_total")
        assert ignored == 1

    async def test_a_retry_after_of_3000_years_is_capped_by_the_schedule_and_the_period(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A huge Retry-After waits at most an hour, and the alert fails when the period is over."""
        # Retry-After: 99999999999; the alert is not parked.
        parked = httpx.Response(503, headers={"Retry-After": "99999999999"})
        hook = Hook(default=lambda: parked)
        async with sending(tmp_path, hook, retry_period=3 * 3600) as (store, _, _metrics):
            await trio.sleep(5 * 3600)
            (alert,) = await store.list_alerts()
        assert hook.times() == [0, 3600, 7200, 10800]
        assert alert.status == "failed"

    async def test_a_bug_with_one_alert_does_not_stop_the_others(
        self,
        tmp_path: Path,
        autojump_clock: trio.testing.MockClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A delivery that raises is logged, counted and scheduled again; the rest go out."""
        real_payload = webhook_payload

        def payload(alert: Alert) -> dict[str, object]:
            if alert.event_id == "evt-0":
                raise RuntimeError("injected bug")
            return real_payload(alert)

        monkeypatch.setattr(webhook, "webhook_payload", payload)
        hook = Hook()
        async with sending(tmp_path, hook, alerts=2) as (store, _, metrics):
            await hook.wait_for(1)
            await trio.testing.wait_all_tasks_blocked()
            alerts = {a.event_id: a for a in await store.list_alerts()}
            broken, delivered = alerts["evt-0"], alerts["evt-1"]
            assert delivered.status == "delivered"
            assert (broken.status, broken.attempts) == ("pending", 1)
            assert broken.last_error == "internal error: RuntimeError"
            monkeypatch.setattr(webhook, "webhook_payload", real_payload)  # the bug is fixed
            await hook.wait_for(2)
        assert hook.times() == [0, 30]
        assert metrics.registry.get_sample_value("certwatch_webhook_total", {"result": "failure"})

    async def test_redirects_are_failures_not_followed(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 3xx is a failed attempt; the Location is never requested."""
        long_location = "https://elsewhere.example/" + "a" * 60_000
        hook = Hook(
            script=[
                httpx.Response(302, headers={"Location": "https://elsewhere.example/"}),
                httpx.Response(301, headers={"Location": long_location}),
            ]
        )
        async with sending(tmp_path, hook) as (store, _, metrics):
            await hook.wait_for(1)
            await trio.testing.wait_all_tasks_blocked()
            (alert,) = await store.list_alerts()
            assert alert.last_error == (
                "HTTP 302 redirect to https://elsewhere.example/ (not followed)"
            )
            await hook.wait_for(2)
            await trio.testing.wait_all_tasks_blocked()
            (alert,) = await store.list_alerts()
            assert alert.last_error is not None
            assert alert.last_error.startswith("HTTP 301 redirect to https://elsewhere.example/a")
            assert len(alert.last_error) <= 300
            await hook.wait_for(3)
        assert [str(r.url) for _, r in hook.requests] == ["https://hooks.example/certwatch"] * 3
        failures = metrics.registry.get_sample_value(
            "certwatch_webhook_total", {"result": "failure"}
        )
        assert failures == 2

    async def test_a_hanging_receiver_times_out(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An attempt that gets no answer within WEBHOOK_TIMEOUT_S fails and is retried."""
        calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            if calls == 1:
                await trio.sleep(3600)
            return httpx.Response(204)

        store = await SQLiteStore.open(tmp_path / "db", threaded=False)
        stored = await store.insert_alert(pending_alert(0, clock()))
        sender = WebhookSender(
            "https://hooks.example/", store, Metrics().outbox, PRODUCTION,
            timeout_s=10, retry_period_s=86400, clock=clock, rng=lambda: 0.5,
            transport=httpx.MockTransport(handler),
        )  # fmt: skip
        _send, receive = trio.open_memory_channel[int](4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run, receive)
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
        assert stored.id is not None
        alert = await store.get_alert(stored.id)
        store.close()
        assert alert is not None
        assert alert.status == "delivered"
        assert alert.attempts == 2
        assert calls == 2


class TestSignature:
    def test_signature_with_a_plain_secret(self) -> None:
        """A secret without the `whsec_` prefix signs with its UTF-8 bytes."""
        value = sign("plain-secret-value", "id1", 1700000000, b"{}")
        expected = base64.b64encode(
            hmac.new(b"plain-secret-value", b"id1.1700000000.{}", hashlib.sha256).digest()
        ).decode()
        assert value == f"v1,{expected}"
