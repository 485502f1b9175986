"""The HTTP API (Quart-Trio): watch entries, inventory, keys, alerts, health and metrics.

Every route except ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer <token>``.
Errors are JSON ``{"error": ..., "fields": [{"field": ..., "problem": ...}]}``; nothing a
client sends produces a 500. A change is committed to SQLite before it is acknowledged, and
the in-memory views follow the database under a lock, shielded from cancellation, so they
never disagree with it.
"""

from __future__ import annotations

import functools
import hmac
import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import msgspec
import trio
from hypercorn.typing import ASGISendCallable, ASGISendEvent
from quart import Response, request
from quart_schema import (
    Info,
    QuartSchema,
    document_querystring,
    document_request,
    document_response,
    hide,
)
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException

from certwatch.core.alerts import Severity, Status
from certwatch.core.certificates import spki_sha256_from_pem
from certwatch.core.identity import fingerprint
from certwatch.core.messages import decode_json
from certwatch.core.names import normalise_entry
from certwatch.core.recognition import KnownKey
from certwatch.delivery.webhook import WebhookSender
from certwatch.errors import (
    InputError,
    InvalidBody,
    InvalidCertificate,
    InvalidName,
    MalformedMessage,
    StoreError,
    UnsupportedMediaType,
)
from certwatch.http.requests import (
    CertIn,
    DomainIn,
    KeyIn,
    cert_from_json,
    cert_from_pem,
    check_pem_agrees,
    names_field,
    source_field,
    structure,
    watch_entry,
)
from certwatch.http.responses import (
    EPOCH_MAX,
    LIMIT_MAX,
    OFFSET_MAX,
    AlertOut,
    AlertsHealth,
    AlertsQuery,
    CertOut,
    CertsQuery,
    Deleted,
    DomainCreated,
    DomainOut,
    ErrorOut,
    FeedHealth,
    HealthOut,
    KeyCreated,
    KeyOut,
    OpenAPI,
    OutboxHealth,
    Problem,
    Requeued,
)
from certwatch.metrics import CONTENT_TYPE, Metrics
from certwatch.pipeline.alerter import Alerter
from certwatch.pipeline.matching import Pipeline
from certwatch.pipeline.views import Views
from certwatch.sources.certstream import FeedConsumer
from certwatch.store.sqlite import Store
from certwatch.version import __version__

__all__ = ["MAX_BODY_BYTES", "ApiContext", "create_app"]

log = logging.getLogger("certwatch.http.app")

T = TypeVar("T")

MAX_BODY_BYTES = 1024 * 1024
_PUBLIC = frozenset({"healthz", "metrics", "openapi", "swagger_ui", "docs_asset"})
_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
"""Swagger UI's files, served from the swagger-ui-py package: /docs works offline (certwatch
runs on internal networks, and a CDN would also see who reads the docs)."""
_encode = msgspec.json.Encoder().encode
_JSON_TYPES = frozenset({"application/json"})
_PEM_TYPES = frozenset(
    {"application/x-pem-file", "application/pem-certificate-chain", "text/plain"}
)


