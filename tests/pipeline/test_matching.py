"""Coverage accounting in the pipeline: entries the feed skipped, per log (pure logic)."""

from __future__ import annotations

from certwatch.metrics import Metrics
from certwatch.pipeline.matching import MAX_LOG_URL, MAX_TRACKED_LOGS, Coverage

LOG_A = "https://log-a.example"
LOG_B = "https://log-b.example"


def missed(metrics: Metrics, log: str) -> float:
    value = metrics.registry.get_sample_value("certwatch_ct_missed_entries_total", {"log": log})
    return value or 0.0


class TestCoverage:
    def test_gaps_are_counted_per_log(self) -> None:
        """A jump of n in one log's cert_index counts n - 1 missed entries for that log only."""
        metrics = Metrics()
        coverage = Coverage(metrics)
        for index in (10, 11, 12, 16, 17):
            coverage.observe(LOG_A, index)
        for index in (5, 6, 7):
            coverage.observe(LOG_B, index)
        assert missed(metrics, LOG_A) == 3
        assert missed(metrics, LOG_B) == 0
        assert coverage.missed == 3

    def test_repeats_and_out_of_order_entries_are_not_gaps(self) -> None:
        """A repeated or lower index (a retransmission) is neither a gap nor a new baseline."""
        metrics = Metrics()
        coverage = Coverage(metrics)
        for index in (10, 11, 11, 9, 12):
            coverage.observe(LOG_A, index)
        assert coverage.missed == 0

    def test_a_new_connection_starts_afresh(self) -> None:
        """After reset (a reconnect), the first index of each log is a new baseline."""
        metrics = Metrics()
        coverage = Coverage(metrics)
        coverage.observe(LOG_A, 10)
        coverage.reset()
        coverage.observe(LOG_A, 500)
        coverage.observe(LOG_A, 501)
        assert coverage.missed == 0

    def test_the_log_label_is_bounded(self) -> None:
        """Once MAX_TRACKED_LOGS logs have had a label, a further log's gaps count as `other`."""
        metrics = Metrics()
        coverage = Coverage(metrics)
        for n in range(MAX_TRACKED_LOGS):
            coverage.observe(f"https://log-{n}.example", 1)
        coverage.reset()  # a reconnect: the logs followed start afresh, the labels stay
        for n in range(5):
            coverage.observe(f"https://late-{n}.example", 1)
            coverage.observe(f"https://late-{n}.example", 3)
        assert missed(metrics, "other") == 5
        assert coverage.missed == 5

    def test_the_logs_followed_are_bounded_in_number_and_url_length(self) -> None:
        """Past MAX_TRACKED_LOGS logs, or with a URL over MAX_LOG_URL, a log is not followed:
        300 distinct 1 MB URLs no longer cost 300 MB."""
        metrics = Metrics()
        coverage = Coverage(metrics)
        for n in range(MAX_TRACKED_LOGS + 88):
            coverage.observe(f"https://log-{n}.example", 1)
        huge = "https://" + "x" * (1 << 20)
        coverage.observe(huge, 1)
        coverage.observe(huge + "/2", 1)
        coverage.observe("https://" + "y" * (MAX_LOG_URL - 8), 1)  # exactly at the bound: fine
        assert coverage.untracked == 88 + 2 + 1
        assert metrics.registry.get_sample_value("certwatch_ct_untracked_total") == 91
        label_lengths = {len(labels[0]) for labels in _missed_labels(metrics)}
        assert max(label_lengths) <= MAX_LOG_URL

    def test_a_log_series_exists_from_its_first_message(self) -> None:
        """A log's missed-entries series is exported at 0 from its first message, so that
        Prometheus' increase() sees the first gap."""
        metrics = Metrics()
        coverage = Coverage(metrics)
        assert (
            metrics.registry.get_sample_value("certwatch_ct_missed_entries_total", {"log": LOG_A})
            is None
        )
        coverage.observe(LOG_A, 10)
        assert (
            metrics.registry.get_sample_value("certwatch_ct_missed_entries_total", {"log": LOG_A})
            == 0
        )


def _missed_labels(metrics: Metrics) -> list[tuple[str, ...]]:
    return [
        tuple(sample.labels.values())
        for family in metrics.registry.collect()
        if family.name == "certwatch_ct_missed_entries"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
