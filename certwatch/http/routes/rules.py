"""``/rules``: the organisation's expect, restrict and protect rules."""

from __future__ import annotations

import logging

from quart import Blueprint, Response
from quart_schema import document_request, document_response

from certwatch.http.context import context
from certwatch.http.requests import ROW_ID, RuleIn, json_body, rule_from, structure
from certwatch.http.responses import Deleted, RuleOut, error_response, json_response

__all__ = ["rules"]

log = logging.getLogger(__name__)

rules = Blueprint("rules", __name__)


@rules.post("/rules")
@document_request(RuleIn)
@document_response(RuleOut, 201)
async def add_rule() -> Response:
    """Add a rule; it applies to every decision from now on (held alerts included)."""
    ctx = context()
    rule = rule_from(structure(await json_body(), RuleIn), ctx.clock())
    stored = await ctx.views.add_rule(rule)
    log.info("rule %d added: %s %s %s", stored.id, stored.kind, stored.scope,
             ",".join(stored.issuers))  # fmt: skip
    return json_response(RuleOut.of(stored), 201)


@rules.get("/rules")
@document_response(list[RuleOut], 200)
async def list_rules() -> Response:
    """Every rule, by id (expired ones too, until deleted)."""
    return json_response([RuleOut.of(r) for r in await context().store.list_rules()])


@rules.delete(f"/rules/<{ROW_ID}:rule_id>")
@document_response(Deleted, 200)
async def delete_rule(rule_id: int) -> Response:
    """Delete a rule."""
    if not await context().views.delete_rule(rule_id):
        return error_response(404, f"no rule {rule_id}")
    log.info("rule %d deleted", rule_id)
    return json_response(Deleted(1))
