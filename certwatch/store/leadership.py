"""The leader role among replicas: who runs the duties that must run once.

Every replica reads the feed, stores alerts (one per issuance: the database decides),
delivers the outbox (claims) and serves the API. Some work must run on one replica at a
time: the hold timer (deciding held alerts at the end of their grace period), cleanup,
and back-fill with the saving of CT log positions. The replica that holds the leader role
runs them; the store says who that is (a PostgreSQL session-level advisory lock, which
dies with its connection, so a dead leader's role is free as soon as the database sees the
connection gone; on SQLite the one process always leads).

A replica that is not the leader tries to take the role every :data:`CHECK_S`; the
leader checks it still holds it as often, and stops its duties at once when it does not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from certwatch.errors import StoreError
from certwatch.metrics import StoreMetrics
from certwatch.store import LeadershipStore

__all__ = ["CHECK_S", "Leadership"]

log = logging.getLogger(__name__)

CHECK_S = 1.0
"""How often a replica tries to take the role, and the leader checks it still holds it."""

Duties = Callable[[trio.Nursery], Awaitable[None]]
"""Starts the leader's tasks in the nursery it is given (cancelled when the role is lost)."""


class Leadership:
    """Takes the leader role when it is free and runs the duties it is given while holding
    it (:meth:`run`)."""

    def __init__(
        self,
        store: LeadershipStore,
        metrics: StoreMetrics,
        *,
        check_s: float = CHECK_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._check_s = check_s
        self._clock = clock
        self.leading = False
        self.since: float | None = None
        """When this replica became the leader (``None`` while it is not)."""
        self.terms = 0
        """How many times this replica took the role."""

    async def run(self, duties: Duties) -> NoReturn:
        """Take the role when it is free, and run ``duties`` while holding it."""
        while True:
            if not await self._try(self._store.try_lead):
                await trio.sleep(self._check_s)
                continue
            self.leading, self.since = True, self._clock()
            self.terms += 1
            self._metrics.leader.set(1)
            if self._store.shared:
                log.info("this replica is the leader: it runs the hold timer, cleanup and "
                         "back-fill")  # fmt: skip
            try:
                async with trio.open_nursery() as nursery:
                    await duties(nursery)
                    # The database has no event for a lost lock: ask it.
                    while await self._try(self._store.still_leading):  # noqa: ASYNC110
                        await trio.sleep(self._check_s)
                    nursery.cancel_scope.cancel()
            finally:
                self.leading, self.since = False, None
                self._metrics.leader.set(0)
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._try(self._store.stop_leading)
            log.warning("this replica lost the leader role: another takes over its duties")

    async def _try(self, call: Callable[[], Awaitable[bool | None]]) -> bool:
        """``call()``; a database fault counts as "no" (a leader that cannot reach the
        database may have lost its lock)."""
        try:
            return bool(await call())
        except StoreError as e:
            log.warning("leader role: %s", e)
            return False
