"""``/alerts``: the alerts, re-queueing their delivery, and acknowledging them."""

from __future__ import annotations

import logging

from quart import Blueprint, Response
from quart_schema import document_querystring, document_request, document_response

from certwatch.core.alerts import Severity, Status
from certwatch.http.context import context
from certwatch.http.requests import (
    ROW_ID,
    AcknowledgeIn,
    acknowledgement_from,
    json_body,
    query_choice,
    query_flag,
    query_number,
    structure,
)
from certwatch.http.responses import (
    EPOCH_MAX,
    LIMIT_MAX,
    Acknowledgement,
    AlertOut,
    AlertsQuery,
    Requeued,
    error_response,
    json_response,
)

__all__ = ["alerts"]

log = logging.getLogger(__name__)

alerts = Blueprint("alerts", __name__)

_OBSERVER = "observer mode: no WEBHOOK_URL is set, nothing is sent"


@alerts.get("/alerts")
@document_querystring(AlertsQuery)
@document_response(list[AlertOut], 200)
async def list_alerts() -> Response:
    """Alerts, newest first, filtered."""
    since = query_number("since", None, 0, EPOCH_MAX, integer=False)
    limit = query_number("limit", 100, 1, LIMIT_MAX, integer=True)
    severity = query_choice("severity", Severity)
    status = query_choice("status", Status)
    delivered = query_flag("delivered")
    found = await context().store.list_alerts(
        since=since,
        limit=limit,
        severity=severity,
        status=status,
        delivered=delivered,
    )
    return json_response([AlertOut.of(a) for a in found])


@alerts.post(f"/alerts/<{ROW_ID}:alert_id>/retry")
@document_response(Requeued, 200)
async def retry_alert(alert_id: int) -> Response:
    """Queue one alert for delivery again (failed, pending or delivered)."""
    ctx = context()
    if ctx.sender is None:
        return error_response(409, _OBSERVER)
    count = await ctx.store.requeue(alert_id, ctx.clock())
    if not count:
        return error_response(404, f"no alert {alert_id} that can be re-queued")
    ctx.sender.wake()
    return json_response(Requeued(count))


@alerts.post("/alerts/retry-failed")
@document_response(Requeued, 200)
async def retry_failed() -> Response:
    """Queue every failed alert for delivery again."""
    ctx = context()
    if ctx.sender is None:
        return error_response(409, _OBSERVER)
    count = await ctx.store.requeue(None, ctx.clock())
    ctx.sender.wake()
    return json_response(Requeued(count))


@alerts.post(f"/alerts/<{ROW_ID}:alert_id>/acknowledge")
@document_request(AcknowledgeIn)
@document_response(Acknowledgement, 200)
async def acknowledge(alert_id: int) -> Response:
    """Authorise an alert's certificate, key or CA after the fact, which decides it."""
    ctx = context()
    scope, note = acknowledgement_from(structure(await json_body(), AcknowledgeIn))
    alert = await ctx.store.get_alert(alert_id)
    done = None
    if alert is not None:
        done = await ctx.alerter.acknowledge(alert, scope, note, ctx.views.acknowledge)
    if done is None:
        return error_response(404, f"no alert {alert_id}")
    rule_ids = [r.id for r in done.rules if r.id is not None]
    keys = [] if done.key is None else [done.key.spki_sha256]
    log.info("alert %d acknowledged (%s): %s %s", alert_id, scope, done.alert.kind,
             done.alert.severity)  # fmt: skip
    return json_response(Acknowledgement(alert_id, scope, rule_ids, keys))
