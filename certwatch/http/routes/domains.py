"""``/domains``: the watch list."""

from __future__ import annotations

import logging

from quart import Blueprint, Response
from quart_schema import document_request, document_response

from certwatch.http.context import context
from certwatch.http.requests import DomainIn, json_body, path_entry, structure, watch_entry
from certwatch.http.responses import (
    Deleted,
    DomainCreated,
    DomainOut,
    error_response,
    json_response,
)

__all__ = ["domains"]

log = logging.getLogger(__name__)

domains = Blueprint("domains", __name__)


@domains.post("/domains")
@document_request(DomainIn)
@document_response(DomainCreated, 201)
@document_response(DomainCreated, 200)
async def add_domain() -> Response:
    """Watch a domain and everything below it (re-posting updates the note)."""
    ctx = context()
    body = structure(await json_body(), DomainIn)
    value = watch_entry(body)
    created = await ctx.views.add_domain(value, body.note, ctx.clock())
    log.info("watch entry %s %s", value, "added" if created else "updated")
    if created and ctx.caa is not None:
        ctx.caa.soon(value)  # its CAA history starts now, not at the next refresh
    return json_response(DomainCreated(value, created), 201 if created else 200)


@domains.get("/domains")
@document_response(list[DomainOut], 200)
async def list_domains() -> Response:
    """The watch list, sorted by value."""
    listed = await context().store.list_domains()
    return json_response([DomainOut(d.value, d.note, d.added_at) for d in listed])


@domains.delete("/domains/<path:value>")
@document_response(Deleted, 200)
async def delete_domain(value: str) -> Response:
    """Stop watching a domain (the path value is normalised like the input)."""
    entry = path_entry(value, "value")
    if not await context().views.delete_domain(entry):
        return error_response(404, f"no watch entry {entry!r}")
    log.info("watch entry %s deleted", entry)
    return json_response(Deleted(1))
