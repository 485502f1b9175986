"""Every Prometheus metric certwatch exports, on one registry per service instance.

Names, types and labels of the contract's metrics are fixed. Labels stay bounded: never a
domain, a fingerprint or a client; the ``log`` label is bounded by the number of CT logs.
Gauges that mirror in-memory state read it at scrape time (``set_function``), so they are
right at every moment without hot-path updates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Protocol

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from certwatch.core.alerts import Severity
from certwatch.core.messages import COERCIBLE_FIELDS, KNOWN_TYPES, SKIP_REASONS
from certwatch.errors import CTLogError, FeedConnectError

__all__ = ["CONTENT_TYPE", "LogSample", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MESSAGE_TYPES = (*KNOWN_TYPES, "unknown", "malformed")
RESULTS = ("success", "failure")
# Webhook round trips: a receiver on the LAN answers in milliseconds, n8n in the cloud in
# a second; the per-attempt timeout defaults to 10 s.
_WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# ``*_created`` series double the exposition and nothing here alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _CounterView(Collector):
    """A labelled counter whose values are read from the application at scrape time.

    Every value of ``keys`` is exported, 0 until counted: a fixed, bounded label set.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        keys: tuple[str, ...],
        read: Callable[[], Mapping[str, int]],
    ) -> None:
        self._name, self._documentation, self._label = name, documentation, label
        self._keys, self._read = keys, read

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self._name, self._documentation, labels=[self._label])]

    def collect(self) -> list[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        values = self._read()
        for key in self._keys:
            family.add_metric([key], float(values.get(key, 0)))
        return [family]


class _PoolUsage(Protocol):
    """The store's connections (``certwatch.store.PoolUsage``)."""

    @property
    def size(self) -> int: ...
    @property
    def in_use(self) -> int: ...
    @property
    def waiting(self) -> int: ...


class _Inventory(Sized, Protocol):
    @property
    def key_count(self) -> int: ...


@attrs.frozen
class LogSample:
    """One log's coverage counts, read at scrape time."""

    missed: int = 0
    backfilled: int = 0
    unrecovered: int = 0
    pending: int = 0


class _CoverageView(Collector):
    """The per-log coverage metrics, read from the coverage state at scrape time.

    A log's series exist from its first message, at 0, so ``increase()`` sees the first gap;
    a pending gauge falls back to 0 once its gaps are filled (the series stays).
    """

    _FAMILIES = (
        ("certwatch_ct_missed_entries", CounterMetricFamily, "missed",
         "Log entries the feed skipped (cert_index jumps within one connection), by log."),
        ("certwatch_ct_backfilled_entries", CounterMetricFamily, "backfilled",
         "Log entries certstream did not deliver that were read from the log itself, by log."),
        ("certwatch_ct_unrecovered_entries", CounterMetricFamily, "unrecovered",
         "Log entries certstream did not deliver that back-fill gave up on (over "
         "CT_BACKFILL_MAX_ENTRIES, or the log stayed unreachable), by log."),
        ("certwatch_ct_backfill_pending_entries", GaugeMetricFamily, "pending",
         "Log entries waiting to be back-filled, by log."),
    )  # fmt: skip

    def __init__(self, read: Callable[[], Mapping[str, LogSample]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return [kind(name, doc, labels=["log"]) for name, kind, _, doc in self._FAMILIES]

    def collect(self) -> list[Metric]:
        samples = self._read()
        families: list[Metric] = []
        for name, kind, field, doc in self._FAMILIES:
            family = kind(name, doc, labels=["log"])
            for label, sample in samples.items():
                family.add_metric([label], float(getattr(sample, field)))
            families.append(family)
        return families


class Metrics:
    """The registry and its metrics. One instance per running service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # --- the contract -----------------------------------------------------------------
        self._message_counts: Callable[[], Mapping[str, int]] = dict
        r.register(
            _CounterView(
                "certwatch_ct_messages",
                "Feed messages received, by message_type (unknown: an unrecognised type; "
                "malformed: not a usable message).",
                "type",
                MESSAGE_TYPES,
                lambda: self._message_counts(),
            )
        )
        self._coerced_counts: Callable[[], Mapping[str, int]] = dict
        r.register(
            _CounterView(
                "certwatch_ct_coerced_fields",
                "Feed message fields of the wrong type that were converted or left out (the "
                "message was still used), by field.",
                "field",
                COERCIBLE_FIELDS,
                lambda: self._coerced_counts(),
            )
        )
        self.alerts = Counter(
            "certwatch_alerts", "Alerts decided, by severity.", ["severity"], registry=r
        )
        self.webhook = Counter(
            "certwatch_webhook", "Webhook delivery attempts, by result.", ["result"], registry=r
        )
        self.webhook_duration = Histogram(
            "certwatch_webhook_duration_seconds",
            "Duration of webhook delivery attempts.",
            buckets=_WEBHOOK_BUCKETS,
            registry=r,
        )
        self.known_fingerprints = Gauge(
            "certwatch_known_fingerprints", "Certificates in the inventory.", registry=r
        )
        self.watch_entries = Gauge("certwatch_watch_entries", "Watched domains.", registry=r)
        self.last_ct_event = Gauge(
            "certwatch_last_ct_event_timestamp_seconds",
            "Wall-clock time of the last certificate_update received from the feed.",
            registry=r,
        )
        self.ws_connected = Gauge(
            "certwatch_ws_connected", "1 while connected to the feed, else 0.", registry=r
        )
        self.dedupe_cache_size = Gauge(
            "certwatch_dedupe_cache_size",
            "Issuances remembered in memory to suppress duplicate alerts.",
            registry=r,
        )
        # --- additions ----------------------------------------------------------------------
        self.start_time = Gauge(
            "certwatch_start_time_seconds",
            "Wall-clock time this certwatch started (alert rules use it to tell a young "
            "instance, and as the last event time before the first one).",
            registry=r,
        )
        self.ct_skipped = Counter(
            "certwatch_ct_skipped",
            "Feed messages skipped as malformed or of an unknown type, by reason.",
            ["reason"],
            registry=r,
        )
        self.ct_dropped = Counter(
            "certwatch_ct_dropped",
            "Feed messages dropped by certwatch itself because processing fell behind.",
            registry=r,
        )
        self._coverage: Callable[[], Mapping[str, LogSample]] = dict
        r.register(_CoverageView(lambda: self._coverage()))
        self.ct_untracked = Counter(
            "certwatch_ct_untracked",
            "Feed messages from logs not followed for gaps (past 128 logs that are not in the "
            "log list, or a URL over 256 characters).",
            registry=r,
        )
        self.ct_log_errors = Counter(
            "certwatch_ct_log_errors",
            "Failed CT log requests and responses that could not be used, by log and reason.",
            ["log", "reason"],
            registry=r,
        )
        self.db_connections = Gauge(
            "certwatch_db_connections",
            "Database connections for transactions: the pool's size (state=size), those in "
            "use, and transactions waiting for one.",
            ["state"],
            registry=r,
        )
        self.db_round_trip = Gauge(
            "certwatch_db_round_trip_seconds",
            "One round trip to the database, measured at the last scrape (or /healthz).",
            registry=r,
        )
        self.outbox_claims = Counter(
            "certwatch_outbox_claims",
            "Deliveries claimed by this replica (won) or found claimed by another (lost).",
            ["result"],
            registry=r,
        )
        for result in ("won", "lost"):
            self.outbox_claims.labels(result)
        self.leader = Gauge(
            "certwatch_leader",
            "1 while this replica holds the leader role (runs the hold timer, cleanup and "
            "back-fill); always 1 on SQLite.",
            registry=r,
        )
        self.views_lag = Histogram(
            "certwatch_views_sync_lag_seconds",
            "From a change to the watch list, inventory or keys (by the database's clock) to "
            "this replica's views having it: NOTIFY and the change log's latency.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60),
            registry=r,
        )
        self.ct_log_list_logs = Gauge(
            "certwatch_ct_log_list_logs",
            "Logs in the loaded CT log list (0: no list loaded; back-fill reads the logs "
            "certstream names, unverified).",
            registry=r,
        )
        self.ct_log_list_loaded = Gauge(
            "certwatch_ct_log_list_loaded_timestamp_seconds",
            "When the CT log list was last loaded (0: never).",
            registry=r,
        )
        self.ws_reconnects = Counter(
            "certwatch_ws_reconnects",
            "Feed connections lost or attempts that failed.",
            registry=r,
        )
        self.ws_connect_failures = Counter(
            "certwatch_ws_connect_failures",
            "Feed connection attempts that never became a WebSocket, by reason.",
            ["reason"],
            registry=r,
        )
        self.ws_disconnected_seconds = Gauge(
            "certwatch_ws_disconnected_seconds",
            "Total time not connected to the feed since start.",
            registry=r,
        )
        self.feed_queue_depth = Gauge(
            "certwatch_feed_queue_depth",
            "Messages received but not yet processed.",
            registry=r,
        )
        self.alerts_held = Gauge(
            "certwatch_alerts_held",
            "Unrecognised matched certificates inside SUSPICIOUS_GRACE_S.",
            registry=r,
        )
        self.alerts_resolved = Counter(
            "certwatch_alerts_resolved",
            "Suspicious alerts later resolved by a registration (follow-up events).",
            registry=r,
        )
        self.known_keys = Gauge(
            "certwatch_known_keys", "Public keys registered in advance.", registry=r
        )
        self.outbox_pending = Gauge(
            "certwatch_outbox_pending", "Alerts waiting for webhook delivery.", registry=r
        )
        self.outbox_failed = Gauge(
            "certwatch_outbox_failed",
            "Alerts whose delivery gave up after the retry period.",
            registry=r,
        )
        self.outbox_oldest_pending_age = Gauge(
            "certwatch_outbox_oldest_pending_age_seconds",
            "Age of the oldest alert waiting for delivery (0 when none).",
            registry=r,
        )
        self.webhook_retry_after_ignored = Counter(
            "certwatch_webhook_retry_after_ignored",
            "Retry-After headers (on 429 and 503) that were neither delay-seconds nor a date.",
            registry=r,
        )
        for reason in SKIP_REASONS:
            self.ct_skipped.labels(reason)
        for reason in FeedConnectError.REASONS:
            self.ws_connect_failures.labels(reason)
        for severity in Severity:
            self.alerts.labels(severity)
        for result in RESULTS:
            self.webhook.labels(result)

    def count_messages(
        self,
        messages: Callable[[], Mapping[str, int]],
        coerced: Callable[[], Mapping[str, int]],
    ) -> None:
        """Serve ``certwatch_ct_messages_total`` and ``certwatch_ct_coerced_fields_total``
        from counts kept as plain integers.

        The pipeline counts every frame; a prometheus Counter takes a lock per increment,
        which costs more than the counting is worth at 20,000 frames a second.
        """
        self._message_counts = messages
        self._coerced_counts = coerced

    def serve_coverage(self, read: Callable[[], Mapping[str, LogSample]]) -> None:
        """Serve the per-log coverage metrics from ``read`` (the coverage state)."""
        self._coverage = read

    def watch_store(self, usage: Callable[[], _PoolUsage]) -> None:
        """Serve ``certwatch_db_connections`` from the store's usage at every scrape."""

        def reader(state: str) -> Callable[[], float]:
            return lambda: float(getattr(usage(), state))

        for state in ("size", "in_use", "waiting"):
            self.db_connections.labels(state).set_function(reader(state))

    def watch_views(self, index: Sized, inventory: _Inventory) -> None:
        """Serve the watch entries, inventory certificates and keys from the views."""
        self.watch_entries.set_function(lambda: len(index))
        self.known_fingerprints.set_function(lambda: len(inventory))
        self.known_keys.set_function(lambda: inventory.key_count)

    def count_log_error(self, log: str, error: CTLogError) -> None:
        self.ct_log_errors.labels(log, error.reason).inc()

    @staticmethod
    def mirror(gauge: Gauge, read: Callable[[], float]) -> None:
        """Make ``gauge`` read its value from ``read`` at every scrape."""
        gauge.set_function(read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
