"""``/brands``: the brands the lookalike watch protects."""

from __future__ import annotations

import logging

from quart import Blueprint, Response
from quart_schema import document_request, document_response

from certwatch.http.context import context
from certwatch.http.requests import BrandIn, brand_from, json_body, path_entry, structure
from certwatch.http.responses import BrandOut, Deleted, error_response, json_response

__all__ = ["brands"]

log = logging.getLogger(__name__)

brands = Blueprint("brands", __name__)


@brands.post("/brands")
@document_request(BrandIn)
@document_response(BrandOut, 201)
@document_response(BrandOut, 200)
async def add_brand() -> Response:
    """Protect a brand (re-posting updates its note and allow list)."""
    ctx = context()
    brand = brand_from(structure(await json_body(), BrandIn), ctx.clock())
    stored, created = await ctx.views.upsert_brand(brand)
    log.info("brand %s %s", brand.domain, "added" if created else "updated")
    return json_response(BrandOut.of(stored), 201 if created else 200)


@brands.get("/brands")
@document_response(list[BrandOut], 200)
async def list_brands() -> Response:
    """The brands, sorted by domain."""
    return json_response([BrandOut.of(b) for b in await context().store.list_brands()])


@brands.delete("/brands/<path:domain>")
@document_response(Deleted, 200)
async def delete_brand(domain: str) -> Response:
    """Stop protecting a brand (the path value is normalised like the input)."""
    value = path_entry(domain, "domain")
    if not await context().views.delete_brand(value):
        return error_response(404, f"no brand {value!r}")
    log.info("brand %s deleted", value)
    return json_response(Deleted(1))
