"""The supervisor: one nursery, the tasks in it, and the channels between them.

    certstream ──ws──> FeedConsumer ──frames (bounded)──> Matcher ──matches──> Alerter
                                                             │ gaps, DER-less ^    │ stores
    CT logs ──HTTP──> Backfill, Lookups <── Coverage <───────┘ matches        │    │ first
                         └───────── entries certstream did not deliver ───────┘    │
    LBs, operators ──HTTP──> API (Hypercorn) ──changes──> views (index, inventory) ┤
                                                                                   v
    Cleanup ticker ──prunes──> database <──outbox rows── WebhookSender <──ids── decided alerts
                                                              │
                                                              └──HTTP──> n8n

:func:`build` makes the parts and wires them (:class:`Parts`); :func:`run` runs them in one
nursery. Every replica runs all of this but the leader's duties (the hold timer, cleanup,
back-fill with its saved positions), which run on the one replica holding the leader role
(:mod:`certwatch.store.leadership`; on SQLite, the one process).

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

import attrs
import trio

from certwatch.core.decision import Policy
from certwatch.core.messages import FeedItem
from certwatch.core.names import public_suffix_kind
from certwatch.delivery.webhook import WebhookSender
from certwatch.errors import StoreError
from certwatch.http.app import create_app
from certwatch.http.context import ApiContext
from certwatch.http.probes import HealthProbes
from certwatch.http.server import App, check_listen, serve_api
from certwatch.metrics import Metrics
from certwatch.pipeline.alerter import HOLDS_POLL_S, Alerter
from certwatch.pipeline.caa import MAX_REFRESH_NAMES, CaaChecker
from certwatch.pipeline.cleanup import Cleanup
from certwatch.pipeline.coverage import Coverage
from certwatch.pipeline.matching import Matcher
from certwatch.retry import Retrying, retrying
from certwatch.settings import Settings, redact_url
from certwatch.sources.backfill import Backfill
from certwatch.sources.caa import CaaResolver
from certwatch.sources.ccadb import load as load_cas
from certwatch.sources.certstream import Connector, FeedConsumer
from certwatch.sources.ctlog import CTLogReader
from certwatch.sources.entries import MatchedEntries
from certwatch.sources.heads import TreeHeads
from certwatch.sources.loglist import LogListLoader
from certwatch.sources.lookups import Lookups
from certwatch.store import Store, open_store
from certwatch.store.leadership import Leadership
from certwatch.store.views import Views

__all__ = ["FEED_BUFFER", "Parts", "build", "run", "serve"]

log = logging.getLogger(__name__)

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


@attrs.define
class BackfillParts:
    """Reading the CT logs themselves (``CT_BACKFILL=1``)."""

    log_list: LogListLoader
    lookups: Lookups
    """Entries of matched certificates without DER (every replica)."""
    backfill: Backfill
    """Gaps, and tree heads (the leader)."""


@attrs.define
class Parts:
    """The service's parts, built and wired by :func:`build`, not running yet."""

    settings: Settings
    store: Store
    metrics: Metrics
    views: Views
    alerter: Alerter
    coverage: Coverage
    feed: FeedConsumer
    frames: tuple[trio.MemorySendChannel[FeedItem], trio.MemoryReceiveChannel[FeedItem]]
    matcher: Matcher
    reader: CTLogReader
    ct: BackfillParts | None
    sender: WebhookSender | None
    outbox: trio.MemoryReceiveChannel[int]
    cleanup: Cleanup
    leadership: Leadership
    probes: HealthProbes
    app: App
    caa: CaaChecker | None


