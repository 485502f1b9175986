"""The OpenAPI document: quart-schema's, completed with what every route shares.

It is generated from the classes the handlers use (:mod:`.requests`, :mod:`.responses`),
so it cannot drift from the code; this adds the bearer scheme (and which routes are
public, from the one marker in :mod:`.auth`), the error responses each kind of route can
give, closed request objects, the PEM form of ``POST /certs`` and the text of ``/metrics``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from quart_schema.openapi import OpenAPIProvider

from certwatch.http.auth import is_public
from certwatch.http.responses import ErrorOut, HealthOut

__all__ = ["OpenAPI"]


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


_ERRORS = {
    "400": "the body is empty, not JSON or not a JSON object",
    "401": "no or malformed Authorization header",
    "403": "wrong token",
    "404": "no such resource",
    "409": "observer mode: nothing is sent",
    "413": "the body is over 1 MiB",
    "415": "unsupported Content-Type",
    "422": "a field is missing, of the wrong type or invalid; `fields` names each",
    "503": "the database is unavailable; nothing changed, retry",
}
_TAGS = {
    "domains": "The watch list: domains watched with everything below them.",
    "certs": "The inventory: certificates the load balancers obtained.",
    "keys": "Public keys registered in advance, with the names they may be used for.",
    "rules": "The organisation's rules: which CAs may issue for which names (triage).",
    "brands": "Brands the lookalike watch protects, and the names they own near them.",
    "alerts": "Alerts, their delivery, re-queueing it, and acknowledging them.",
    "health": "Health check and metrics (anonymous).",
}
"""Each route is listed under its resource (the first segment of its path)."""
_LISTS = frozenset({"/domains", "/certs", "/keys", "/rules", "/brands", "/alerts"})
"""GET on these answers a JSON array of the documented class."""


class OpenAPI(OpenAPIProvider):
    """quart-schema's document, completed with what every route shares.

    The bearer scheme, the error responses each kind of route can give (all with the one
    error body), closed request objects (unknown fields are rejected), the PEM form of
    ``POST /certs`` and the text exposition of ``/metrics``.
    """

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["tags"] = [{"name": name, "description": text} for name, text in _TAGS.items()]
        self._public = _public_paths(self._app)
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(_component_schemas(ErrorOut, HealthOut))
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                self._complete(path, method, operation)
        return document

    def _complete(self, path: str, method: str, operation: dict[str, Any]) -> None:
        resource = path.split("/")[1]
        operation["tags"] = [resource if resource in _TAGS else "health"]
        # quart-schema keys responses by int; JSON (and sorting) wants one kind of key.
        responses = {str(code): value for code, value in operation.get("responses", {}).items()}
        operation["responses"] = responses
        codes: list[str] = []
        if path in self._public:
            operation["security"] = []
        else:
            codes += ["401", "403", "503"]
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True
            codes += ["400", "413", "415", "422"]
            for media in operation["requestBody"]["content"].values():
                _close(media.get("schema", {}))
        if operation.get("parameters"):
            codes += ["422"]
        if "{" in path or path.startswith("/alerts/"):
            codes += ["404"]
        if path.startswith("/alerts/") and method == "post":
            codes += ["409"]
        for code in codes:
            responses.setdefault(code, _error_response(_ERRORS[code]))
        if method == "get" and path in _LISTS:
            media = responses["200"]["content"]["application/json"]
            media["schema"] = {"type": "array", "items": media["schema"]}
        if path == "/metrics":
            responses["200"] = {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        if path == "/certs" and method == "post":
            operation["requestBody"]["content"]["application/x-pem-file"] = {
                "schema": {"type": "string", "description": "one PEM certificate"}
            }


def _close(schema: dict[str, Any]) -> None:
    if schema.get("type") == "object":
        schema["additionalProperties"] = False


def _component_schemas(*classes: type) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        classes, ref_template="#/components/schemas/{name}"
    )
    return dict(components)


def _public_paths(app: Any) -> frozenset[str]:
    """The document's paths of the routes marked public (see :mod:`certwatch.http.auth`)."""
    return frozenset(
        _PARAMETER.sub(r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if is_public(rule.endpoint, app.view_functions.get(rule.endpoint))
    )


_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
"""A route parameter (``<path:value>``) as the document writes it (``{value}``)."""
