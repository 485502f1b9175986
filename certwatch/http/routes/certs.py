"""``/certs``: the inventory, the certificates the load balancers obtained."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request, document_response

from certwatch.core.identity import fingerprint
from certwatch.errors import InputError
from certwatch.http.context import context
from certwatch.http.requests import (
    CertIn,
    cert_from_json,
    cert_from_pem,
    check_pem_agrees,
    decode_body,
    query_number,
    read_body,
    source_field,
    structure,
)
from certwatch.http.responses import (
    LIMIT_MAX,
    OFFSET_MAX,
    CertOut,
    CertsQuery,
    Deleted,
    error_response,
    json_response,
)

__all__ = ["certs"]

log = logging.getLogger(__name__)

certs = Blueprint("certs", __name__)


@certs.post("/certs")
@document_request(CertIn)
@document_response(CertOut, 201)
async def add_cert() -> Response:
    """Register a certificate an LB obtained: the contract's JSON, a PEM, or both."""
    ctx = context()
    kind, data = await read_body()
    now = ctx.clock()
    if kind == "pem":
        source = source_field(request.args.get("source", ""))
        pem = data.decode("utf-8", "replace")
        cert = await ctx.off_loop(cert_from_pem, pem, source, now, "body")
    else:
        body = structure(decode_body(data), CertIn)
        source_field(body.source)
        if body.pem is not None:
            cert = await ctx.off_loop(cert_from_pem, body.pem, body.source, now)
            check_pem_agrees(body, cert)
        else:
            cert = cert_from_json(body, now)
    old = await ctx.views.upsert_cert(cert)
    log.info(
        "inventory: %s %s (%s)", "updated" if old else "added", cert.fingerprint_sha1, cert.source
    )
    await ctx.alerter.reconcile()
    return json_response(CertOut.of(cert), 201)


@certs.get("/certs")
@document_querystring(CertsQuery)
@document_response(list[CertOut], 200)
async def list_certs() -> Response:
    """The inventory, newest first."""
    limit = query_number("limit", 100, 1, LIMIT_MAX, integer=True)
    offset = query_number("offset", 0, 0, OFFSET_MAX, integer=True)
    rows = await context().store.list_certs(limit, offset)
    return json_response([CertOut.of(c) for c in rows])


@certs.delete("/certs/<path:sha1>")
@document_response(Deleted, 200)
async def delete_cert(sha1: str) -> Response:
    """Forget an inventory certificate by its SHA-1 fingerprint."""
    digest = fingerprint(sha1)
    if digest is None:
        raise InputError("invalid path", [("sha1", "must be 40 hex digits (colons optional)")])
    if await context().views.delete_cert(digest) is None:
        return error_response(404, f"no certificate {digest}")
    log.info("inventory: deleted %s", digest)
    return json_response(Deleted(1))
