"""From a matched certificate to a stored, decided alert.

The alerter owns the decisions: it deduplicates issuances, classifies against the in-memory
inventory, stores every alert before anything else happens, holds unrecognised ones for
``SUSPICIOUS_GRACE_S`` (the hold is stored, so it survives a restart), and reconciles held
and suspicious alerts when the inventory learns something new. Decided alerts go to the
webhook sender by id; the database row is the outbox, the channel only a fast path.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import attrs
import trio

from certwatch.core.alerts import (
    Alert,
    Kind,
    Severity,
    Status,
    decided,
    new_alert,
    resolved_follow_up,
)
from certwatch.core.identity import CertFacts
from certwatch.core.names import Match
from certwatch.core.observation import Observation
from certwatch.core.recognition import Inventory, Recognition
from certwatch.errors import StoreUnavailable
from certwatch.metrics import Metrics
from certwatch.store.sqlite import Store

__all__ = ["Alerter", "DedupeCache"]

log = logging.getLogger("certwatch.alerts")

T = TypeVar("T")

DEDUPE_CAPACITY = 200_000
"""Issuances remembered in memory; matched certificates are rare, so this is generous."""


class DedupeCache:
    """Issuance key -> alert id, oldest first, bounded in size and age."""

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int = DEDUPE_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> int | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def add(self, key: str, alert_id: int, stored_at: float) -> None:
        self._entries[key] = (alert_id, stored_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def prune(self, stored_before: float) -> int:
        """Forget issuances whose alert was stored before ``stored_before``; return how many."""
        stale = [k for k, (_, stored) in self._entries.items() if stored < stored_before]
        for key in stale:
            del self._entries[key]
        return len(stale)


@attrs.define
class _Hold:
    alert: Alert
    facts: list[CertFacts]
    """Facts of the first copy and of every duplicate seen during the hold."""


class Alerter:
    """Decides, stores and hands over alerts. Runs its hold timer as a task."""

    def __init__(
        self,
        store: Store,
        inventory: Inventory,
        metrics: Metrics,
        *,
        grace_s: float,
        retention_s: float,
        observer: bool,
        outbox: trio.MemorySendChannel[int] | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._inventory = inventory
        self._metrics = metrics
        self._grace_s = grace_s
        self._retention_s = retention_s
        self._observer = observer
        self._outbox = outbox
        self._clock = clock
        self.dedupe = DedupeCache()
        self._holds: dict[int, _Hold] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._holds_changed = trio.Event()
        metrics.mirror(metrics.dedupe_cache_size, lambda: len(self.dedupe))
        metrics.mirror(metrics.alerts_held, lambda: len(self._holds))

    @property
    def held(self) -> int:
        return len(self._holds)

    async def load(self) -> None:
        """Restore the dedupe cache and the holds from the database (at start)."""
        since = self._clock() - self._retention_s
        for issuance, alert_id, created_at in await self._store.recent_issuances(since):
            self.dedupe.add(issuance, alert_id, created_at)
        for alert in await self._store.held_alerts():
            self._hold(alert, alert.facts)

    # --- new matches ------------------------------------------------------------------------

    async def on_match(self, observation: Observation, match: Match) -> None:
        """Handle a certificate that matched the watch list."""
        facts = observation.facts
        issuance = facts.issuance_key()
        existing = self.dedupe.get(issuance)
        if existing is not None:
            await self._on_copy(existing, facts)
            return
        now = self._clock()
        recognition = self._inventory.recognise(facts)
        alert = new_alert(observation, match, event_id=str(uuid.uuid4()), now=now)
        if recognition is not None or self._grace_s == 0:
            alert = decided(alert, recognition, observer=self._observer, now=now)
        else:
            alert = attrs.evolve(alert, decide_at=now + self._grace_s)
        alert = await self._retry(lambda: self._store.insert_alert(alert))
        assert alert.id is not None
        self.dedupe.add(issuance, alert.id, alert.created_at)
        if alert.status is Status.HELD:
            log.info(
                "holding unrecognised certificate for %s (issuance %s) for %g s",
                ",".join(alert.matched_sans),
                issuance,
                self._grace_s,
            )
            self._hold(alert, facts)
        else:
            self._announce(alert)

    async def _on_copy(self, alert_id: int, facts: CertFacts) -> None:
        """Another copy of an issuance already alerted (another log, the final cert...)."""
        hold = self._holds.get(alert_id)
        if hold is not None:
            hold.facts.append(facts)
            await self._decide(alert_id, only_if_recognised=True)
            return
        recognition = self._inventory.recognise(facts)
        if recognition is None:
            return
        alert = await self._retry(lambda: self._store.get_alert(alert_id))
        if alert is not None and alert.severity is Severity.SUSPICIOUS and not alert.resolved_at:
            await self._resolve(alert, recognition)

    # --- holds ------------------------------------------------------------------------------

    def _hold(self, alert: Alert, facts: CertFacts) -> None:
        assert alert.id is not None
        assert alert.decide_at is not None
        self._holds[alert.id] = _Hold(alert, [facts])
        heapq.heappush(self._deadlines, (alert.decide_at, alert.id))
        self._holds_changed.set()

    async def run_holds(self) -> NoReturn:
        """Decide held alerts when their grace period ends."""
        while True:
            now = self._clock()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, alert_id = heapq.heappop(self._deadlines)
                if alert_id in self._holds:
                    await self._decide(alert_id)
            wait = self._deadlines[0][0] - now if self._deadlines else math.inf
            self._holds_changed = trio.Event()
            with trio.move_on_after(wait):
                await self._holds_changed.wait()

    async def _decide(self, alert_id: int, *, only_if_recognised: bool = False) -> None:
        """Decide a held alert now, with everything known at this moment.

        ``only_if_recognised``: leave it held unless some copy of it is now recognised.
        """
        hold = self._holds.get(alert_id)
        if hold is None:
            return
        recognition = None
        for facts in hold.facts:
            recognition = self._inventory.recognise(facts)
            if recognition is not None:
                break
        if recognition is None and only_if_recognised:
            return
        now = self._clock()
        verdict = decided(hold.alert, recognition, observer=self._observer, now=now)
        stored = await self._retry(lambda: self._store.decide(verdict))
        self._holds.pop(alert_id, None)
        if stored is not None:
            self._announce(stored)

    # --- registrations ----------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Re-check held and unresolved suspicious alerts after the inventory changed.

        A held alert that is now recognised is decided ``info`` at once; a suspicious one
        gets a follow-up ``resolved`` event.
        """
        for alert_id in list(self._holds):
            await self._decide(alert_id, only_if_recognised=True)
        since = self._clock() - self._retention_s
        for alert in await self._retry(lambda: self._store.unresolved_suspicious(since)):
            recognition = self._inventory.recognise(alert.facts)
            if recognition is not None:
                await self._resolve(alert, recognition)

    async def _resolve(self, alert: Alert, recognition: Recognition) -> None:
        assert alert.id is not None
        now = self._clock()
        follow_up = resolved_follow_up(
            alert, recognition, event_id=str(uuid.uuid4()), observer=self._observer, now=now
        )
        stored = await self._retry(lambda: self._store.resolve(follow_up))
        if stored is not None:
            self._metrics.alerts_resolved.inc()
            self._announce(stored)

    # --- hand-over --------------------------------------------------------------------------

    def _announce(self, alert: Alert) -> None:
        """Log a decided alert and offer it to the webhook sender."""
        assert alert.id is not None
        if alert.kind is Kind.ALERT:
            self._metrics.alerts.labels(alert.severity or Severity.SUSPICIOUS).inc()
        level = logging.WARNING if alert.severity is Severity.SUSPICIOUS else logging.INFO
        log.log(
            level,
            "%s %s: %s (issuer %s, serial %s)%s",
            alert.kind,
            alert.severity,
            ",".join(alert.matched_sans),
            alert.cert.issuer_cn,
            alert.cert.serial,
            f" recognised by {alert.recognised_by.evidence}" if alert.recognised_by else "",
        )
        if alert.status is Status.PENDING and self._outbox is not None:
            # When the channel is full, the sender finds it in the outbox table on its next poll.
            with contextlib.suppress(trio.WouldBlock):
                self._outbox.send_nowait(alert.id)

    async def _retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Retry a store operation through transient faults: an alert is never dropped."""
        delay = 0.5
        while True:
            try:
                return await operation()
            except StoreUnavailable as e:
                problem = str(e)
            log.error("cannot store alert state, retrying in %.1f s: %s", delay, problem)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)