async def serve(
    settings: Settings,
    shutdown: trio.Event,
    *,
    connect: Connector | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run certwatch until ``shutdown`` is set. Reports the API's bound addresses."""
    await check_listen(settings)
    store = await open_store(settings)
    try:
        parts = await build(settings, store, connect=connect, clock=clock)
        await run(parts, shutdown, task_status=task_status)
    finally:
        store.close()


async def build(
    settings: Settings,
    store: Store,
    *,
    connect: Connector | None = None,
    clock: Callable[[], float] = time.time,
) -> Parts:
    """Every part of the service, wired, with what start-up reads (the views, the holds)."""
    t = settings.timing
    metrics = Metrics()
    metrics.start_time.set(clock())
    metrics.store.watch(store.usage)
    public_suffix_kind("example.org")  # loads the Public Suffix List now, not in a request
    views = await Views.load(store, timing=t, clock=clock)
    metrics.store.watch_views(views.index, views.inventory, views.rules.counts)
    metrics.lookalikes.watch(views.brands)
    policy, caa = _triage(settings, views, store, metrics, clock)
    frames = trio.open_memory_channel[FeedItem](FEED_BUFFER)
    outbox_send, outbox_receive = trio.open_memory_channel[int](OUTBOX_BUFFER)
    observer = settings.webhook_url is None
    alerter = Alerter(
        store, views.inventory, metrics.alerts,
        grace_s=settings.suspicious_grace_s,
        retention_s=settings.alert_retention_s,
        outbox=None if observer else outbox_send,
        policy=policy,
        caa=None if caa is None else caa.check,
        timing=t,
        clock=clock,
        fresh=views.wait_fresh,
    )  # fmt: skip
    await alerter.load()
    # What start-up loaded lives as long as the process: keep the cyclic garbage collector
    # from walking 100,000s of long-lived objects on every full collection.
    gc.collect()
    gc.freeze()
    coverage = Coverage(
        metrics.coverage,
        backfill=settings.ct_backfill,
        max_entries=settings.ct_backfill_max_entries,
        clock=clock,
    )
    reader = CTLogReader(metrics.coverage, timeout_s=t.ct_request_timeout_s, clock=clock)
    heads = TreeHeads(reader, coverage, record_evidence=store.record_log_evidence, clock=clock)
    entries = MatchedEntries(
        reader, heads, views.index, alerter.on_match, brands=views.brands, clock=clock
    )
    lookups = Lookups(reader, heads, entries, t) if settings.ct_backfill else None
    matcher = Matcher(
        views.index, metrics.feed, coverage,
        brands=views.brands,
        on_missing_der=None if lookups is None else lookups.lookup,
        clock=clock,
    )  # fmt: skip
    ct = None
    if lookups is not None:
        ct = BackfillParts(
            log_list=LogListLoader(
                settings.ct_log_list, coverage, metrics.coverage, t, clock=clock
            ),
            lookups=lookups,
            backfill=Backfill(
                reader, coverage, heads, entries,
                timing=t,
                retry_period_s=settings.ct_backfill_retry_period_s,
                live_backlog=lambda: frames[1].statistics().current_buffer_used,
                live_drained=matcher.drained,
            ),
        )  # fmt: skip
    sender = None
    if settings.webhook_url is not None:
        sender = WebhookSender(
            settings.webhook_url, store, metrics.outbox, t,
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
    feed = FeedConsumer(settings.certstream_url, t, metrics.feed, connect=connect)
    leadership = Leadership(store, metrics.store, clock=clock)
    probes = HealthProbes(store, metrics.store, sender, clock=clock)
    app = create_app(ApiContext(
        settings.api_token, store, views, alerter, feed, matcher, metrics, probes,
        sender=sender,
        lookups=None if ct is None else ct.lookups,
        log_list=None if ct is None else ct.log_list,
        leadership=leadership,
        caa=caa,
        clock=clock,
    ), body_timeout_s=t.api_body_timeout_s)  # fmt: skip
    return Parts(
        settings, store, metrics, views, alerter, coverage, feed, frames, matcher, reader, ct,
        sender, outbox_receive, cleanup, leadership, probes, app, caa,
    )  # fmt: skip


def _triage(
    settings: Settings, views: Views, store: Store, metrics: Metrics, clock: Callable[[], float]
) -> tuple[Policy, CaaChecker | None]:
    """What decisions judge with: the rules, the CAs known, and CAA lookups (if on)."""
    cas_file = settings.ca_identities_file
    policy = Policy(
        views.rules, load_cas(cas_file.identities if cas_file else ()), caa=settings.caa_check
    )
    caa = None
    if settings.caa_check:
        nameservers = None if settings.caa_resolver is None else [settings.caa_resolver]
        caa = CaaChecker(
            CaaResolver(nameservers, metrics.caa).relevant, store,
            timeout_s=settings.caa_timeout_s,
            stable_s=settings.caa_stable_s,
            refresh_s=settings.caa_refresh_s,
            clock=clock,
        )  # fmt: skip
    return policy, caa


async def run(
    parts: Parts,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the parts in one nursery until ``shutdown`` is set (see the module docstring)."""
    p, settings = parts, parts.settings
    async with p.reader, trio.open_nursery() as nursery:
        stop_api, api_stopped = trio.Event(), trio.Event()

        async def run_api(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve_api(p.app, settings, stop_api.wait, task_status=task_status)
            finally:
                api_stopped.set()

        nursery.start_soon(p.probes.run)
        binds = await nursery.start(run_api)  # /healthz answers from here on
        if p.ct is not None:
            nursery.start_soon(p.ct.log_list.run)
            with trio.move_on_after(LOG_LIST_START_WAIT_S):
                await p.ct.log_list.attempted.wait()
            nursery.start_soon(p.ct.lookups.serve)
        nursery.start_soon(p.views.follow, p.metrics.store, p.alerter.reconcile)
        nursery.start_soon(p.feed.run, p.frames[0])
        nursery.start_soon(p.matcher.run, p.frames[1], p.alerter.on_match)
        nursery.start_soon(p.leadership.run, functools.partial(_lead, p))
        if p.sender is not None:
            nursery.start_soon(p.sender.run, p.outbox)
        if p.caa is not None:
            nursery.start_soon(p.alerter.run_caa_checks)
            nursery.start_soon(p.caa.run_new_entries)
        log.info(
            "certwatch ready: API on %s, feed %s, %d watch entries, %d inventory certs, "
            "%s, back-fill %s, CAA %s, %s database",
            ", ".join(binds), redact_url(settings.certstream_url), len(p.views.index),
            len(p.views.inventory),
            "webhook enabled" if p.sender is not None else "observer mode",
            "on" if p.ct is not None else "off (CT_BACKFILL=0)",
            "on" if p.caa is not None else "off (CAA_CHECK=0)",
            p.store.backend,
        )  # fmt: skip
        task_status.started(binds)

        await shutdown.wait()
        log.info("shutting down: letting requests in flight finish")
        stop_api.set()
        with trio.move_on_after(settings.timing.shutdown_grace_s + 1):
            await api_stopped.wait()
        nursery.cancel_scope.cancel()
    log.info("stopped")


async def _lead(p: Parts, nursery: trio.Nursery) -> None:
    """The leader's duties (the one process, on SQLite): the hold timer, cleanup,
    back-fill with the saving of positions, and the CAA refresh."""
    adopt = HOLDS_POLL_S if p.store.shared else None
    nursery.start_soon(functools.partial(p.alerter.run_holds, adopt_every_s=adopt))
    nursery.start_soon(p.cleanup.run)
    if p.ct is not None:
        nursery.start_soon(_lead_backfill, p, p.ct.backfill)
    if p.caa is not None:

        async def names() -> list[str]:
            return [*p.views.index, *await p.store.inventory_names(MAX_REFRESH_NAMES)]

        nursery.start_soon(p.caa.refresh, names)


async def _lead_backfill(p: Parts, backfill: Backfill) -> NoReturn:
    """Back-fill, as the leader: take in the saved positions (the previous leader's, or
    this process's before a restart), then fill gaps and save positions."""
    t = p.settings.timing
    saved_logs = await retrying(
        lambda: p.coverage.adopt(p.store),
        Retrying(t.store_retry_initial_s, t.store_retry_max_s),
        on=StoreError,
        log=log,
        what="CT log positions not read",
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(backfill.fill, saved_logs)
        nursery.start_soon(p.coverage.run_saver, p.store, t.ct_positions_save_s)
    raise AssertionError("back-fill ended")  # pragma: no cover
