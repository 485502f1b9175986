"""The metrics, group by group: every series a rule or the dashboard reads exists from the
start with its bounded labels, and each group counts what its component does."""

from __future__ import annotations

import pytest

from certwatch.core.loglist import LogInfo, LogKind, LogList
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage

GROUPS: dict[str, dict[str, dict[str, str]]] = {
    "feed": {
        "certwatch_ct_messages_total": {"type": "certificate_update"},
        "certwatch_ct_coerced_fields_total": {"field": "cert_index"},
        "certwatch_ct_skipped_total": {"reason": "invalid_json"},
        "certwatch_ct_dropped_total": {},
        "certwatch_ws_reconnects_total": {},
        "certwatch_ws_connect_failures_total": {"reason": "refused"},
        "certwatch_ws_connected": {},
        "certwatch_ws_disconnected_seconds": {},
        "certwatch_feed_queue_depth": {},
        "certwatch_last_ct_event_timestamp_seconds": {},
    },
    "coverage": {
        "certwatch_ct_untracked_total": {},
        "certwatch_ct_log_list_logs": {},
        "certwatch_ct_log_list_loaded_timestamp_seconds": {},
    },
    "alerts": {
        "certwatch_alerts_total": {"severity": "suspicious"},
        "certwatch_alerts_held": {},
        "certwatch_alerts_resolved_total": {},
        "certwatch_dedupe_cache_size": {},
    },
    "outbox": {
        "certwatch_webhook_total": {"result": "failure"},
        "certwatch_webhook_duration_seconds_count": {},
        "certwatch_webhook_retry_after_ignored_total": {},
        "certwatch_outbox_pending": {},
        "certwatch_outbox_failed": {},
        "certwatch_outbox_oldest_pending_age_seconds": {},
        "certwatch_outbox_claims_total": {"result": "lost"},
    },
    "store": {
        "certwatch_db_round_trip_seconds": {},
        "certwatch_leader": {},
        "certwatch_views_sync_lag_seconds_count": {},
        "certwatch_watch_entries": {},
        "certwatch_known_fingerprints": {},
        "certwatch_known_keys": {},
    },
}


@pytest.mark.parametrize("group", list(GROUPS))
def test_each_group_exports_its_series_from_the_start(group: str) -> None:
    """Every series of a group exists before anything happens (bounded labels at 0)."""
    metrics = Metrics()
    for name, labels in GROUPS[group].items():
        assert metrics.registry.get_sample_value(name, labels) == 0, name


def test_every_severity_and_result_is_a_series_at_zero() -> None:
    """Alert severities, delivery results and claim results are all there at 0."""
    metrics = Metrics()
    for severity in ("info", "suspicious"):
        assert (
            metrics.registry.get_sample_value("certwatch_alerts_total", {"severity": severity}) == 0
        )
    for result in ("won", "lost"):
        assert (
            metrics.registry.get_sample_value("certwatch_outbox_claims_total", {"result": result})
            == 0
        )


def test_every_listed_log_has_its_coverage_series_from_the_start() -> None:
    """A listed log's coverage series exist at 0 before certstream names it (first gaps)."""
    metrics = Metrics()
    coverage = Coverage(metrics.coverage, backfill=True)
    listed = LogInfo("https://ct.example/2026h2", LogKind.RFC6962, urls=frozenset())
    coverage.set_log_list(LogList((listed,)))
    for name in (
        "certwatch_ct_missed_entries_total",
        "certwatch_ct_backfilled_entries_total",
        "certwatch_ct_unrecovered_entries_total",
        "certwatch_ct_backfill_pending_entries",
    ):
        assert metrics.registry.get_sample_value(name, {"log": listed.read_url}) == 0, name
