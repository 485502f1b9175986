"""Alerts as stored and as sent. Pure logic, no I/O.

An :class:`Alert` is one row of the ``alerts`` table: the outbox entry for one webhook
event. ``kind`` is ``alert`` for the one event per issuance, ``resolved`` for the follow-up
sent when a ``suspicious`` or ``critical`` issuance is later recognised or acknowledged.
Its severity, reason, rule and CA are the ladder's :class:`~certwatch.core.policy.Verdict`.

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

from certwatch.core.caa import CaaFinding
from certwatch.core.cas import CAIdentity
from certwatch.core.identity import CertFacts
from certwatch.core.loglist import normalise_log_url
from certwatch.core.lookalikes import LookalikeHit, lookalike_match
from certwatch.core.names import Match
from certwatch.core.observation import CertSummary, Observation
from certwatch.core.policy import Reason, RuleRef, Severity, Verdict
from certwatch.core.recognition import Recognition

__all__ = [
    "AckScope",
    "Alert",
    "Kind",
    "Severity",
    "Status",
    "decided",
    "lookalike_alert",
    "new_alert",
    "resolved_follow_up",
    "webhook_payload",
]

ALARMING = frozenset({Severity.SUSPICIOUS, Severity.CRITICAL})
"""Severities that a later recognition or acknowledgement resolves with a follow-up."""


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
    """The follow-up when a suspicious or critical issuance is recognised (or acknowledged)
    later."""


class AckScope(enum.StrEnum):
    """What an analyst's acknowledgement of an alert authorises."""

    CERTIFICATE = "certificate"
    """This issuance, as a registration would."""
    KEY = "key"
    """The certificate's public key, for every name on the certificate (as ``POST /keys``)."""
    ISSUER = "issuer"
    """The certificate's CA, for each matched SAN (``expect`` rules)."""


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
    reason: Reason | None = None
    """The ladder's rung (``None`` while held)."""
    issuer_ca: CAIdentity | None = None
    """The certificate's CA, when certwatch knows it (set when decided)."""
    rule: RuleRef | None = None
    """The rule that decided it, if one did."""
    caa: CaaFinding | None = None
    """The CAA evaluation (``None``: not evaluated: recognised, or CAA_CHECK=0)."""
    acknowledged_at: float | None = None
    acknowledged_scope: AckScope | None = None
    acknowledged_note: str | None = None
    lookalikes: tuple[LookalikeHit, ...] = ()
    """For a ``lookalike`` alert: the names imitating brands, best first."""

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


def lookalike_alert(
    observation: Observation,
    hits: tuple[LookalikeHit, ...],
    *,
    event_id: str,
    observer: bool,
    now: float,
) -> Alert:
    """The alert for a certificate whose names imitate brands: decided at once (no hold;
    the inventory and the rules do not apply), queued."""
    alert = new_alert(observation, lookalike_match(hits), event_id=event_id, now=now)
    return attrs.evolve(
        alert,
        severity=Severity.LOOKALIKE,
        reason=Reason.LOOKALIKE,
        lookalikes=hits,
        status=Status.OBSERVED if observer else Status.PENDING,
        next_attempt_at=now,
        queued_at=now,
    )


def decided(
    alert: Alert,
    verdict: Verdict,
    recognition: Recognition | None,
    *,
    observer: bool,
    now: float,
    caa: CaaFinding | None = None,
) -> Alert:
    """The alert with the ladder's verdict (what recognised it, if anything, and the CAA
    evaluation it was decided with), queued."""
    return attrs.evolve(
        alert,
        caa=caa,
        severity=verdict.severity,
        reason=verdict.reason,
        rule=verdict.rule,
        issuer_ca=verdict.issuer_ca,
        status=Status.OBSERVED if observer else Status.PENDING,
        recognised_by=recognition,
        decide_at=None,
        next_attempt_at=now,
        queued_at=now,
    )


def resolved_follow_up(
    alert: Alert,
    recognition: Recognition,
    *,
    event_id: str,
    observer: bool,
    now: float,
    verdict: Verdict | None = None,
) -> Alert:
    """The ``resolved`` event for a suspicious or critical alert that a late registration
    (or an acknowledgement) recognised: ``info``, or ``verdict``'s severity (``expected``
    for an acknowledged issuer)."""
    verdict = verdict or Verdict(Severity.INFO, Reason.RECOGNISED, issuer_ca=alert.issuer_ca)
    return attrs.evolve(
        alert,
        id=None,
        event_id=event_id,
        kind=Kind.RESOLVED,
        parent_id=alert.id,
        severity=verdict.severity,
        reason=verdict.reason,
        rule=verdict.rule,
        issuer_ca=verdict.issuer_ca,
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
        # Triage (the policy contract): why this severity, by which rule, which CA.
        "reason": alert.reason,
        "issuer_ca": None if alert.issuer_ca is None else alert.issuer_ca.as_dict(),
        "rule": None if alert.rule is None else alert.rule.as_dict(),
        "caa": None if alert.caa is None else alert.caa.as_dict(),
        # The lookalike watch: names imitating the organisation's brands.
        "lookalikes": [hit.as_dict() for hit in alert.lookalikes],
        # Coverage additions (the contract's): where the certificate was seen.
        "observed_via": cert.observed_via,
        "log_url": cert.log_url or normalise_log_url(cert.source_url),
        "log_index": cert.cert_index,
        "log_verified": cert.log_verified,
        "log_timestamp": cert.log_timestamp,
    }
