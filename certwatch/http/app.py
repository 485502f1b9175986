"""The HTTP API's application: the routes (:mod:`.routes`), who may call them
(:mod:`.auth`), and errors answered as JSON.

Every route except ``/healthz``, ``/metrics`` and the docs needs ``Authorization: Bearer
<token>``. Errors are JSON ``{"error": ..., "fields": [{"field": ..., "problem": ...}]}``;
nothing a client sends produces a 500. A change is committed to the database before it is
acknowledged (see :class:`~certwatch.store.views.Views`).
"""

from __future__ import annotations

import logging

from quart import Response, request
from quart_schema import Info, QuartSchema
from werkzeug.exceptions import HTTPException

from certwatch.errors import InputError, StoreError
from certwatch.http.auth import authenticate
from certwatch.http.context import ApiContext
from certwatch.http.openapi import OpenAPI
from certwatch.http.requests import MAX_BODY_BYTES
from certwatch.http.responses import error_response, json_response
from certwatch.http.routes import BLUEPRINTS
from certwatch.http.server import App
from certwatch.version import __version__

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(ctx: ApiContext, *, body_timeout_s: float = 30.0) -> App:
    """The Quart-Trio application for one running service."""
    app = App("certwatch")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        BODY_TIMEOUT=body_timeout_s,
        RESPONSE_TIMEOUT=60,
        PROPAGATE_EXCEPTIONS=False,
    )
    ctx.install(app)
    # The OpenAPI document and its docs page, generated from the classes the handlers use.
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # certwatch's own page (routes/health.py): relative URLs
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="certwatch", version=__version__),
        openapi_provider_class=OpenAPI,
        convert_casing=False,
    )
    app.before_request(authenticate)
    app.after_request(_close_after_unread_body)
    app.register_error_handler(InputError, _input_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


async def _input_error(e: InputError) -> Response:
    return error_response(e.status, e.message, e.problems)


async def _store_error(e: StoreError) -> Response:
    log.error("%s %s: %s", request.method, request.path, e)
    return json_response(
        {"error": "the database is unavailable; nothing was changed, retry later"},
        503,
        {"Retry-After": "5"},
    )


async def _http_error(e: HTTPException) -> Response:
    status = e.code or 500
    response = error_response(status, (e.description or e.name).split("\n")[0])
    for name, value in e.get_headers():
        if name.lower() == "allow":  # a 405 says which methods the path takes
            response.headers[name] = value
    return response


async def _close_after_unread_body(response: Response) -> Response:
    """An error answered before the body was read (auth, routing, size) ends the
    connection: its unread rest would otherwise be taken for the next request, or stall
    the connection."""
    has_body = request.content_length or "transfer-encoding" in request.headers
    if response.status_code >= 400 and has_body:
        response.headers["Connection"] = "close"
    return response


async def _unexpected(e: Exception) -> Response:
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=e)
    return error_response(500, "internal error")
