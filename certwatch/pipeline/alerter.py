"""From a matched certificate to a stored, decided alert: the I/O around the decisions.

What a match means, and when it is decided, is :class:`certwatch.core.decision.Decisions`'s
(no I/O): the alerter feeds it what happens and makes the store operations it asks for,
storing every alert before anything else happens, runs the hold timer (holds are stored,
so they survive a restart), re-checks held and suspicious alerts when the inventory learns
something new, and hands decided alerts to the webhook sender by id (the database row is
the outbox, the channel only a fast path).

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
import functools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NoReturn, TypeVar

import trio

from certwatch.core.alerts import AckScope, Alert, Kind, Severity, Status
from certwatch.core.caa import CaaFinding
from certwatch.core.cas import CAIdentity
from certwatch.core.decision import (
    Action,
    CheckCaa,
    Decisions,
    Fetch,
    Policy,
    StoreAlert,
    StoreFollowUp,
    StoreVerdict,
)
from certwatch.core.lookalikes import LookalikeHit
from certwatch.core.names import Match
from certwatch.core.observation import Observation
from certwatch.core.policy import Rule
from certwatch.core.recognition import Inventory, KnownKey
from certwatch.errors import StoreUnavailable
from certwatch.metrics import AlertMetrics
from certwatch.retry import Retrying, retrying
from certwatch.settings import PRODUCTION_TIMING, Timing
from certwatch.store import Acknowledged, AlerterStore

__all__ = ["Alerter"]

log = logging.getLogger(__name__)

T = TypeVar("T")

HOLDS_POLL_S = 1.0
"""On a shared database, the leader looks for alerts held by other replicas this often."""
CAA_CHECKS_WAITING = 1024
"""Decisions waiting for their CAA evaluation; past this, one is decided without it."""
CAA_CHECKS_AT_ONCE = 256
"""CAA evaluations in flight at once (each bounded by ``CAA_TIMEOUT_S``, waiting included)."""

CaaCheck = Callable[[Alert, CAIdentity | None], Awaitable[CaaFinding]]


async def _always_fresh() -> None:
    """Views that nothing else changes are always fresh."""


class Alerter:
    """Decides, stores and hands over alerts. Runs its hold timer as a task.

    ``outbox`` is where decided alerts go for delivery; ``None`` is observer mode (no
    ``WEBHOOK_URL``): alerts are decided ``observed`` and only logged.
    """

    def __init__(
        self,
        store: AlerterStore,
        inventory: Inventory,
        metrics: AlertMetrics,
        *,
        grace_s: float,
        retention_s: float,
        outbox: trio.MemorySendChannel[int] | None,
        policy: Policy | None = None,
        caa: CaaCheck | None = None,
        timing: Timing = PRODUCTION_TIMING,
        clock: Callable[[], float] = time.time,
        fresh: Callable[[], Awaitable[None]] = _always_fresh,
    ) -> None:
        self._store = store
        self._timing = timing
        self._fresh = fresh
        self.leading = True
        """This replica runs the hold timer (always, on SQLite)."""
        self._inventory = inventory
        self._metrics = metrics
        self._retention_s = retention_s
        self._outbox = outbox
        self._clock = clock
        self._lock = trio.Lock()
        self._changes = 0
        """Bumped, under the lock, by whatever may decide or release a hold here: the
        leader's read of the held alerts is stale if it changed during the read."""
        self._decisions = Decisions(
            grace_s=grace_s,
            observer=outbox is None,
            new_event_id=lambda: str(uuid.uuid4()),
            policy=policy,
        )
        self._holds_changed = trio.Event()
        self._caa = caa
        self._checks, self._checks_receive = trio.open_memory_channel[CheckCaa](CAA_CHECKS_WAITING)
        metrics.dedupe_cache_size.set_function(lambda: self._decisions.remembered)
        metrics.held.set_function(lambda: self._decisions.held)

    @property
    def held(self) -> int:
        return self._decisions.held

    @property
    def remembered(self) -> int:
        """Issuances remembered to suppress duplicates (the dedupe cache)."""
        return self._decisions.remembered

    async def load(self) -> None:
        """Restore the remembered issuances and the holds from the database (at start)."""
        since = self._clock() - self._retention_s
        self._decisions.remember(await self._store.recent_issuances(since))
        self._decisions.take_up(await self._store.held_alerts())

    def forget_before(self, stored_before: float) -> int:
        """Forget issuances whose alert was stored before ``stored_before`` (cleanup)."""
        return self._decisions.forget_before(stored_before)

    # --- what happens ---------------------------------------------------------------------------

    async def on_match(
        self,
        observation: Observation,
        match: Match,
        lookalikes: tuple[LookalikeHit, ...] = (),
    ) -> None:
        """Handle a certificate that matched the watch list, or (``match`` without entries)
        whose names imitate brands (``lookalikes``)."""
        async with self._lock:
            now = self._clock()
            if not match.entries:
                await self._make(self._decisions.lookalike(observation, lookalikes, now=now))
                return
            await self._fresh()
            await self._make(
                self._decisions.match(observation, match, inventory=self._inventory, now=now)
            )

    async def run_holds(self, *, adopt_every_s: float | None = None) -> NoReturn:
        """Decide held alerts when their grace period ends (the leader's duty).

        With ``adopt_every_s`` (a shared database), also take up every alert held in the
        database that often: those other replicas stored, and those a dead leader held.
        """
        try:
            self.leading = True
            while True:
                if adopt_every_s is not None:
                    changes = self._changes
                    held = await self._retry(self._store.held_alerts)
                    async with self._lock:
                        if changes != self._changes:  # decided meanwhile: read them again
                            held = await self._retry(self._store.held_alerts)
                        self._decisions.take_up(held)
                async with self._lock:
                    await self._fresh()
                    await self._make(self._decisions.due(self._clock(), inventory=self._inventory))
                deadline = self._decisions.next_deadline()
                wait = math.inf if deadline is None else max(0.0, deadline - self._clock())
                if adopt_every_s is not None:
                    wait = min(wait, adopt_every_s)
                self._holds_changed = trio.Event()
                with trio.move_on_after(wait):
                    await self._holds_changed.wait()
        finally:
            if adopt_every_s is not None:  # no longer the leader: another takes them up
                self.leading = False
                self._decisions.let_go()

    async def reconcile(self) -> None:
        """Re-check held and unresolved suspicious alerts after the inventory changed.

        A held alert that is now recognised is decided ``info`` at once; a suspicious one
        gets a follow-up ``resolved`` event.
        """
        async with self._lock:
            await self._fresh()
            now = self._clock()
            await self._make(self._decisions.recheck(self._inventory, now=now))
            stored: list[Alert] = []
            if self._store.shared:  # alerts held by the leader's timer, elsewhere
                stored.extend(await self._retry(self._store.held_alerts))
            since = now - self._retention_s
            stored.extend(await self._retry(lambda: self._store.unresolved_suspicious(since)))
            await self._make(self._decisions.recheck_stored(stored, self._inventory, now=now))

    async def acknowledge(
        self,
        alert: Alert,
        scope: AckScope,
        note: str,
        store: Callable[
            [int, Callable[[Alert, Sequence[Rule]], Alert], Sequence[Rule], KnownKey | None],
            Awaitable[Acknowledged | None],
        ],
    ) -> Acknowledged | None:
        """An analyst acknowledged ``alert`` (as read just now): decide it and store what
        the acknowledgement creates, in one transaction through ``store`` (the views'), and
        send what it decided. Raises :class:`~certwatch.errors.InputError` (422: the scope
        needs what the alert lacks) or :class:`~certwatch.errors.Conflict` (409); ``None``
        when the alert is gone. Not retried: the API answers 503 through a fault."""
        assert alert.id is not None
        async with self._lock:
            now = self._clock()
            rules, key = self._decisions.effects(alert, scope, note, now=now)
            outcome = self._decisions.acknowledgement(alert, scope, note, now=now)
            done = await store(alert.id, outcome, rules, key)
            self._changes += 1
            if done is not None:
                self._decisions.acknowledged(alert.id)
                if done.alert.kind is Kind.RESOLVED:
                    self._metrics.resolved.inc()
                self._announce(done.alert)
        return done

    async def run_caa_checks(self) -> NoReturn:
        """Evaluate CAA for the decisions that ask for it, beside the feed: each check in a
        task of its own, bounded by ``CAA_TIMEOUT_S``, then decided under the lock."""
        limit = trio.Semaphore(CAA_CHECKS_AT_ONCE)
        async with trio.open_nursery() as nursery:
            async for check in self._checks_receive:
                nursery.start_soon(self._check_caa, check, limit)
        raise AssertionError("the channel of CAA checks never closes")

    async def _check_caa(self, check: CheckCaa, limit: trio.Semaphore) -> None:
        assert check.alert.id is not None
        assert self._caa is not None
        async with limit:
            finding = await self._caa(check.alert, check.ca)
        async with self._lock:
            await self._fresh()
            now = self._clock()
            actions = self._decisions.caa_checked(
                check.alert.id, finding, inventory=self._inventory, now=now
            )
            await self._make(actions)

    # --- doing what the decisions ask -----------------------------------------------------------

    async def _make(self, actions: Iterable[Action]) -> None:
        """Make the store operations ``actions`` asks for (and those their answers lead
        to), each retried through database faults; send what they decided."""
        self._changes += 1
        for action in actions:
            now = self._clock()
            match action:
                case StoreAlert(alert):
                    stored = await self._retry(functools.partial(self._store.insert_alert, alert))
                    more = self._decisions.stored(
                        alert, stored, inventory=self._inventory, now=now, hold=self.leading
                    )
                    if stored.event_id == alert.event_id:
                        self._stored_new(stored)
                    await self._make(more)
                case StoreVerdict(verdict):
                    decided = await self._retry(functools.partial(self._store.decide, verdict))
                    if decided is not None:
                        self._announce(decided)
                case StoreFollowUp(event):
                    resolved = await self._retry(functools.partial(self._store.resolve, event))
                    if resolved is not None:
                        self._metrics.resolved.inc()
                        self._announce(resolved)
                case Fetch(alert_id, recognition):
                    fetched = await self._retry(functools.partial(self._store.get_alert, alert_id))
                    if fetched is not None:
                        await self._make(self._decisions.fetched(fetched, recognition, now=now))
                case CheckCaa(alert):
                    try:
                        self._checks.send_nowait(action)
                    except trio.WouldBlock:  # a flood: decided now rather than late
                        log.warning("%d decisions wait for CAA: %s decided without it",
                                    CAA_CHECKS_WAITING, alert.issuance)  # fmt: skip
                        assert alert.id is not None
                        await self._make(self._decisions.caa_checked(
                            alert.id, None, inventory=self._inventory, now=now
                        ))  # fmt: skip

    def _stored_new(self, alert: Alert) -> None:
        if alert.status is not Status.HELD:
            self._announce(alert)
        elif self.leading:
            log.info(
                "holding unrecognised certificate for %s (issuance %s) until %.0f",
                ",".join(alert.matched_sans), alert.issuance, alert.decide_at or 0,
            )  # fmt: skip
            self._holds_changed.set()

    def _announce(self, alert: Alert) -> None:
        """Log a decided alert and offer it to the webhook sender."""
        assert alert.id is not None
        if alert.kind is Kind.ALERT:
            self._metrics.alerts.labels(alert.severity or Severity.SUSPICIOUS).inc()
        alarming = alert.severity in (Severity.SUSPICIOUS, Severity.CRITICAL, Severity.LOOKALIKE)
        level = logging.WARNING if alarming else logging.INFO
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
        """Retry a store operation through transient faults, for as long as it takes: an
        alert is never dropped."""
        t = self._timing
        return await retrying(
            operation,
            Retrying(t.store_retry_initial_s, t.store_retry_max_s),
            on=StoreUnavailable,
            log=log,
            what="cannot store alert state",
            level=lambda e: logging.ERROR,
        )
