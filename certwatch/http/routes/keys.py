"""``/keys``: public keys registered in advance."""

from __future__ import annotations

import logging

from quart import Blueprint, Response
from quart_schema import document_request, document_response

from certwatch.core.certificates import spki_sha256_from_pem
from certwatch.core.identity import fingerprint
from certwatch.core.recognition import KnownKey
from certwatch.errors import InputError, InvalidCertificate
from certwatch.http.context import context
from certwatch.http.requests import KeyIn, json_body, names_field, structure
from certwatch.http.responses import Deleted, KeyCreated, KeyOut, error_response, json_response

__all__ = ["keys"]

log = logging.getLogger(__name__)

keys = Blueprint("keys", __name__)


@keys.post("/keys")
@document_request(KeyIn)
@document_response(KeyCreated, 201)
async def add_key() -> Response:
    """Register a public key with the names it may be used for."""
    ctx = context()
    body = structure(await json_body(), KeyIn)
    problems: list[tuple[str, str]] = []
    spki: str | None = None
    if (body.spki_sha256 is None) == (body.pem is None):
        problems.append(("spki_sha256", "give exactly one of spki_sha256 and pem"))
    elif body.pem is not None:
        try:
            spki = await ctx.off_loop(spki_sha256_from_pem, body.pem)
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
    return json_response(KeyCreated(spki, list(key.names), key.note, key.added_at, created), 201)


@keys.get("/keys")
@document_response(list[KeyOut], 200)
async def list_keys() -> Response:
    """The registered keys."""
    return json_response([KeyOut.of(k) for k in await context().store.list_keys()])


@keys.delete("/keys/<path:spki>")
@document_response(Deleted, 200)
async def delete_key(spki: str) -> Response:
    """Forget a registered key by its SPKI SHA-256."""
    digest = fingerprint(spki, length=64)
    if digest is None:
        raise InputError("invalid path", [("spki_sha256", "must be 64 hex digits")])
    if not await context().views.delete_key(digest):
        return error_response(404, f"no key {digest}")
    return json_response(Deleted(1))
