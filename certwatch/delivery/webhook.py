"""Webhook delivery from the alert outbox, at least once.

The alerts table is the outbox. The sender is fed alert ids by a memory channel (the fast
path) and also polls the table for due alerts (after a restart, after an overflow, for
retries), so the channel can stay small and memory flat however large the backlog.

A new alert gets the contract's three quick attempts (waiting 1 s, then 4 s). If they
fail, it stays ``pending`` and is retried on a growing, jittered schedule (honouring
``Retry-After`` on 429 and 503) until ``WEBHOOK_RETRY_PERIOD_S`` has passed since it was
queued; then it is ``failed`` with its last error, until an operator re-queues it.

Every attempt carries Standard Webhooks headers: ``webhook-id`` (the alert's event id, the
same on every retry, so receivers can drop duplicates), ``webhook-timestamp`` and, with a
secret, ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``).
Redirects are not followed. Deliveries run concurrently (a bounded number), so one slow
receiver response never holds up the feed, and a dead receiver never holds up shutdown.

Replicas share the outbox: an alert is *claimed* before each attempt, for the attempt's
timeout plus a margin (:data:`LEASE_MARGIN_S`), so one replica sends it at a time; a claim
of a replica that died expires, and another replica delivers the alert.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import random
import time
from collections.abc import Callable
from typing import NoReturn

import attrs
import httpx
import msgspec
import trio

from certwatch.core.alerts import Alert, Status, webhook_payload
from certwatch.core.schedule import QUICK_ATTEMPTS, RetryPolicy, parse_retry_after
from certwatch.core.text import storable_or_none
from certwatch.errors import BodyError, StoreError, StoreUnavailable
from certwatch.httpclient import new_client, read_bounded
from certwatch.metrics import OutboxMetrics
from certwatch.settings import Timing
from certwatch.store import OutboxStats, OutboxStore

__all__ = ["CONCURRENCY", "WebhookSender", "sign"]

log = logging.getLogger(__name__)

CONCURRENCY = 4
"""Deliveries in flight at once."""
LEASE_MARGIN_S = 10.0
"""A claim lasts the attempt's timeout plus this: time to record the attempt."""
_MAX_ERROR_BODY = 200
"""How much of an error response's body goes into ``last_error``."""
MAX_ERROR = 300
"""``last_error`` is cut to this many characters (a receiver's redirect Location was 60 KB)."""
_READ_ERROR_BODY = 4096
"""Error bodies are read only up to this announced size, and up to this size decoded."""


