"""Who may call what: the bearer token, and the routes that need none.

Every route needs ``Authorization: Bearer <API_TOKEN>`` unless its handler is marked
:func:`public`; the marker is the one list of public routes, read both here and by the
OpenAPI document (:mod:`certwatch.http.openapi`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from quart import Response, current_app, request

from certwatch.http.context import context
from certwatch.http.responses import error_response

__all__ = ["authenticate", "is_public", "public"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "_certwatch_public"
_DOCUMENT_ENDPOINTS = frozenset({"openapi", "swagger_ui"})
"""quart-schema's own routes (the document and its page): public, and not ours to mark."""


def public(view: F) -> F:
    """Mark a handler as needing no token."""
    setattr(view, _MARK, True)
    return view


def is_public(endpoint: str | None, view: Callable[..., Any] | None) -> bool:
    return endpoint in _DOCUMENT_ENDPOINTS or getattr(view, _MARK, False)


async def authenticate() -> Response | None:
    """Before every request: 401 without a usable bearer header, 403 with a wrong token.

    Tokens are compared in constant time and never logged.
    """
    if request.routing_exception is not None:
        return None  # a 404/405 that routing is about to answer
    endpoint = request.endpoint
    if is_public(endpoint, current_app.view_functions.get(endpoint or "")):
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        return error_response(401, "missing Authorization header; send 'Bearer <API_TOKEN>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error_response(401, "malformed Authorization header; expected 'Bearer <API_TOKEN>'")
    if not hmac.compare_digest(token.encode(), context().token.encode()):
        return error_response(403, "invalid token")
    return None
