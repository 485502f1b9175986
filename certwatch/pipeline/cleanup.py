"""The cleanup ticker: expire inventory rows and old alerts, in bounded batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn

import attrs
import trio

from certwatch.errors import StoreUnavailable
from certwatch.pipeline.alerter import Alerter
from certwatch.store import PRUNE_BATCH, CleanupStore
from certwatch.store.views import Views

__all__ = ["Cleanup", "CleanupReport"]

log = logging.getLogger(__name__)


@attrs.frozen
class CleanupReport:
    certs: int
    alerts: int
    dedupe: int


@attrs.define
class Cleanup:
    """Deletes inventory certs past ``not_after + grace`` and alerts past retention.

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
                if report.certs or report.alerts:
                    log.info(
                        "cleanup: %d expired certs, %d old alerts removed",
                        report.certs,
                        report.alerts,
                    )
            await trio.sleep(self.interval_s)

    async def run_once(self) -> CleanupReport:
        now = self.clock()
        certs = await self.views.prune_certs(now - self.cert_grace_s)
        alerts = 0
        while True:
            removed = await self.store.prune_alerts(now - self.alert_retention_s)
            alerts += removed
            if removed < PRUNE_BATCH:
                break
            await trio.lowlevel.checkpoint()
        dedupe = self.alerter.forget_before(now - self.alert_retention_s)
        return CleanupReport(certs=certs, alerts=alerts, dedupe=dedupe)