def _queued_at(alert: Alert) -> float:
    """When the alert last entered the outbox: its retry period counts from there."""
    return alert.queued_at if alert.queued_at is not None else alert.created_at


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value for one attempt.

    A ``whsec_``-prefixed secret is base64 (the Standard Webhooks convention); any other
    secret is used as its UTF-8 bytes.
    """
    key = _secret_bytes(secret)
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


@attrs.frozen
class _Outcome:
    delivered: bool
    error: str | None = attrs.field(default=None, converter=storable_or_none)
    """What went wrong, as the receiver or the connection said it (storable on any database)."""
    retry_after: float | None = None


class WebhookSender:
    """Delivers pending alerts to ``WEBHOOK_URL``."""

    def __init__(
        self,
        url: str,
        store: OutboxStore,
        metrics: OutboxMetrics,
        timing: Timing,
        *,
        timeout_s: float,
        retry_period_s: float,
        secret: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
        claimer: str = "certwatch",
    ) -> None:
        self._url = url
        self._claimer = claimer
        """This replica's name on its claims."""
        self._store = store
        self._metrics = metrics
        self._timing = timing
        self._timeout_s = timeout_s
        self._policy = RetryPolicy(
            quick_delays_s=timing.webhook_retry_delays_s,
            backoff_s=timing.webhook_backoff_s,
            backoff_max_s=timing.webhook_backoff_max_s,
            retry_period_s=retry_period_s,
        )
        self._secret = secret
        self._clock = clock
        self._rng = rng
        self._transport = transport
        self._in_flight: set[int] = set()
        self._poke = trio.Event()
        self.stats = OutboxStats(pending=0, failed=0, oldest_pending_at=None)

    def wake(self) -> None:
        """Look at the outbox now (after an operator re-queued alerts)."""
        self._poke.set()

    async def run(self, receive: trio.MemoryReceiveChannel[int]) -> NoReturn:
        async with (
            new_client(self._timeout_s, transport=self._transport) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self._poll, nursery, client)
            async for alert_id in receive:
                if len(self._in_flight) < CONCURRENCY:
                    self._start(nursery, client, alert_id)
                else:
                    self._poke.set()
        raise AssertionError("the outbox channel closed")  # pragma: no cover

    def _start(
        self,
        nursery: trio.Nursery,
        client: httpx.AsyncClient,
        alert_id: int,
        claimed: Alert | None = None,
    ) -> None:
        # The poller's query runs in a thread while the channel may start the same alert: the
        # in-flight set, checked here in the event loop, is what keeps one delivery per alert
        # in this replica (claims keep one across replicas).
        if alert_id in self._in_flight:
            return
        self._in_flight.add(alert_id)
        nursery.start_soon(self._deliver, client, alert_id, claimed)

    def _lease(self, now: float) -> float:
        return now + self._timeout_s + LEASE_MARGIN_S

    async def _claim(self, alert_id: int) -> Alert | None:
        """Claim the alert for one attempt (``None``: another replica has it, or it is not
        pending any more); counted won or lost."""
        now = self._clock()
        claim = await self._store.claim(
            alert_id, now, claimer=self._claimer, until=self._lease(now)
        )
        if claim.alert is not None:
            self._metrics.claims.labels("won").inc()
        elif claim.lost:
            self._metrics.claims.labels("lost").inc()
        return claim.alert

    async def _poll(self, nursery: trio.Nursery, client: httpx.AsyncClient) -> NoReturn:
        """Start due deliveries from the table."""
        while True:
            wait = self._timing.outbox_poll_s
            try:
                free = CONCURRENCY - len(self._in_flight)
                if free > 0:
                    now = self._clock()
                    due = await self._store.claim_due(
                        now, free, claimer=self._claimer, until=self._lease(now)
                    )
                    self._metrics.claims.labels("won").inc(len(due))
                    for alert in due:
                        assert alert.id is not None
                        self._start(nursery, client, alert.id, alert)
                next_due = await self._store.next_due_at()
            except StoreUnavailable as e:
                log.warning("outbox unavailable, retrying in %g s: %s", wait, e)
                next_due = None
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - self._clock()))
            if len(self._in_flight) >= CONCURRENCY:
                wait = math.inf  # a finished delivery pokes
            self._poke = trio.Event()
            with trio.move_on_after(wait):
                await self._poke.wait()

    async def refresh_stats(self) -> None:
        """Read the outbox's depth into ``stats`` and the gauges.

        Done whenever they are shown (``/metrics``, ``/healthz``), so they always agree with
        the table, and ``stats`` keeps the last values if the database is unavailable.
        """
        try:
            stats = self.stats = await self._store.outbox_stats()
        except StoreError as e:
            log.warning("outbox statistics unavailable, showing the last ones: %s", e)
            stats = self.stats
        m = self._metrics
        m.pending.set(stats.pending)
        m.failed.set(stats.failed)
        oldest = stats.oldest_pending_at
        m.oldest_pending_age.set(0 if oldest is None else max(0.0, self._clock() - oldest))

    async def _deliver(
        self, client: httpx.AsyncClient, alert_id: int, claimed: Alert | None
    ) -> None:
        alert = claimed
        try:
            if alert is None:
                alert = await self._claim(alert_id)  # None: another replica has it, or done
            if alert is not None:
                await self._attempts(client, alert)
        except StoreUnavailable as e:
            # The row stays pending as it was: the poller tries again (at least once).
            log.warning("outbox unavailable while delivering alert %d: %s", alert_id, e)
        except Exception as e:  # contained: one alert's bug must not stop the rest
            # A bug here used to crash the process again after every restart, and no alert
            # was delivered at all. Logged with its traceback, counted as a failed attempt,
            # and the alert goes on the retry schedule (so it ends `failed`, and is paged on,
            # if the bug stays).
            log.exception("internal error delivering alert %d", alert_id)
            self._metrics.attempts.labels("failure").inc()
            if alert is not None:
                await self._record_internal_error(alert, e)
        finally:
            self._in_flight.discard(alert_id)
            self._poke.set()

    async def _record_internal_error(self, alert: Alert, error: Exception) -> None:
        assert alert.id is not None
        now = self._clock()
        plan = self._policy.next_attempt(
            max(alert.attempts + 1, QUICK_ATTEMPTS),  # straight to the long schedule
            retry_after=None,
            queued_at=_queued_at(alert),
            now=now,
            rng=self._rng,
        )
        try:
            await self._store.record_attempt(
                alert.id,
                status=plan.status,
                error=f"internal error: {type(error).__name__}",
                now=now,
                next_attempt_at=now + plan.delay_s,
            )
        except StoreUnavailable as e:
            log.warning("outbox unavailable while recording alert %d: %s", alert.id, e)

    async def _attempts(self, client: httpx.AsyncClient, alert: Alert) -> None:
        """The quick attempts still owed to this alert, or one scheduled retry."""
        assert alert.id is not None
        body = msgspec.json.encode(webhook_payload(alert))
        attempts = alert.attempts
        while True:
            outcome = await self._attempt(client, alert, body)
            attempts += 1
            now = self._clock()
            if outcome.delivered:
                # Shielded: a shutdown arriving now must not make the next start send it again.
                with trio.CancelScope(shield=True):
                    await self._store.record_attempt(
                        alert.id, status=Status.DELIVERED, error=None, now=now
                    )
                log.info("delivered %s %s (event %s)", alert.kind, alert.severity, alert.event_id)
                return
            plan = self._policy.next_attempt(
                attempts,
                retry_after=outcome.retry_after,
                queued_at=_queued_at(alert),
                now=now,
                rng=self._rng,
            )
            await self._store.record_attempt(
                alert.id,
                status=plan.status,
                error=outcome.error,
                now=now,
                next_attempt_at=now + plan.delay_s,
            )
            if plan.give_up:
                log.error(
                    "giving up on %s %s (event %s) after %d attempts: %s",
                    alert.kind,
                    alert.severity,
                    alert.event_id,
                    attempts,
                    outcome.error,
                )
                return
            log.warning(
                "webhook attempt %d for event %s failed (%s); next in %.1f s",
                attempts,
                alert.event_id,
                outcome.error,
                plan.delay_s,
            )
            if not plan.quick:
                return  # the poller picks it up when it is due
            await trio.sleep(plan.delay_s)
            if await self._claim(alert.id) is None:
                return  # another replica took it over meanwhile

    async def _attempt(self, client: httpx.AsyncClient, alert: Alert, body: bytes) -> _Outcome:
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": alert.event_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._secret:
            headers["webhook-signature"] = sign(self._secret, alert.event_id, timestamp, body)
        started = time.perf_counter()
        outcome = _Outcome(delivered=False, error="no response")
        try:
            with trio.fail_after(self._timeout_s):
                async with client.stream("POST", self._url, content=body, headers=headers) as r:
                    outcome = await self._judge(r)
        except trio.TooSlowError:
            outcome = _Outcome(delivered=False, error=f"timed out after {self._timeout_s:g} s")
        except httpx.TimeoutException as e:
            outcome = _Outcome(delivered=False, error=f"timed out: {type(e).__name__}")
        except httpx.HTTPError as e:
            outcome = _Outcome(delivered=False, error=f"{type(e).__name__}: {e}"[:MAX_ERROR])
        finally:
            self._metrics.duration.observe(time.perf_counter() - started)
            result = "success" if outcome.delivered else "failure"
            self._metrics.attempts.labels(result).inc()
        return outcome

    async def _judge(self, response: httpx.Response) -> _Outcome:
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(delivered=True)
        # A short error body goes into the message; a long or unannounced one is not read
        # at all (the connection is closed with the response instead).
        text = ""
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= _READ_ERROR_BODY:
            try:
                body = await read_bounded(response, _READ_ERROR_BODY)
            except BodyError as e:
                body = f"(an error body that was not read: {e})".encode()
            text = " ".join(body[:_MAX_ERROR_BODY].decode("utf-8", "replace").split())
        error = f"HTTP {status}" + (f": {text}" if text else "")
        if 300 <= status < 400:
            location = response.headers.get("location", "?")[:_MAX_ERROR_BODY]
            error = f"HTTP {status} redirect to {location} (not followed)"
        retry_after = None
        if status in (429, 503):
            header = response.headers.get("retry-after")
            retry_after = parse_retry_after(header, self._clock())
            if header is not None and retry_after is None:
                self._metrics.retry_after_ignored.inc()
                log.warning("ignoring an unreadable Retry-After: %r", header[:100])
        return _Outcome(delivered=False, error=error[:MAX_ERROR], retry_after=retry_after)
