"""Coverage in the service: logs resolved from certstream's URLs, gaps, labels, bounds,
and positions saved to a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from certwatch.core.loglist import LogInfo, LogKind, LogList
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import MAX_LOG_URL, MAX_UNLISTED_LOGS, Coverage
from certwatch.store import SQLiteStore

LOG_A = "https://log-a.example"
LOG_B = "https://log-b.example"


def sample(metrics: Metrics, name: str, log: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"log": log})


def missed(metrics: Metrics, log: str) -> float:
    return sample(metrics, "certwatch_ct_missed_entries_total", log) or 0.0


def listed(read_url: str, *urls: str, kind: LogKind = LogKind.TILED) -> LogInfo:
    return LogInfo(read_url, kind, description="Listed", urls=frozenset([read_url, *urls]))


class TestCounting:
    def test_gaps_are_counted_per_log(self) -> None:
        """A jump of n in one log's cert_index counts n - 1 missed entries for that log only."""
        metrics = Metrics()
        coverage = Coverage(metrics.coverage)
        for index in (10, 11, 12, 16, 17):
            coverage.observe(LOG_A, "", index)
        for index in (5, 6, 7):
            coverage.observe(LOG_B, "", index)
        assert missed(metrics, LOG_A) == 3
        assert missed(metrics, LOG_B) == 0
        assert coverage.missed == 3

    def test_repeats_and_out_of_order_entries_are_not_gaps(self) -> None:
        """A repeated or lower index (a retransmission) is neither a gap nor a new baseline."""
        coverage = Coverage(Metrics().coverage, backfill=True)
        for index in (10, 11, 11, 9, 12):
            coverage.observe(LOG_A, "", index)
        assert coverage.missed == 0
        assert coverage.state(LOG_A).gaps == []
        assert coverage.state(LOG_A).position == 12

    def test_a_reconnect_window_is_a_gap_but_not_missed(self) -> None:
        """After a reconnect, a log's first index beyond the last is a gap, not a missed count."""
        # certstream did not skip it: certwatch was not connected.
        coverage = Coverage(Metrics().coverage, backfill=True)
        coverage.observe(LOG_A, "", 10)
        coverage.new_connection()
        coverage.observe(LOG_A, "", 500)
        coverage.observe(LOG_A, "", 501)
        assert coverage.missed == 0
        assert coverage.state(LOG_A).gaps == [(11, 499)]
        assert coverage.state(LOG_A).position == 10

    def test_without_backfill_only_the_count_is_kept(self) -> None:
        """With back-fill off, jumps are counted as before and no gap is kept."""
        coverage = Coverage(Metrics().coverage, backfill=False)
        for index in (1, 5, 9):
            coverage.observe(LOG_A, "", index)
        assert coverage.missed == 6
        assert coverage.state(LOG_A).gaps == []

    def test_a_log_series_exists_from_its_first_message(self) -> None:
        """Per-log coverage series start at 0 with the log's first message."""
        # So that Prometheus' increase() sees the first gap.
        metrics = Metrics()
        coverage = Coverage(metrics.coverage, backfill=True)
        assert sample(metrics, "certwatch_ct_missed_entries_total", LOG_A) is None
        coverage.observe(LOG_A, "", 10)
        for name in (
            "certwatch_ct_missed_entries_total",
            "certwatch_ct_backfilled_entries_total",
            "certwatch_ct_unrecovered_entries_total",
            "certwatch_ct_backfill_pending_entries",
        ):
            assert sample(metrics, name, LOG_A) == 0, name

    def test_pending_falls_back_to_zero_once_filled(self) -> None:
        """The pending gauge shows a gap's size until back-fill fills it, then 0."""
        metrics = Metrics()
        coverage = Coverage(metrics.coverage, backfill=True)
        coverage.observe(LOG_A, "", 10)
        coverage.observe(LOG_A, "", 20)
        assert sample(metrics, "certwatch_ct_backfill_pending_entries", LOG_A) == 9
        coverage.filled(LOG_A, (11, 19))
        assert sample(metrics, "certwatch_ct_backfill_pending_entries", LOG_A) == 0
        assert sample(metrics, "certwatch_ct_backfilled_entries_total", LOG_A) == 9


