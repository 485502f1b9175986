"""The supervisor: one nursery, the tasks in it, and the channels between them.

    certstream ──ws──> FeedConsumer ──frames (bounded)──> Pipeline ──matches──> Alerter
                                                             │ gaps         ^    │ stores
    CT logs ──HTTP──> Backfill <── Coverage (positions) <────┘              │    │ first
                         └──────────── entries certstream did not deliver ──┘    │
    LBs, operators ──HTTP──> API (Hypercorn) ──changes──> index, inventory ──────┤
                                                                                 v
    Cleanup ticker ──prunes──> SQLite <──outbox rows── WebhookSender <──ids── decided alerts
                                                            │
                                                            └──HTTP──> n8n

Every replica runs all of this but the leader's duties (the hold timer, cleanup, back-fill
with its saved positions), which run on the one replica holding the leader role
(:mod:`certwatch.pipeline.leadership`; on SQLite, the one process).

Shutdown: the signal sets ``shutdown``; Hypercorn stops accepting and lets requests in
flight finish (``shutdown_grace_s``); then the nursery is cancelled, and the leader saves
the CT log positions as it gives up the role. Undelivered alerts stay pending in the
database for the next start, and what was not processed is back-filled after it. A crash
of any task cancels the others and propagates, so the process exits non-zero and the
container supervisor restarts it.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import NoReturn

import trio

from certwatch.core.backoff import Backoff
from certwatch.core.messages import FeedItem
from certwatch.core.names import public_suffix_kind
from certwatch.delivery.webhook import WebhookSender
from certwatch.errors import StoreError
from certwatch.http.app import create_app
from certwatch.http.context import ApiContext
from certwatch.http.probes import HealthProbes
from certwatch.http.server import serve_api
from certwatch.metrics import Metrics
from certwatch.pipeline.alerter import HOLDS_POLL_S, Alerter
from certwatch.pipeline.cleanup import Cleanup
from certwatch.pipeline.coverage import Coverage
from certwatch.pipeline.leadership import Leadership
from certwatch.pipeline.matching import Pipeline
from certwatch.pipeline.views import Views
from certwatch.settings import Settings, redact_url
from certwatch.sources.backfill import Backfill
from certwatch.sources.certstream import Connector, FeedConsumer
from certwatch.sources.ctlog import CTLogReader
from certwatch.sources.loglist import LogListLoader
from certwatch.store import Store, open_store

__all__ = ["FEED_BUFFER", "serve"]

log = logging.getLogger("certwatch")

FEED_BUFFER = 4096
"""Frames received but not processed (~1 s of a catch-up burst; ~30 MB at worst)."""
OUTBOX_BUFFER = 256
"""Decided alert ids on their way to the sender; overflow waits in the outbox table."""
LOG_LIST_START_WAIT_S = 10.0
"""How long the feed waits at start for the CT log list (so each log is named by the list
from its first message); the list goes on loading in the background after that."""


def replica_name() -> str:
    """This process among replicas (on its claims and in its logs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def serve(
    settings: Settings,
    shutdown: trio.Event,
    *,
    connect: Connector | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run certwatch until ``shutdown`` is set. Reports the API's bound addresses."""
    store = await open_store(settings)
    try:
        metrics = Metrics()
        metrics.start_time.set(clock())
        metrics.watch_store(store.usage)
        public_suffix_kind("example.org")  # loads the Public Suffix List now, not in a request
        views = await Views.load(store, clock=clock)
        metrics.mirror(metrics.watch_entries, lambda: len(views.index))
        metrics.mirror(metrics.known_fingerprints, lambda: len(views.inventory))
        metrics.mirror(metrics.known_keys, lambda: views.inventory.key_count)

        feed_send, feed_receive = trio.open_memory_channel[FeedItem](FEED_BUFFER)
        outbox_send, outbox_receive = trio.open_memory_channel[int](OUTBOX_BUFFER)
        observer = settings.webhook_url is None
        alerter = Alerter(
            store, views.inventory, metrics,
            grace_s=settings.suspicious_grace_s,
            retention_s=settings.alert_retention_s,
            outbox=None if observer else outbox_send,
            clock=clock,
            fresh=views.wait_fresh,
        )  # fmt: skip
        await alerter.load()
        # What start-up loaded lives as long as the process: keep the cyclic garbage
        # collector from walking 100,000s of long-lived objects on every full collection.
        gc.collect()
        gc.freeze()
        coverage = Coverage(
            metrics,
            backfill=settings.ct_backfill,
            max_entries=settings.ct_backfill_max_entries,
            clock=clock,
        )
        feed = FeedConsumer(settings.certstream_url, settings.timing, metrics, connect=connect)
        reader = CTLogReader(metrics, timeout_s=settings.timing.ct_request_timeout_s, clock=clock)
        backfill = log_list = None
        if settings.ct_backfill:
            log_list = LogListLoader(
                settings.ct_log_list, coverage, metrics, settings.timing, clock=clock
            )
            backfill = Backfill(
                reader, coverage, views.index, alerter.on_match, metrics,
                timing=settings.timing,
                retry_period_s=settings.ct_backfill_retry_period_s,
                live_backlog=lambda: feed_receive.statistics().current_buffer_used,
                live_drained=lambda: pipeline.drained(),
                record_evidence=store.record_log_evidence,
                clock=clock,
            )  # fmt: skip
        pipeline = Pipeline(
            views.index, metrics,
            coverage=coverage,
            on_missing_der=None if backfill is None else backfill.lookup,
            clock=clock,
        )  # fmt: skip
        sender = None
        if settings.webhook_url is not None:
            sender = WebhookSender(
                settings.webhook_url, store, metrics, settings.timing,
                timeout_s=settings.webhook_timeout_s,
                retry_period_s=settings.webhook_retry_period_s,
                secret=settings.webhook_secret,
                clock=clock,
                claimer=replica_name(),
            )  # fmt: skip
            await sender.refresh_stats()  # right from the first scrape
        cleanup = Cleanup(
            store, views, alerter,
            interval_s=settings.cleanup_interval_s,
            cert_grace_s=settings.cleanup_grace_s,
            alert_retention_s=settings.alert_retention_s,
            clock=clock,
        )  # fmt: skip

        async def lead(nursery: trio.Nursery) -> None:
            """The leader's duties (the one process, on SQLite)."""
            adopt = HOLDS_POLL_S if store.shared else None
            nursery.start_soon(functools.partial(alerter.run_holds, adopt_every_s=adopt))
            nursery.start_soon(cleanup.run)
            if backfill is not None:
                nursery.start_soon(_lead_backfill, coverage, backfill, store, settings)

        leadership = Leadership(store, metrics, lead, clock=clock)
        probes = HealthProbes(store, metrics, sender, clock=clock)
        app = create_app(ApiContext(
            settings.api_token, store, views, alerter, feed, pipeline, metrics, probes,
            sender=sender, backfill=backfill, log_list=log_list, leadership=leadership,
            clock=clock,
        ), body_timeout_s=settings.timing.api_body_timeout_s)  # fmt: skip

        async with reader, trio.open_nursery() as nursery:
            stop_api, api_stopped = trio.Event(), trio.Event()

            async def run_api(task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await serve_api(app, settings, stop_api.wait, task_status=task_status)
                finally:
                    api_stopped.set()

            nursery.start_soon(probes.run)
            binds = await nursery.start(run_api)  # /healthz answers from here on
            if log_list is not None and backfill is not None:
                nursery.start_soon(log_list.run)
                with trio.move_on_after(LOG_LIST_START_WAIT_S):
                    await log_list.attempted.wait()
                nursery.start_soon(backfill.serve_lookups)
            nursery.start_soon(views.follow, metrics, alerter.reconcile)
            nursery.start_soon(feed.run, feed_send)
            nursery.start_soon(pipeline.run, feed_receive, alerter.on_match)
            nursery.start_soon(leadership.run)
            if sender is not None:
                nursery.start_soon(sender.run, outbox_receive)
            log.info(
                "certwatch ready: API on %s, feed %s, %d watch entries, %d inventory certs, "
                "%s, back-fill %s, %s database",
                ", ".join(binds), redact_url(settings.certstream_url), len(views.index),
                len(views.inventory),
                "observer mode" if observer else "webhook enabled",
                "on" if backfill else "off (CT_BACKFILL=0)",
                store.backend,
            )  # fmt: skip
            task_status.started(binds)

            await shutdown.wait()
            log.info("shutting down: letting requests in flight finish")
            stop_api.set()
            with trio.move_on_after(settings.timing.shutdown_grace_s + 1):
                await api_stopped.wait()
            nursery.cancel_scope.cancel()
        log.info("stopped")
    finally:
        store.close()


async def _lead_backfill(
    coverage: Coverage, backfill: Backfill, store: Store, settings: Settings
) -> NoReturn:
    """Back-fill, as the leader: take in the saved positions (the previous leader's, or
    this process's before a restart), then fill gaps and save positions."""
    backoff = Backoff(1.0, 30.0)
    while True:
        try:
            saved_logs = await coverage.adopt(store)
            break
        except StoreError as e:
            wait = backoff.next()
            log.warning("CT log positions not read (retrying in %.1f s): %s", wait, e)
            await trio.sleep(wait)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(backfill.fill, saved_logs)
        nursery.start_soon(coverage.run_saver, store, settings.timing.ct_positions_save_s)
    raise AssertionError("back-fill ended")  # pragma: no cover
