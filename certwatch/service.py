"""The supervisor: one nursery, the tasks in it, and the channels between them.

    certstream ──ws──> FeedConsumer ──frames (bounded)──> Pipeline ──matches──> Alerter
                                                                                 │ stores
    LBs, operators ──HTTP──> API (Hypercorn) ──changes──> index, inventory ──────┤ first
                                                                                 v
    Cleanup ticker ──prunes──> SQLite <──outbox rows── WebhookSender <──ids── decided alerts
                                                            │
                                                            └──HTTP──> n8n

Shutdown: the signal sets ``shutdown``; Hypercorn stops accepting and lets requests in
flight finish (``shutdown_grace_s``); then the nursery is cancelled. Undelivered alerts stay
pending in the database for the next start. A crash of any task cancels the others and
propagates, so the process exits non-zero and the container supervisor restarts it.
"""

from __future__ import annotations

import errno
import gc
import logging
import math
import socket
import time
from collections.abc import Callable

import h11
import msgspec
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import serve as hypercorn_serve

from certwatch.core.messages import FeedItem
from certwatch.core.names import public_suffix_kind
from certwatch.delivery.webhook import WebhookSender
from certwatch.errors import ListenError, leaves
from certwatch.http.app import ApiContext, create_app
from certwatch.metrics import Metrics
from certwatch.pipeline.alerter import Alerter
from certwatch.pipeline.cleanup import Cleanup
from certwatch.pipeline.matching import Pipeline
from certwatch.pipeline.views import Views
from certwatch.settings import Settings, redact_url
from certwatch.sources.certstream import Connector, FeedConsumer
from certwatch.store.sqlite import Store

__all__ = ["FEED_BUFFER", "listen_error", "serve"]

log = logging.getLogger("certwatch")

FEED_BUFFER = 4096
"""Frames received but not processed (~1 s of a catch-up burst; ~30 MB at worst)."""
OUTBOX_BUFFER = 256
"""Decided alert ids on their way to the sender; overflow waits in the outbox table."""


def listen_error(settings: Settings, error: BaseException) -> ListenError:
    """What a failure to bind the API's socket means, naming the variable to fix."""
    where = f"{settings.api_host}:{settings.api_port}"
    if isinstance(error, socket.gaierror):
        return ListenError("API_HOST", f"cannot resolve {settings.api_host!r}", exit_status=2)
    errno_ = error.errno if isinstance(error, OSError) else None
    if errno_ == errno.EADDRINUSE:
        problem = f"{where} is already in use (another certwatch, or another program)"
        return ListenError("API_PORT", problem, exit_status=1)
    if errno_ == errno.EADDRNOTAVAIL:
        problem = f"{settings.api_host} is not an address of this host"
        return ListenError("API_HOST", problem, exit_status=1)
    if errno_ == errno.EACCES:
        problem = f"no permission to listen on {where} (ports below 1024 need privileges)"
        return ListenError("API_PORT", problem, exit_status=1)
    return ListenError("API_HOST", f"cannot listen on {where}: {error}", exit_status=1)


_PROTOCOL_ERRORS = {
    400: "malformed HTTP request: the request line or a header is not valid HTTP/1.1 "
    "(non-ASCII characters in a URL must be percent-encoded)",
    431: "request headers too large",
}


async def _json_protocol_error(self: H11Protocol, status_code: int) -> None:
    """Hypercorn's answer to a request h11 cannot parse, with certwatch's JSON error body."""
    message = _PROTOCOL_ERRORS.get(status_code, "malformed HTTP request")
    body = msgspec.json.encode({"error": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *self.config.response_headers("h11"),
    ]
    await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


# Hypercorn answers what h11 rejects (a raw non-ASCII byte in a URL, a broken header) before
# any application sees it, with an empty body; every certwatch error is JSON. This is the one
# place Hypercorn lets that answer be changed.
H11Protocol._send_error_response = _json_protocol_error  # type: ignore[method-assign]


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    config.bind = [f"{host}:{settings.api_port}"]
    config.graceful_timeout = settings.timing.shutdown_grace_s
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.keep_alive_timeout = settings.timing.api_idle_timeout_s
    config.read_timeout = math.ceil(settings.timing.api_read_timeout_s)  # hypercorn: whole s
    config.h11_max_incomplete_size = 16 * 1024
    return config


async def serve(
    settings: Settings,
    shutdown: trio.Event,
    *,
    connect: Connector | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run certwatch until ``shutdown`` is set. Reports the API's bound addresses."""
    store = await Store.open(
        settings.db_path, busy_timeout_ms=int(settings.timing.db_busy_timeout_s * 1000)
    )
    try:
        metrics = Metrics()
        metrics.start_time.set(clock())
        public_suffix_kind("example.org")  # loads the Public Suffix List now, not in a request
        views = await Views.load(store)
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
        )  # fmt: skip
        await alerter.load()
        # What start-up loaded lives as long as the process: keep the cyclic garbage
        # collector from walking 100,000s of long-lived objects on every full collection.
        gc.collect()
        gc.freeze()
        feed = FeedConsumer(settings.certstream_url, settings.timing, metrics, connect=connect)
        pipeline = Pipeline(views.index, metrics, clock=clock)
        sender = None
        if settings.webhook_url is not None:
            sender = WebhookSender(
                settings.webhook_url, store, metrics, settings.timing,
                timeout_s=settings.webhook_timeout_s,
                retry_period_s=settings.webhook_retry_period_s,
                secret=settings.webhook_secret,
                clock=clock,
            )  # fmt: skip
            await sender.refresh_stats()  # right from the first scrape
        cleanup = Cleanup(
            store, views, alerter,
            interval_s=settings.cleanup_interval_s,
            cert_grace_s=settings.cleanup_grace_s,
            alert_retention_s=settings.alert_retention_s,
            clock=clock,
        )  # fmt: skip
        app = create_app(ApiContext(
            settings.api_token, store, views, alerter, feed, pipeline, metrics,
            sender=sender, clock=clock,
        ), body_timeout_s=settings.timing.api_body_timeout_s)  # fmt: skip

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.run, feed_send)
            nursery.start_soon(pipeline.run, feed_receive, alerter.on_match)
            nursery.start_soon(alerter.run_holds)
            nursery.start_soon(cleanup.run)
            if sender is not None:
                nursery.start_soon(sender.run, outbox_receive)
            stop_api, api_stopped = trio.Event(), trio.Event()

            async def run_api(task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await hypercorn_serve(
                        app, _hypercorn_config(settings),
                        shutdown_trigger=stop_api.wait, task_status=task_status,
                    )  # fmt: skip
                except* OSError as group:  # binding the socket: per connection, Hypercorn copes
                    raise listen_error(settings, leaves(group)[0]) from None
                finally:
                    api_stopped.set()

            binds = await nursery.start(run_api)
            log.info(
                "certwatch ready: API on %s, feed %s, %d watch entries, %d inventory certs, %s",
                ", ".join(binds), redact_url(settings.certstream_url), len(views.index),
                len(views.inventory),
                "observer mode" if observer else "webhook enabled",
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
