"""From a matched certificate to a stored, decided alert: the I/O around the decision.

What a match means is decided in :mod:`certwatch.core.decision`; the alerter stores every
alert before anything else happens, runs the hold timer (holds are stored, so they survive
a restart), re-checks held and suspicious alerts when the inventory learns something new,
and hands decided alerts to the webhook sender by id (the database row is the outbox, the
channel only a fast path).

Three tasks call the alerter: the pipeline (new matches), its own hold timer, and API
requests (after a registration). Its operations are serialised by one lock, so a decision
always sees the holds and the issuances the previous one left, whatever the interleaving.

Replicas on one database: the database keeps one alert per issuance (a replica that loses
the race gets the stored alert and treats its certificate as another copy), and every
verdict is a conditional update (a held alert is decided once, a suspicious one resolved
once), so any replica may decide. The hold timer runs on the leader only
(:attr:`Alerter.leading`), which takes up every alert held in the database, its own or
not; a decision waits for views no older than 2 s (``fresh``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import trio

from certwatch.core.alerts import Alert, Kind, Severity, Status, decided
from certwatch.core.backoff import Backoff
from certwatch.core.decision import DedupeCache, Holds, KnownIssuance, decide, follow_up
from certwatch.core.names import Match
from certwatch.core.observation import Observation
from certwatch.core.recognition import Inventory, Recognition
from certwatch.errors import StoreUnavailable
from certwatch.metrics import Metrics
from certwatch.store import Store

__all__ = ["Alerter"]

log = logging.getLogger("certwatch.alerts")

T = TypeVar("T")

STORE_RETRY_INITIAL_S = 0.5
STORE_RETRY_MAX_S = 30.0
"""Writing alert state through a database fault: retried from half a second, up to every
30 s, for as long as it takes."""
HOLDS_POLL_S = 1.0
"""On a shared database, the leader looks for alerts held by other replicas this often."""


async def _always_fresh() -> None:
    """Views that nothing else changes are always fresh."""


class Alerter:
    """Decides, stores and hands over alerts. Runs its hold timer as a task.

    ``outbox`` is where decided alerts go for delivery; ``None`` is observer mode (no
    ``WEBHOOK_URL``): alerts are decided ``observed`` and only logged.
    """

    def __init__(
        self,
        store: Store,
        inventory: Inventory,
        metrics: Metrics,
        *,
        grace_s: float,
        retention_s: float,
        outbox: trio.MemorySendChannel[int] | None,
        clock: Callable[[], float] = time.time,
        fresh: Callable[[], Awaitable[None]] = _always_fresh,
    ) -> None:
        self._store = store
        self._fresh = fresh
        self.leading = True
        """This replica runs the hold timer (always, on SQLite)."""
        self._inventory = inventory
        self._metrics = metrics
        self._grace_s = grace_s
        self._retention_s = retention_s
        self._outbox = outbox
        self._observer = outbox is None
        self._clock = clock
        self._lock = trio.Lock()
        self._dedupe = DedupeCache()
        self._holds = Holds()
        self._holds_changed = trio.Event()
        metrics.mirror(metrics.dedupe_cache_size, lambda: len(self._dedupe))
        metrics.mirror(metrics.alerts_held, lambda: len(self._holds))

    @property
    def held(self) -> int:
        return len(self._holds)

    @property
    def remembered(self) -> int:
        """Issuances remembered to suppress duplicates (the dedupe cache)."""
        return len(self._dedupe)

    async def load(self) -> None:
        """Restore the remembered issuances and the holds from the database (at start)."""
        since = self._clock() - self._retention_s
        for issuance, alert_id, created_at in await self._store.recent_issuances(since):
            self._dedupe.add(issuance, alert_id, created_at)
        for alert in await self._store.held_alerts():
            self._holds.hold(alert)

    def forget_before(self, stored_before: float) -> int:
        """Forget issuances whose alert was stored before ``stored_before`` (cleanup)."""
        return self._dedupe.prune(stored_before)

    # --- new matches ------------------------------------------------------------------------

    async def on_match(self, observation: Observation, match: Match) -> None:
        """Handle a certificate that matched the watch list."""
        async with self._lock:
            await self._fresh()
            decision = decide(
                observation,
                match,
                known=self._dedupe.get,
                inventory=self._inventory,
                grace_s=self._grace_s,
                observer=self._observer,
                now=self._clock(),
                event_id=str(uuid.uuid4()),
            )
            if isinstance(decision, KnownIssuance):
                await self._on_copy(decision)
                return
            alert = await self._retry(lambda: self._store.insert_alert(decision.alert))
            assert alert.id is not None
            self._dedupe.add(alert.issuance, alert.id, alert.created_at)
            if alert.event_id != decision.alert.event_id:
                # Another replica stored this issuance first: this is another copy of it.
                recognition = self._inventory.recognise(observation.facts)
                await self._on_copy(KnownIssuance(alert.id, observation.facts, recognition))
                return
            if alert.status is not Status.HELD:
                self._announce(alert)
                return
            if not self.leading:
                return  # the leader's hold timer takes it up from the database
            log.info(
                "holding unrecognised certificate for %s (issuance %s) for %g s",
                ",".join(alert.matched_sans),
                alert.issuance,
                self._grace_s,
            )
            self._holds.hold(alert)
            self._holds_changed.set()

    async def _on_copy(self, copy: KnownIssuance) -> None:
        """Another copy of an issuance already alerted: it may recognise a held alert now,
        or resolve a suspicious one."""
        recognised = copy.recognition is not None
        if self._holds.add_copy(copy.alert_id, copy.facts, recognised=recognised):
            if copy.recognition is not None:
                await self._settle(copy.alert_id, only_if_recognised=True)
            return
        if copy.recognition is None:
            return
        alert = await self._retry(lambda: self._store.get_alert(copy.alert_id))
        if alert is None:
            return
        if alert.status is Status.HELD:  # held by another replica's timer
            await self._decide_held(alert, copy.recognition)
        else:
            await self._resolve(alert, copy.recognition)

    async def _decide_held(self, alert: Alert, recognition: Recognition) -> None:
        """Decide a held alert this replica does not hold in memory: ``info``, now."""
        verdict = decided(alert, recognition, observer=self._observer, now=self._clock())
        stored = await self._retry(lambda: self._store.decide(verdict))
        if stored is not None:
            self._announce(stored)

    # --- holds ------------------------------------------------------------------------------

    async def run_holds(self, *, adopt_every_s: float | None = None) -> NoReturn:
        """Decide held alerts when their grace period ends (the leader's duty).

        With ``adopt_every_s`` (a shared database), also take up every alert held in the
        database that often: those other replicas stored, and those a dead leader held.
        """
        try:
            self.leading = True
            while True:
                if adopt_every_s is not None:
                    await self._adopt_holds()
                for alert_id in self._holds.due(self._clock()):
                    async with self._lock:
                        await self._settle(alert_id)
                deadline = self._holds.next_deadline()
                wait = math.inf if deadline is None else max(0.0, deadline - self._clock())
                if adopt_every_s is not None:
                    wait = min(wait, adopt_every_s)
                self._holds_changed = trio.Event()
                with trio.move_on_after(wait):
                    await self._holds_changed.wait()
        finally:
            if adopt_every_s is not None:  # no longer the leader: another takes them up
                self.leading = False
                for alert_id in self._holds.ids():
                    self._holds.release(alert_id)

    async def _adopt_holds(self) -> None:
        """Hold what the database holds, and let go of what it no longer does."""
        held = await self._retry(self._store.held_alerts)
        async with self._lock:
            ids = set()
            for alert in held:
                assert alert.id is not None
                ids.add(alert.id)
                if alert.id not in self._holds:
                    self._holds.hold(alert)
            for alert_id in self._holds.ids():
                if alert_id not in ids:
                    self._holds.release(alert_id)

    async def _settle(self, alert_id: int, *, only_if_recognised: bool = False) -> None:
        """Decide a held alert now, with everything known at this moment (see
        :meth:`Holds.verdict`). Called with the lock held."""
        await self._fresh()
        verdict = self._holds.verdict(
            alert_id,
            self._inventory,
            observer=self._observer,
            now=self._clock(),
            only_if_recognised=only_if_recognised,
        )
        if verdict is None:
            return
        stored = await self._retry(lambda: self._store.decide(verdict))
        self._holds.release(alert_id)
        if stored is not None:
            self._announce(stored)

    # --- registrations ----------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Re-check held and unresolved suspicious alerts after the inventory changed.

        A held alert that is now recognised is decided ``info`` at once; a suspicious one
        gets a follow-up ``resolved`` event.
        """
        async with self._lock:
            for alert_id in self._holds.ids():
                await self._settle(alert_id, only_if_recognised=True)
            if self._store.shared:  # alerts held by the leader's timer, elsewhere
                for alert in await self._retry(self._store.held_alerts):
                    if alert.id in self._holds:
                        continue
                    recognition = self._inventory.recognise(alert.facts)
                    if recognition is not None:
                        await self._decide_held(alert, recognition)
            since = self._clock() - self._retention_s
            for alert in await self._retry(lambda: self._store.unresolved_suspicious(since)):
                await self._resolve(alert, self._inventory.recognise(alert.facts))

    async def _resolve(self, alert: Alert, recognition: Recognition | None) -> None:
        event = follow_up(
            alert,
            recognition,
            observer=self._observer,
            now=self._clock(),
            event_id=str(uuid.uuid4()),
        )
        if event is None:
            return
        stored = await self._retry(lambda: self._store.resolve(event))
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
        backoff = Backoff(STORE_RETRY_INITIAL_S, STORE_RETRY_MAX_S)
        while True:
            try:
                return await operation()
            except StoreUnavailable as e:
                problem = str(e)
            delay = backoff.next()
            log.error("cannot store alert state, retrying in %.1f s: %s", delay, problem)
            await trio.sleep(delay)
