"""``/healthz``, ``/metrics`` and the docs page's assets: anonymous."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import trio
from quart import Blueprint, Response, request
from quart_schema import document_response, hide

from certwatch.core.loglist import LogInfo
from certwatch.http.auth import public
from certwatch.http.context import ApiContext, context
from certwatch.http.responses import (
    AlertsHealth,
    CoverageHealth,
    DatabaseHealth,
    FeedHealth,
    HealthOut,
    LogCoverageHealth,
    LogListHealth,
    OutboxHealth,
    error_response,
    json_response,
)
from certwatch.metrics import CONTENT_TYPE
from certwatch.version import __version__

__all__ = ["health"]

health = Blueprint("health", __name__)

_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
"""Swagger UI's files, served from the swagger-ui-py package: /docs works offline (certwatch
runs on internal networks, and a CDN would also see who reads the docs)."""


def _swagger_ui_static() -> Path:
    """The directory of Swagger UI's files in swagger-ui-py (found, not imported: importing
    the package loads its web-framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "static"


@health.get("/healthz")
@public
@document_response(HealthOut, 200)
@document_response(HealthOut, 503)
async def healthz() -> Response:
    """The container's health check, answered within a second.

    The feed, the views in memory, the outbox, each CT log's coverage and the database.
    503 when a shared database (PostgreSQL) does not answer: such a replica can do nothing
    useful, and says so."""
    ctx = context()
    database = await _database(ctx)
    feed = ctx.feed.statistics()
    outbox = None
    if ctx.sender is not None:
        stats = ctx.sender.stats
        outbox = OutboxHealth(stats.pending, stats.failed, stats.oldest_pending_at)
    unhealthy = ctx.store.shared and not database.ok
    health_now = HealthOut(
        status="database unavailable" if unhealthy else "ok",
        version=__version__,
        uptime_s=round(ctx.clock() - ctx.started_at, 3),
        feed=FeedHealth(
            url=feed.url,
            connected=feed.connected,
            last_event_at=ctx.matcher.last_event_at,
            connections=feed.connections,
            reconnects=feed.reconnects,
            messages=feed.messages,
            processed=ctx.matcher.processed,
            dropped=feed.dropped,
            missed_entries=ctx.matcher.coverage.missed,
            disconnected_seconds=feed.disconnected_seconds,
            last_error=feed.last_error,
        ),
        watch_entries=len(ctx.views.index),
        brands=len(ctx.views.brands),
        known_fingerprints=len(ctx.views.inventory),
        known_keys=ctx.views.inventory.key_count,
        alerts=AlertsHealth(held=ctx.alerter.held, dedupe_cache=ctx.alerter.remembered),
        webhook="observer mode" if ctx.sender is None else "enabled",
        coverage=_coverage(ctx),
        database=database,
        outbox=outbox,
    )
    return json_response(health_now, status=503 if unhealthy else 200)


async def _database(ctx: ApiContext) -> DatabaseHealth:
    """The database as the probes find it within a second (the outbox figures too)."""
    state = await ctx.probes.check()
    leadership = ctx.leadership
    return DatabaseHealth(
        backend=ctx.store.backend,
        ok=state.ok,
        round_trip_ms=None if state.round_trip_s is None else round(state.round_trip_s * 1000, 3),
        leader=leadership is None or leadership.leading,
        leader_since=None if leadership is None else leadership.since,
        error=state.error,
    )


UNLISTED_ERROR = "a read failed (a log not in the list: the reason is in certwatch's log)"


def _shown_error(info: LogInfo, error: str) -> str | None:
    """Why a log's last read failed, as ``/healthz`` may say it: for a log the list does not
    hold (a URL a feed chose), not how (refused, timed out, answered), so that the anonymous
    health check is not a port scanner for whoever controls the feed."""
    if not error:
        return None
    return error if info.listed else UNLISTED_ERROR


def _coverage(ctx: ApiContext) -> CoverageHealth:
    """Per log: how far it was processed, what is pending, what was given up."""
    logs = [
        LogCoverageHealth(
            log=info.read_url,
            kind=info.kind.value,
            listed=info.listed,
            verifiable=info.key is not None,
            position=state.position,
            pending=state.pending,
            unrecovered=state.unrecovered,
            backfilled=state.backfilled,
            missed=state.missed,
            last_error=_shown_error(info, state.last_error),
        )
        for info, state in ctx.matcher.coverage
    ]
    logs.sort(key=lambda x: x.log)
    log_list = None
    if ctx.log_list is not None:
        status = ctx.log_list.status()
        log_list = LogListHealth(status.source, status.logs, status.loaded_at, status.error)
    return CoverageHealth(
        backfill=ctx.lookups is not None,
        log_list=log_list,
        pending=sum(x.pending for x in logs),
        unrecovered=sum(x.unrecovered for x in logs),
        untracked=ctx.matcher.coverage.untracked,
        lookups=0 if ctx.lookups is None else ctx.lookups.started,
        logs=logs,
    )


@health.get("/metrics")
@public
async def metrics() -> Response:
    """Prometheus text exposition."""
    ctx = context()
    await ctx.probes.check()  # the round trip and the outbox gauges, as they are now
    return Response(ctx.metrics.exposition(), content_type=CONTENT_TYPE)


_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>certwatch API</title>
  <link type="text/css" rel="stylesheet" href="{base}docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{base}docs/assets/swagger-ui-bundle.js"></script>
  <script>
    SwaggerUIBundle({{
      url: "{base}openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    }});
  </script>
</body>
</html>
"""
"""Swagger UI over /openapi.json, every URL relative to the page: behind a reverse proxy
that serves certwatch under a path prefix, the page finds its document and its assets."""


@health.get("/docs")
@health.get("/docs/")
@public
@hide
async def docs() -> Response:
    """The API's documentation page (Swagger UI), offline."""
    base = "../" if request.path.endswith("/") else ""
    return Response(_DOCS_PAGE.format(base=base), content_type="text/html; charset=utf-8")


@health.get("/docs/assets/<name>")
@public
@hide
async def docs_asset(name: str) -> Response:
    """Swagger UI's script and style, from the installed package."""
    content_type = _DOCS_ASSETS.get(name)
    if content_type is None:
        return error_response(404, f"no docs asset {name[:60]!r}")
    data = await trio.Path(_swagger_ui_static() / name).read_bytes()
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(data, content_type=content_type, headers=headers)