class TestLogs:
    def test_a_message_is_matched_to_its_log_by_any_url(self) -> None:
        """source.url finds the listed log by any of its URLs; the log is named by its read URL."""
        # url, submission_url or monitoring_url, ignoring the scheme's case and a trailing slash.
        metrics = Metrics()
        coverage = Coverage(metrics.coverage, backfill=True)
        coverage.set_log_list(LogList((
            listed("https://mon.example/willow", "https://sub.example/willow"),
        )))  # fmt: skip
        info = coverage.resolve("HTTPS://sub.example/willow/", "tiled")
        assert info is not None
        assert info.read_url == "https://mon.example/willow"
        coverage.observe("HTTPS://sub.example/willow/", "tiled", 7)
        assert missed(metrics, "https://mon.example/willow") == 0  # the series is born
        assert coverage.missed == 0

    def test_an_unlisted_log_is_read_from_its_own_url_and_type(self) -> None:
        """An unlisted log is followed under certstream's URL and type, and cannot be verified."""
        coverage = Coverage(Metrics().coverage, backfill=True)
        info = coverage.resolve("https://Other.example/log/", "tiled")
        assert info is not None
        assert (info.read_url, info.kind, info.listed, info.key) == (
            "https://other.example/log", LogKind.TILED, False, None,
        )  # fmt: skip
        elixir = coverage.resolve("https://elixir.example/log/")  # no source.type
        assert elixir is not None
        assert elixir.kind is LogKind.RFC6962

    def test_a_list_loaded_later_names_the_logs_already_followed(self) -> None:
        """When the list loads after a log was first seen, the log is named by the list."""
        coverage = Coverage(Metrics().coverage, backfill=True)
        coverage.observe("https://sub.example/willow", "tiled", 1)
        coverage.set_log_list(LogList((
            listed("https://mon.example/willow", "https://sub.example/willow"),
        )))  # fmt: skip
        assert coverage.label("https://sub.example/willow") == "https://mon.example/willow"

    def test_unlisted_logs_are_bounded_in_number_and_url_length(self) -> None:
        """Unlisted logs are bounded in number and URL length: 300 huge URLs cost nothing."""
        # Past MAX_UNLISTED_LOGS, or with a URL over MAX_LOG_URL, a log is not followed nor read.
        metrics = Metrics()
        coverage = Coverage(metrics.coverage, backfill=True)
        for n in range(MAX_UNLISTED_LOGS + 88):
            coverage.observe(f"https://log-{n}.example", "", 1)
        huge = "https://" + "x" * (1 << 20)
        coverage.observe(huge, "", 1)
        coverage.observe(huge + "/2", "", 1)
        assert coverage.untracked == 88 + 2
        assert metrics.registry.get_sample_value("certwatch_ct_untracked_total") == 90
        assert len(coverage.samples()) == MAX_UNLISTED_LOGS
        assert max(len(label) for label in coverage.samples()) <= MAX_LOG_URL

    def test_listed_logs_are_followed_past_the_unlisted_bound(self) -> None:
        """The bound is on logs the list does not hold: a listed log is always followed."""
        coverage = Coverage(Metrics().coverage, backfill=True)
        coverage.set_log_list(LogList((listed("https://listed.example/log"),)))
        for n in range(MAX_UNLISTED_LOGS):
            coverage.observe(f"https://log-{n}.example", "", 1)
        coverage.observe("https://listed.example/log", "", 1)
        assert coverage.untracked == 0
        assert "https://listed.example/log" in coverage.samples()


class TestPersistence:
    async def test_positions_and_gaps_survive_a_restart(self, tmp_path: Path) -> None:
        """Saved positions and gaps are restored on start; only changed logs are saved again."""
        store = await SQLiteStore.open(tmp_path / "cw.db")
        try:
            coverage = Coverage(Metrics().coverage, backfill=True)
            for index in (100, 101, 150):
                coverage.observe(LOG_A, "rfc6962", index)
            coverage.observe(LOG_B, "tiled", 7)
            assert await coverage.save(store) == 2
            assert await coverage.save(store) == 0  # nothing changed since
            coverage.observe(LOG_B, "tiled", 8)
            assert await coverage.save(store) == 1

            restarted = Coverage(Metrics().coverage, backfill=True)
            assert sorted(await restarted.adopt(store)) == [LOG_A, LOG_B]
            a = restarted.state(LOG_A)
            assert (a.position, a.high, a.gaps, a.kind) == (101, 150, [(102, 149)], "rfc6962")
            assert restarted.state(LOG_B).position == 8
            assert restarted.info(LOG_B).kind is LogKind.TILED
        finally:
            store.close()
