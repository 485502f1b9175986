"""Alerts made directly, for tests and benchmarks that need an outbox without a feed."""

from __future__ import annotations

from certwatch.core.alerts import PENDING, Alert


def pending_alert(n: int, now: float) -> Alert:
    """The ``n``-th of a batch of distinct suspicious alerts, queued for delivery at ``now``."""
    return Alert(
        event_id=f"evt-{n}",
        kind="alert",
        issuance=f"aki:00:{n:x}",
        status=PENDING,
        severity="suspicious",
        matched_entries=("example.org",),
        matched_sans=(f"b{n}.example.org",),
        cert={"fingerprint_sha1": "00" * 20, "all_sans": [f"b{n}.example.org"], "serial": "01"},
        facts={},
        seen_at=now,
        created_at=now,
        next_attempt_at=now,
        queued_at=now,
    )