@attrs.define
class ApiContext:
    """What the handlers work on; built by the supervisor."""

    token: str
    store: Store
    """For reads; changes to the watch list and inventory go through ``views``."""
    views: Views
    alerter: Alerter
    feed: FeedConsumer
    pipeline: Pipeline
    metrics: Metrics
    sender: WebhookSender | None = None
    clock: Callable[[], float] = time.time
    started_at: float = attrs.field(factory=time.time)


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; attrs classes (see :mod:`certwatch.http.responses`) encode as objects."""
    return Response(
        _encode(value),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(status: int, message: str, problems: list[tuple[str, str]] | None = None) -> Response:
    body = ErrorOut(message, [Problem(f, p) for f, p in problems] if problems else None)
    headers = {"WWW-Authenticate": 'Bearer realm="certwatch"'} if status == 401 else None
    return _json(attrs.asdict(body, filter=lambda _, value: value is not None), status, headers)


def _query_number(name: str, default: float | None, lo: float, hi: float, *, integer: bool) -> Any:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value: float = int(raw, 10) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InputError("invalid query", [(name, f"must be {kind}, got {raw[:40]!r}")]) from None
    if not lo <= value <= hi:
        raise InputError("invalid query", [(name, f"must be from {lo:g} to {hi:g}")])
    return value


def _query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in choices:
        raise InputError("invalid query", [(name, f"must be one of {', '.join(choices)}")])
    return raw


async def _body() -> tuple[str, bytes]:
    """The raw body and its kind (``json`` or ``pem``); 413, 415 or 400 when unusable."""
    mimetype = request.mimetype
    data = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    if not data:
        raise InvalidBody("the request body is empty", [("body", "expected a JSON object")])
    if mimetype in _JSON_TYPES or mimetype.endswith("+json"):
        return "json", data
    if mimetype in _PEM_TYPES or (not mimetype and data.lstrip().startswith(b"-----BEGIN")):
        return "pem", data
    if not mimetype:
        return "json", data
    raise UnsupportedMediaType(
        "unsupported content type",
        [("Content-Type", f"must be application/json, got {mimetype[:60]!r}")],
    )


def _decode(data: bytes) -> Any:
    try:
        return decode_json(data)
    except MalformedMessage as e:
        raise InvalidBody("the body is not valid JSON", [("body", e.detail[:200])]) from None


async def _json_body() -> Any:
    kind, data = await _body()
    if kind != "json":
        raise UnsupportedMediaType(
            "unsupported content type", [("Content-Type", "must be application/json")]
        )
    return _decode(data)


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's request handling, with the last send of a response shielded.

    Hypercorn recycles a keep-alive connection inside that send: it starts the connection's
    idle task, which closes the connection after ``keep_alive_timeout`` or at shutdown.
    Meanwhile Quart-Trio sees the stream end (``http.disconnect``) and cancels the request's
    nursery, which killed the idle task as it started: idle connections then stayed open
    until the read timeout, and every shutdown waited the whole grace period for them.
    """

    async def handle_request(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, send: ASGISendCallable
    ) -> None:
        async def send_last_shielded(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super().handle_request(nursery, request, send_last_shielded)


class _App(QuartTrio):
    asgi_http_class = _HTTPConnection


def _swagger_ui_static() -> Path:
    """The directory of Swagger UI's files in swagger-ui-py (found, not imported: importing
    the package loads its web-framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "static"


def create_app(ctx: ApiContext, *, body_timeout_s: float = 30.0) -> QuartTrio:
    """The Quart-Trio application for one running service."""
    app = _App("certwatch")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        BODY_TIMEOUT=body_timeout_s,
        RESPONSE_TIMEOUT=60,
        PROPAGATE_EXCEPTIONS=False,
        # Relative: the page is /docs, so these resolve under it behind a path prefix too.
        QUART_SCHEMA_SWAGGER_JS_URL="docs/assets/swagger-ui-bundle.js",
        QUART_SCHEMA_SWAGGER_CSS_URL="docs/assets/swagger-ui.css",
    )
    docs_assets = _swagger_ui_static()
    # The OpenAPI document and its docs page, generated from the classes the handlers use.
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="certwatch", version=__version__),
        openapi_provider_class=OpenAPI,
        convert_casing=False,
    )

    # Certificates and keys are parsed in a worker thread: bounded (see certificates.py),
    # but still the costliest thing a request can ask for.
    parsing = trio.CapacityLimiter(2)

    async def off_loop(parse: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(parse, *args), limiter=parsing)

    # --- authentication and errors -------------------------------------------------------

    @app.before_request
    async def authenticate() -> Response | None:
        if request.endpoint in _PUBLIC or request.routing_exception is not None:
            return None  # public, or a 404/405 that routing is about to answer
        header = request.headers.get("Authorization", "")
        if not header:
            return _error(401, "missing Authorization header; send 'Bearer <API_TOKEN>'")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "malformed Authorization header; expected 'Bearer <API_TOKEN>'")
        if not hmac.compare_digest(token.encode(), ctx.token.encode()):
            return _error(403, "invalid token")
        return None

    @app.errorhandler(InputError)
    async def input_error(e: InputError) -> Response:
        return _error(e.status, e.message, e.problems)

    @app.errorhandler(StoreError)
    async def store_error(e: StoreError) -> Response:
        log.error("%s %s: %s", request.method, request.path, e)
        return _json(
            {"error": "the database is unavailable; nothing was changed, retry later"},
            503,
            {"Retry-After": "5"},
        )

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException) -> Response:
        status = e.code or 500
        response = _error(status, (e.description or e.name).split("\n")[0])
        for name, value in e.get_headers():
            if name.lower() == "allow":  # a 405 says which methods the path takes
                response.headers[name] = value
        return response

    @app.after_request
    async def close_after_unread_body(response: Response) -> Response:
        """An error answered before the body was read (auth, routing, size) ends the
        connection: its unread rest would otherwise be taken for the next request, or
        stall the connection."""
        has_body = request.content_length or "transfer-encoding" in request.headers
        if response.status_code >= 400 and has_body:
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    async def unexpected(e: Exception) -> Response:
        log.error("unhandled error in %s %s", request.method, request.path, exc_info=e)
        return _error(500, "internal error")

    # --- health and metrics -------------------------------------------------------------------

    @app.get("/healthz")
    @document_response(HealthOut, 200)
    async def healthz() -> Response:
        """The container's health check: the feed, the views in memory, the outbox."""
        feed = ctx.feed.statistics()
        outbox = None
        if ctx.sender is not None:
            await ctx.sender.refresh_stats()
            stats = ctx.sender.stats
            outbox = OutboxHealth(stats.pending, stats.failed, stats.oldest_pending_at)
        health = HealthOut(
            status="ok",
            version=__version__,
            uptime_s=round(ctx.clock() - ctx.started_at, 3),
            feed=FeedHealth(
                url=feed.url,
                connected=feed.connected,
                last_event_at=ctx.pipeline.last_event_at,
                connections=feed.connections,
                reconnects=feed.reconnects,
                messages=feed.messages,
                processed=ctx.pipeline.processed,
                dropped=feed.dropped,
                missed_entries=ctx.pipeline.coverage.missed,
                disconnected_seconds=feed.disconnected_seconds,
                last_error=feed.last_error,
            ),
            watch_entries=len(ctx.views.index),
            known_fingerprints=len(ctx.views.inventory),
            known_keys=ctx.views.inventory.key_count,
            alerts=AlertsHealth(held=ctx.alerter.held, dedupe_cache=ctx.alerter.remembered),
            webhook="observer mode" if ctx.sender is None else "enabled",
            outbox=outbox,
        )
        return _json(health)

    @app.get("/docs/assets/<name>")
    @hide
    async def docs_asset(name: str) -> Response:
        """Swagger UI's script and style, from the installed package."""
        content_type = _DOCS_ASSETS.get(name)
        if content_type is None:
            return _error(404, f"no docs asset {name[:60]!r}")
        data = await trio.Path(docs_assets / name).read_bytes()
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(data, content_type=content_type, headers=headers)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text exposition."""
        if ctx.sender is not None:
            await ctx.sender.refresh_stats()  # the outbox gauges, as the table is now
        return Response(ctx.metrics.exposition(), content_type=CONTENT_TYPE)

    # --- watch entries ----------------------------------------------------------------------

    @app.post("/domains")
    @document_request(DomainIn)
    @document_response(DomainCreated, 201)
    async def add_domain() -> Response:
        """Watch a domain and everything below it (re-posting updates the note)."""
        body = structure(await _json_body(), DomainIn)
        value = watch_entry(body)
        created = await ctx.views.add_domain(value, body.note, ctx.clock())
        log.info("watch entry %s %s", value, "added" if created else "updated")
        return _json(DomainCreated(value, created), 201)

    @app.get("/domains")
    @document_response(list[DomainOut], 200)
    async def list_domains() -> Response:
        """The watch list, sorted by value."""
        domains = await ctx.store.list_domains()
        return _json([DomainOut(d.value, d.note, d.added_at) for d in domains])

    @app.delete("/domains/<path:value>")
    @document_response(Deleted, 200)
    async def delete_domain(value: str) -> Response:
        """Stop watching a domain (the path value is normalised like the input)."""
        try:
            entry = normalise_entry(value)
        except InvalidName as e:
            raise e.in_field("value") from None
        deleted = await ctx.views.delete_domain(entry)
        if not deleted:
            return _error(404, f"no watch entry {entry!r}")
        log.info("watch entry %s deleted", entry)
        return _json(Deleted(1))

    # --- inventory --------------------------------------------------------------------------

    @app.post("/certs")
    @document_request(CertIn)
    @document_response(CertOut, 201)
    async def add_cert() -> Response:
        """Register a certificate an LB obtained: the contract's JSON, a PEM, or both."""
        kind, data = await _body()
        now = ctx.clock()
        if kind == "pem":
            source = source_field(request.args.get("source", ""))
            pem = data.decode("utf-8", "replace")
            cert = await off_loop(cert_from_pem, pem, source, now, "body")
        else:
            body = structure(_decode(data), CertIn)
            source_field(body.source)
            if body.pem is not None:
                cert = await off_loop(cert_from_pem, body.pem, body.source, now)
                check_pem_agrees(body, cert)
            else:
                cert = cert_from_json(body, now)
        old = await ctx.views.upsert_cert(cert)
        log.info(
            "inventory: %s %s (%s)",
            "updated" if old else "added",
            cert.fingerprint_sha1,
            cert.source,
        )
        await ctx.alerter.reconcile()
        return _json(CertOut.of(cert), 201)

    @app.get("/certs")
    @document_querystring(CertsQuery)
    @document_response(list[CertOut], 200)
    async def list_certs() -> Response:
        """The inventory, newest first."""
        limit = _query_number("limit", 100, 1, LIMIT_MAX, integer=True)
        offset = _query_number("offset", 0, 0, OFFSET_MAX, integer=True)
        certs = await ctx.store.list_certs(limit, offset)
        return _json([CertOut.of(c) for c in certs])

    @app.delete("/certs/<path:sha1>")
    @document_response(Deleted, 200)
    async def delete_cert(sha1: str) -> Response:
        """Forget an inventory certificate by its SHA-1 fingerprint."""
        digest = fingerprint(sha1)
        if digest is None:
            raise InputError("invalid path", [("sha1", "must be 40 hex digits (colons optional)")])
        old = await ctx.views.delete_cert(digest)
        if old is None:
            return _error(404, f"no certificate {digest}")
        log.info("inventory: deleted %s", digest)
        return _json(Deleted(1))

    # --- registered keys --------------------------------------------------------------------

    @app.post("/keys")
    @document_request(KeyIn)
    @document_response(KeyCreated, 201)
    async def add_key() -> Response:
        """Register a public key with the names it may be used for."""
        body = structure(await _json_body(), KeyIn)
        problems: list[tuple[str, str]] = []
        spki: str | None = None
        if (body.spki_sha256 is None) == (body.pem is None):
            problems.append(("spki_sha256", "give exactly one of spki_sha256 and pem"))
        elif body.pem is not None:
            try:
                spki = await off_loop(spki_sha256_from_pem, body.pem)
            except InvalidCertificate as e:
                problems.extend(e.in_field("pem").problems)
        else:
            spki = fingerprint(body.spki_sha256 or "", length=64)
            if spki is None:
                problems.append(("spki_sha256", "must be 64 hex digits (SHA-256 of the DER SPKI)"))
        names: list[str] = []
        try:
            names = names_field("names", body.names, wildcards=True)
        except InputError as e:
            problems.extend(e.problems)
        if len(body.note) > 1000:
            problems.append(("note", "must be at most 1000 characters"))
        if problems:
            raise InputError("invalid request body", problems)
        assert spki is not None
        key = KnownKey(spki_sha256=spki, names=tuple(names), note=body.note, added_at=ctx.clock())
        created = await ctx.views.upsert_key(key)
        log.info("key %s registered for %s", spki, ",".join(names))
        await ctx.alerter.reconcile()
        return _json(KeyCreated(spki, list(key.names), key.note, key.added_at, created), 201)

    @app.get("/keys")
    @document_response(list[KeyOut], 200)
    async def list_keys() -> Response:
        """The registered keys."""
        return _json([KeyOut.of(k) for k in await ctx.store.list_keys()])

    @app.delete("/keys/<path:spki>")
    @document_response(Deleted, 200)
    async def delete_key(spki: str) -> Response:
        """Forget a registered key by its SPKI SHA-256."""
        digest = fingerprint(spki, length=64)
        if digest is None:
            raise InputError("invalid path", [("spki_sha256", "must be 64 hex digits")])
        deleted = await ctx.views.delete_key(digest)
        if not deleted:
            return _error(404, f"no key {digest}")
        return _json(Deleted(1))

    # --- alerts -----------------------------------------------------------------------------

    @app.get("/alerts")
    @document_querystring(AlertsQuery)
    @document_response(list[AlertOut], 200)
    async def list_alerts() -> Response:
        """Alerts, newest first, filtered."""
        since = _query_number("since", None, 0, EPOCH_MAX, integer=False)
        limit = _query_number("limit", 100, 1, LIMIT_MAX, integer=True)
        severity = _query_choice("severity", tuple(Severity))
        status = _query_choice("status", tuple(Status))
        delivered = _query_choice("delivered", ("true", "false"))
        alerts = await ctx.store.list_alerts(
            since=since,
            limit=limit,
            severity=severity,
            status=status,
            delivered=None if delivered is None else delivered == "true",
        )
        return _json([AlertOut.of(a) for a in alerts])

    @app.post("/alerts/<int:alert_id>/retry")
    @document_response(Requeued, 200)
    async def retry_alert(alert_id: int) -> Response:
        """Queue one alert for delivery again (failed, pending or delivered)."""
        if ctx.sender is None:
            return _error(409, "observer mode: no WEBHOOK_URL is set, nothing is sent")
        count = await ctx.store.requeue(alert_id, ctx.clock())
        if not count:
            return _error(404, f"no alert {alert_id} that can be re-queued")
        ctx.sender.wake()
        return _json(Requeued(count))

    @app.post("/alerts/retry-failed")
    @document_response(Requeued, 200)
    async def retry_failed() -> Response:
        """Queue every failed alert for delivery again."""
        if ctx.sender is None:
            return _error(409, "observer mode: no WEBHOOK_URL is set, nothing is sent")
        count = await ctx.store.requeue(None, ctx.clock())
        ctx.sender.wake()
        return _json(Requeued(count))

    return app
