"""The cleanup ticker: expire inventory rows, old alerts, the old change log and CAA RRsets
not seen for a long time, in bounded batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import attrs
import trio

from certwatch.errors import StoreUnavailable
from certwatch.pipeline.alerter import Alerter
from certwatch.pipeline.caa import HISTORY_RETENTION_S
from certwatch.store import PRUNE_BATCH, CleanupStore
from certwatch.store.views import CHANGES_RETENTION_S, Views

__all__ = ["Cleanup", "CleanupReport"]

log = logging.getLogger(__name__)


@attrs.frozen
class CleanupReport:
    certs: int
    alerts: int
    dedupe: int
    changes: int = 0
    caa: int = 0


@attrs.define
class Cleanup:
    """Deletes inventory certs past ``not_after + grace``, alerts past retention, and the
    change log the views follow past :data:`~certwatch.store.views.CHANGES_RETENTION_S`.

    Runs once at start (a restart after a long outage catches up at once), then every
    ``interval_s``. Each batch is one short transaction, and the event loop runs between
    batches, so a large backlog never stalls the feed or the API.
    """

    store: CleanupStore
    views: Views
    alerter: Alerter
    interval_s: float
    cert_grace_s: float
    alert_retention_s: float
    clock: Callable[[], float] = time.time

    async def run(self) -> NoReturn:
        while True:
            try:
                report = await self.run_once()
            except StoreUnavailable as e:
                log.warning("cleanup skipped, the database is unavailable: %s", e)
            else:
                if report.certs or report.alerts or report.changes:
                    log.info(
                        "cleanup: %d expired certs, %d old alerts, %d old changes removed",
                        report.certs,
                        report.alerts,
                        report.changes,
                    )
            await trio.sleep(self.interval_s)

    async def run_once(self) -> CleanupReport:
        now = self.clock()
        certs = await self.views.prune_certs(now - self.cert_grace_s)
        alerts = await _in_batches(lambda: self.store.prune_alerts(now - self.alert_retention_s))
        changes = await _in_batches(lambda: self.store.prune_changes(now - CHANGES_RETENTION_S))
        caa = await _in_batches(lambda: self.store.prune_caa(now - HISTORY_RETENTION_S))
        dedupe = self.alerter.forget_before(now - self.alert_retention_s)
        return CleanupReport(certs=certs, alerts=alerts, dedupe=dedupe, changes=changes, caa=caa)


async def _in_batches(prune: Callable[[], Awaitable[int]]) -> int:
    """Call ``prune`` (which deletes at most :data:`PRUNE_BATCH` rows) until it is done; the
    rows deleted in all."""
    total = 0
    while True:
        removed = await prune()
        total += removed
        if removed < PRUNE_BATCH:
            return total
        await trio.lowlevel.checkpoint()
