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

from typing import Any

import attrs

from certwatch.core.identity import CertFacts
from certwatch.core.messages import UpdateDetails
from certwatch.core.names import Match
from certwatch.core.recognition import Recognition

__all__ = [
    "ALERT",
    "INFO",
    "RESOLVED",
    "STATUSES",
    "SUSPICIOUS",
    "Alert",
    "cert_summary",
    "decided",
    "facts_from_json",
    "facts_to_json",
    "new_alert",
    "resolved_follow_up",
    "webhook_payload",
]

INFO = "info"
SUSPICIOUS = "suspicious"
SEVERITIES = (INFO, SUSPICIOUS)

ALERT = "alert"
RESOLVED = "resolved"

HELD = "held"
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
OBSERVED = "observed"
STATUSES = (HELD, PENDING, DELIVERED, FAILED, OBSERVED)


@attrs.frozen
class Alert:
    """One stored alert (an outbox row)."""

    event_id: str
    """Stable across retries and restarts: the ``webhook-id`` header."""
    kind: str
    issuance: str
    status: str
    severity: str | None
    matched_entries: tuple[str, ...]
    matched_sans: tuple[str, ...]
    cert: dict[str, Any]
    """What the feed said about the certificate (see :func:`cert_summary`)."""
    facts: dict[str, Any]
    """The identifying facts, kept so a held or suspicious alert can be re-checked."""
    seen_at: float
    created_at: float
    id: int | None = None
    parent_id: int | None = None
    decide_at: float | None = None
    recognised_by: dict[str, str] | None = None
    resolved_at: float | None = None
    resolved_by: dict[str, str] | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    queued_at: float | None = None
    """When the alert last entered ``pending``: the retry period counts from here."""

    @property
    def fingerprint(self) -> str:
        return str(self.cert.get("fingerprint_sha1", ""))

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED


def new_alert(
    update: UpdateDetails, match: Match, facts: CertFacts, *, event_id: str, now: float
) -> Alert:
    """The alert for a newly seen issuance, not yet decided (``held``)."""
    return Alert(
        event_id=event_id,
        kind=ALERT,
        issuance=facts.issuance_key(),
        status=HELD,
        severity=None,
        matched_entries=match.entries,
        matched_sans=match.sans,
        cert=cert_summary(update),
        facts=facts_to_json(facts),
        seen_at=update.seen if update.seen is not None else now,
        created_at=now,
    )


def decided(alert: Alert, recognition: Recognition | None, *, observer: bool, now: float) -> Alert:
    """The alert with its verdict: ``info`` when recognised, else ``suspicious``, queued."""
    return attrs.evolve(
        alert,
        severity=INFO if recognition else SUSPICIOUS,
        status=OBSERVED if observer else PENDING,
        recognised_by=None if recognition is None else recognition.as_dict(),
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
        kind=RESOLVED,
        parent_id=alert.id,
        severity=INFO,
        status=OBSERVED if observer else PENDING,
        created_at=now,
        decide_at=None,
        recognised_by=recognition.as_dict(),
        resolved_at=now,
        resolved_by=recognition.as_dict(),
        attempts=0,
        last_error=None,
        next_attempt_at=now,
        delivered_at=None,
        queued_at=now,
    )


def cert_summary(update: UpdateDetails) -> dict[str, Any]:
    """The certificate fields an alert reports, as the feed gave them."""
    return {
        "fingerprint_sha1": update.fingerprint_sha1,
        "all_sans": list(update.names),
        "issuer": update.issuer,
        "issuer_o": update.issuer_o,
        "issuer_cn": update.issuer_cn,
        "not_before": update.not_before,
        "not_after": update.not_after,
        "source_log": update.source_name,
        "source_url": update.source_url,
        "cert_link": update.cert_link,
        "cert_index": update.cert_index,
        "serial": update.serial,
        "update_type": update.update_type,
    }


def facts_to_json(facts: CertFacts) -> dict[str, Any]:
    return {
        "names": sorted(facts.names),
        "subject_cn": facts.subject_cn,
        "sha1": facts.sha1,
        "sha256": facts.sha256,
        "authority_key_id": facts.authority_key_id,
        "serial": None if facts.serial is None else f"{facts.serial:x}",
        "issuer": facts.issuer,
        "tbs_sha256": facts.tbs_sha256,
        "spki_sha256": facts.spki_sha256,
    }


def facts_from_json(data: dict[str, Any]) -> CertFacts:
    serial = data.get("serial")
    return CertFacts(
        names=frozenset(data.get("names") or ()),
        subject_cn=data.get("subject_cn"),
        sha1=data.get("sha1"),
        sha256=data.get("sha256"),
        authority_key_id=data.get("authority_key_id"),
        serial=None if serial is None else int(serial, 16),
        issuer=data.get("issuer") or "",
        tbs_sha256=data.get("tbs_sha256"),
        spki_sha256=data.get("spki_sha256"),
    )


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body POSTed for an alert: the contract's fields, then documented additions."""
    cert = alert.cert
    not_before, not_after = cert.get("not_before"), cert.get("not_after")
    lifetime = None
    if isinstance(not_before, int) and isinstance(not_after, int):
        lifetime = round((not_after - not_before) / 86400, 2)
    return {
        "fingerprint_sha1": cert.get("fingerprint_sha1", ""),
        "severity": alert.severity,
        "matched_entries": sorted(alert.matched_entries),
        "matched_sans": sorted(alert.matched_sans),
        "all_sans": cert.get("all_sans", []),
        "issuer_o": cert.get("issuer_o"),
        "issuer_cn": cert.get("issuer_cn"),
        "not_before": not_before,
        "not_after": not_after,
        "lifetime_days": lifetime,
        "source_log": cert.get("source_log", ""),
        "cert_link": cert.get("cert_link", ""),
        "serial": cert.get("serial", ""),
        "update_type": cert.get("update_type", ""),
        "seen_at": alert.seen_at,
        # Additions (documented in the README): correlate an alert and its follow-up.
        "event": alert.kind,
        "alert_id": alert.parent_id if alert.parent_id is not None else alert.id,
        "issuance_id": alert.issuance,
        "recognised_by": alert.recognised_by,
        "resolved_by": alert.resolved_by,
    }
