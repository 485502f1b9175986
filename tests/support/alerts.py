"""Alerts made directly, for tests and benchmarks that need an outbox without a feed."""

from __future__ import annotations

from certwatch.core.alerts import Alert, Kind, Severity, Status
from certwatch.core.identity import CertFacts
from certwatch.core.observation import CertSummary


def pending_alert(n: int, now: float) -> Alert:
    """The ``n``-th of a batch of distinct suspicious alerts, queued for delivery at ``now``."""
    name = f"b{n}.example.org"
    return Alert(
        event_id=f"evt-{n}",
        kind=Kind.ALERT,
        issuance=f"aki:00:{n:x}",
        status=Status.PENDING,
        severity=Severity.SUSPICIOUS,
        matched_entries=("example.org",),
        matched_sans=(name,),
        cert=CertSummary(fingerprint_sha1="00" * 20, all_sans=(name,), serial="01"),
        facts=CertFacts(names=frozenset({name}), authority_key_id="00", serial=n),
        seen_at=now,
        created_at=now,
        next_attempt_at=now,
        queued_at=now,
    )
