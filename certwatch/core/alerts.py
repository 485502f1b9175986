"""Alerts as stored and as sent. Pure logic, no I/O.

An :class:`Alert` is one row of the ``alerts`` table: the outbox entry for one webhook
event. ``kind`` is ``alert`` for the one event per issuance, ``resolved`` for the follow-up
sent when a suspicious issuance is later recognised.

Lifecycle (``status``)::

    held ──(grace over or recognised)──> pending ──(2xx)──> delivered
                                            │
                                            └──(retry period over)──> failed
    observer mode (no WEBHOOK_URL): decided alerts become ``observed`` instead of pending.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from certwatch.core.identity import CertFacts
from certwatch.core.loglist import normalise_log_url
from certwatch.core.names import Match
from certwatch.core.observation import CertSummary, Observation
from certwatch.core.recognition import Recognition

__all__ = [
    "Alert",
    "Kind",
    "Severity",
    "Status",
    "decided",
    "new_alert",
    "resolved_follow_up",
    "webhook_payload",
]


class Severity(enum.StrEnum):
    """The verdict on a matched issuance."""

    INFO = "info"
    """Recognised as the organisation's own (also a heartbeat of the whole pipeline)."""
    SUSPICIOUS = "suspicious"
    """Not in the inventory: a potential hijack."""


class Status(enum.StrEnum):
    """Where an alert is in its life (see the module docstring)."""

    HELD = "held"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    OBSERVED = "observed"


class Kind(enum.StrEnum):
    ALERT = "alert"
    """The one event of an issuance."""
    RESOLVED = "resolved"
    """The follow-up when a suspicious issuance is recognised later."""


@attrs.frozen
class Alert:
    """One stored alert (an outbox row)."""

    event_id: str
    """Stable across retries and restarts: the ``webhook-id`` header."""
    kind: Kind
    issuance: str
    status: Status
    severity: Severity | None
    """``None`` while held."""
    matched_entries: tuple[str, ...]
    matched_sans: tuple[str, ...]
    cert: CertSummary
    facts: CertFacts
    """The identifying facts, kept so a held or suspicious alert can be re-checked."""
    seen_at: float
    created_at: float
    id: int | None = None
    parent_id: int | None = None
    decide_at: float | None = None
    recognised_by: Recognition | None = None
    resolved_at: float | None = None
    resolved_by: Recognition | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    queued_at: float | None = None
    """When the alert last entered ``pending``: the retry period counts from here."""

    @property
    def delivered(self) -> bool:
        return self.status is Status.DELIVERED


def new_alert(observation: Observation, match: Match, *, event_id: str, now: float) -> Alert:
    """The alert for a newly seen issuance, not yet decided (``held``)."""
    return Alert(
        event_id=event_id,
        kind=Kind.ALERT,
        issuance=observation.facts.issuance_key(),
        status=Status.HELD,
        severity=None,
        matched_entries=match.entries,
        matched_sans=match.sans,
        cert=observation.summary,
        facts=observation.facts,
        seen_at=observation.seen if observation.seen is not None else now,
        created_at=now,
    )


def decided(alert: Alert, recognition: Recognition | None, *, observer: bool, now: float) -> Alert:
    """The alert with its verdict: ``info`` when recognised, else ``suspicious``, queued."""
    return attrs.evolve(
        alert,
        severity=Severity.INFO if recognition else Severity.SUSPICIOUS,
        status=Status.OBSERVED if observer else Status.PENDING,
        recognised_by=recognition,
        decide_at=None,
        next_attempt_at=now,
        queued_at=now,
    )


def resolved_follow_up(
    alert: Alert, recognition: Recognition, *, event_id: str, observer: bool, now: float
) -> Alert:
    """The ``resolved`` event for a suspicious alert that a late registration recognised."""
    return attrs.evolve(
        alert,
        id=None,
        event_id=event_id,
        kind=Kind.RESOLVED,
        parent_id=alert.id,
        severity=Severity.INFO,
        status=Status.OBSERVED if observer else Status.PENDING,
        created_at=now,
        decide_at=None,
        recognised_by=recognition,
        resolved_at=now,
        resolved_by=recognition,
        attempts=0,
        last_error=None,
        next_attempt_at=now,
        delivered_at=None,
        queued_at=now,
    )


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body POSTed for an alert: the contract's fields, then documented additions."""
    cert = alert.cert
    lifetime = None
    if cert.not_before is not None and cert.not_after is not None:
        lifetime = round((cert.not_after - cert.not_before) / 86400, 2)
    return {
        "fingerprint_sha1": cert.fingerprint_sha1,
        "severity": alert.severity,
        "matched_entries": sorted(alert.matched_entries),
        "matched_sans": sorted(alert.matched_sans),
        "all_sans": list(cert.all_sans),
        "issuer_o": cert.issuer_o,
        "issuer_cn": cert.issuer_cn,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
        "lifetime_days": lifetime,
        "source_log": cert.source_log,
        "cert_link": cert.cert_link,
        "serial": cert.serial,
        "update_type": cert.update_type,
        "seen_at": alert.seen_at,
        # Additions (documented in the README): correlate an alert and its follow-up.
        "event": alert.kind,
        "alert_id": alert.parent_id if alert.parent_id is not None else alert.id,
        "issuance_id": alert.issuance,
        "recognised_by": None if alert.recognised_by is None else alert.recognised_by.as_dict(),
        "resolved_by": None if alert.resolved_by is None else alert.resolved_by.as_dict(),
        # Coverage additions (the contract's): where the certificate was seen.
        "observed_via": cert.observed_via,
        "log_url": cert.log_url or normalise_log_url(cert.source_url),
        "log_index": cert.cert_index,
        "log_verified": cert.log_verified,
        "log_timestamp": cert.log_timestamp,
    }
