"""Every Prometheus metric certwatch exports, on one registry per service instance.

Names, types and labels of the contract's metrics are fixed. Labels stay bounded: never a
domain, a fingerprint or a client; the ``log`` label is bounded by the number of CT logs.
Gauges that mirror in-memory state read it at scrape time (``set_function``), so they are
right at every moment without hot-path updates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any, Protocol

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
from certwatch.core.lookalikes import SKIP_REASONS as LOOKALIKE_SKIPS
from certwatch.core.lookalikes import Technique
from certwatch.core.messages import COERCIBLE_FIELDS, KNOWN_TYPES, SKIP_REASONS
from certwatch.core.policy import RuleKind
from certwatch.errors import CTLogError, FeedConnectError

__all__ = [
    "CONTENT_TYPE",
    "AlertMetrics",
    "CaaMetrics",
    "CoverageMetrics",
    "FeedMetrics",
    "LogSample",
    "LookalikeMetrics",
    "Metrics",
    "OutboxMetrics",
    "StoreMetrics",
]

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


class _Brands(Protocol):
    """The views' brand index (``certwatch.core.lookalikes.BrandIndex``)."""

    @property
    def hits(self) -> Mapping[Any, int]: ...
    @property
    def skipped(self) -> Mapping[Any, int]: ...
    def __len__(self) -> int: ...


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


def _counter(
    r: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = (), *values: str
) -> Counter:
    """A counter; each of ``values`` of its one label exported from the start, at 0."""
    counter = Counter(name, doc, list(labels), registry=r)
    for value in values:
        counter.labels(value)
    return counter


def _gauge(r: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, list(labels), registry=r)


class FeedMetrics:
    """The certstream feed and what the matcher made of its frames."""

    def __init__(self, r: CollectorRegistry) -> None:
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
        self.last_ct_event = _gauge(
            r,
            "certwatch_last_ct_event_timestamp_seconds",
            "Wall-clock time of the last certificate_update received from the feed.",
        )
        self.ws_connected = _gauge(
            r, "certwatch_ws_connected", "1 while connected to the feed, else 0."
        )
        self.skipped = _counter(
            r,
            "certwatch_ct_skipped",
            "Feed messages skipped as malformed or of an unknown type, by reason.",
            ("reason",),
            *SKIP_REASONS,
        )
        self.dropped = _counter(
            r,
            "certwatch_ct_dropped",
            "Feed messages dropped by certwatch itself because processing fell behind.",
        )
        self.reconnects = _counter(
            r, "certwatch_ws_reconnects", "Feed connections lost or attempts that failed."
        )
        self.connect_failures = _counter(
            r,
            "certwatch_ws_connect_failures",
            "Feed connection attempts that never became a WebSocket, by reason.",
            ("reason",),
            *FeedConnectError.REASONS,
        )
        self.disconnected_seconds = _gauge(
            r,
            "certwatch_ws_disconnected_seconds",
            "Total time not connected to the feed since start.",
        )
        self.queue_depth = _gauge(
            r, "certwatch_feed_queue_depth", "Messages received but not yet processed."
        )

    def count_messages(
        self,
        messages: Callable[[], Mapping[str, int]],
        coerced: Callable[[], Mapping[str, int]],
    ) -> None:
        """Serve ``certwatch_ct_messages_total`` and ``certwatch_ct_coerced_fields_total``
        from counts kept as plain integers.

        The matcher counts every frame; a prometheus Counter takes a lock per increment,
        which costs more than the counting is worth at 20,000 frames a second.
        """
        self._message_counts = messages
        self._coerced_counts = coerced


class CoverageMetrics:
    """Which CT logs were followed, what was missed, back-filled or given up, and the logs'
    failures."""

    def __init__(self, r: CollectorRegistry) -> None:
        self._coverage: Callable[[], Mapping[str, LogSample]] = dict
        r.register(_CoverageView(lambda: self._coverage()))
        self.untracked = _counter(
            r,
            "certwatch_ct_untracked",
            "Feed messages from logs not followed for gaps (past 128 logs that are not in the "
            "log list, or a URL that cannot name a log).",
        )
        self.log_errors = _counter(
            r,
            "certwatch_ct_log_errors",
            "Failed CT log requests and responses that could not be used, and logs or feeds "
            "caught lying, by log and reason.",
            ("log", "reason"),
        )
        self.log_list_logs = _gauge(
            r,
            "certwatch_ct_log_list_logs",
            "Logs in the loaded CT log list (0: no list loaded; back-fill reads the logs "
            "certstream names, unverified).",
        )
        self.log_list_loaded = _gauge(
            r,
            "certwatch_ct_log_list_loaded_timestamp_seconds",
            "When the CT log list was last loaded (0: never).",
        )

    def serve(self, read: Callable[[], Mapping[str, LogSample]]) -> None:
        """Serve the per-log coverage metrics from ``read`` (the coverage state)."""
        self._coverage = read

    def count_log_error(self, log: str, error: CTLogError) -> None:
        self.log_errors.labels(log, error.reason).inc()


class AlertMetrics:
    """Alerts decided, held and resolved."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.alerts = _counter(
            r, "certwatch_alerts", "Alerts decided, by severity.", ("severity",), *Severity
        )
        self.held = _gauge(
            r,
            "certwatch_alerts_held",
            "Unrecognised matched certificates inside SUSPICIOUS_GRACE_S.",
        )
        self.resolved = _counter(
            r,
            "certwatch_alerts_resolved",
            "Suspicious alerts later resolved by a registration (follow-up events).",
        )
        self.dedupe_cache_size = _gauge(
            r,
            "certwatch_dedupe_cache_size",
            "Issuances remembered in memory to suppress duplicate alerts.",
        )


class LookalikeMetrics:
    """The lookalike watch."""

    def __init__(self, r: CollectorRegistry) -> None:
        self._r = r
        self.brands = _gauge(r, "certwatch_brands", "Brands the lookalike watch protects.")

    def watch(self, brands: _Brands) -> None:
        """Serve the brands, the names that hit (by technique) and the names skipped (by
        reason) from the views' brand index at every scrape."""
        self.brands.set_function(lambda: len(brands))
        self._r.register(_CounterView(
            "certwatch_lookalike_hits",
            "Certificate names that imitate a brand, by technique (one per name that hits).",
            "technique", tuple(t.value for t in Technique), lambda: brands.hits,
        ))  # fmt: skip
        self._r.register(_CounterView(
            "certwatch_lookalike_skipped_names",
            "Names the lookalike watch did not check: unreadable (bad punycode, no hostname), "
            "or past a certificate's bounds (names checked, names looked at closely).",
            "reason", LOOKALIKE_SKIPS, lambda: brands.skipped,
        ))  # fmt: skip


class CaaMetrics:
    """CAA lookups."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.lookups = _counter(
            r,
            "certwatch_caa_lookups",
            "CAA queries, by result (records, empty: none at that name, error: failed).",
            ("result",),
            "records",
            "empty",
            "error",
        )


class OutboxMetrics:
    """Webhook deliveries, and the outbox they come from."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.attempts = _counter(
            r, "certwatch_webhook", "Webhook delivery attempts, by result.", ("result",),
            *RESULTS,
        )  # fmt: skip
        self.duration = Histogram(
            "certwatch_webhook_duration_seconds",
            "Duration of webhook delivery attempts.",
            buckets=_WEBHOOK_BUCKETS,
            registry=r,
        )
        self.retry_after_ignored = _counter(
            r,
            "certwatch_webhook_retry_after_ignored",
            "Retry-After headers (on 429 and 503) that were neither delay-seconds nor a date.",
        )
        self.pending = _gauge(r, "certwatch_outbox_pending", "Alerts waiting for webhook delivery.")
        self.failed = _gauge(
            r, "certwatch_outbox_failed", "Alerts whose delivery gave up after the retry period."
        )
        self.oldest_pending_age = _gauge(
            r,
            "certwatch_outbox_oldest_pending_age_seconds",
            "Age of the oldest alert waiting for delivery (0 when none).",
        )
        self.claims = _counter(
            r,
            "certwatch_outbox_claims",
            "Claims of an alert for delivery by this replica: won, or lost because another "
            "replica held it.",
            ("result",),
            "won",
            "lost",
        )


class StoreMetrics:
    """The database, the leader role, and the in-memory views of its tables."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.connections = _gauge(
            r,
            "certwatch_db_connections",
            "Database connections for transactions: the pool's size (state=size), those in "
            "use, and transactions waiting for one.",
            ("state",),
        )
        self.round_trip = _gauge(
            r,
            "certwatch_db_round_trip_seconds",
            "One round trip to the database, measured at the last scrape (or /healthz).",
        )
        self.leader = _gauge(
            r,
            "certwatch_leader",
            "1 while this replica holds the leader role (runs the hold timer, cleanup and "
            "back-fill); always 1 on SQLite.",
        )
        self.views_lag = Histogram(
            "certwatch_views_sync_lag_seconds",
            "From a change to the watch list, inventory or keys (by the database's clock) to "
            "this replica's views having it: NOTIFY and the change log's latency.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60),
            registry=r,
        )
        self.watch_entries = _gauge(r, "certwatch_watch_entries", "Watched domains.")
        self.known_fingerprints = _gauge(
            r, "certwatch_known_fingerprints", "Certificates in the inventory."
        )
        self.known_keys = _gauge(r, "certwatch_known_keys", "Public keys registered in advance.")
        self.rules = _gauge(r, "certwatch_rules", "Rules, by kind.", ("kind",))

    def watch(self, usage: Callable[[], _PoolUsage]) -> None:
        """Serve ``certwatch_db_connections`` from the store's usage at every scrape."""

        def reader(state: str) -> Callable[[], float]:
            return lambda: float(getattr(usage(), state))

        for state in ("size", "in_use", "waiting"):
            self.connections.labels(state).set_function(reader(state))

    def watch_views(
        self, index: Sized, inventory: _Inventory, rules: Callable[[], Mapping[RuleKind, int]]
    ) -> None:
        """Serve the watch entries, inventory certificates, keys and rules (per kind, every
        kind from the start) from the views."""
        self.watch_entries.set_function(lambda: len(index))
        self.known_fingerprints.set_function(lambda: len(inventory))
        self.known_keys.set_function(lambda: inventory.key_count)

        def count(kind: RuleKind) -> Callable[[], float]:
            return lambda: float(rules()[kind])

        for kind in RuleKind:
            self.rules.labels(kind).set_function(count(kind))


class Metrics:
    """The registry, and its metrics grouped by concern: each part of certwatch is given
    its group (the feed consumer ``feed``, the alerter ``alerts``, the sender ``outbox``,
    coverage and back-fill ``coverage``, the store and views ``store``). One instance per
    running service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.start_time = _gauge(
            r,
            "certwatch_start_time_seconds",
            "Wall-clock time this certwatch started (alert rules use it to tell a young "
            "instance, and as the last event time before the first one).",
        )
        self.feed = FeedMetrics(r)
        self.coverage = CoverageMetrics(r)
        self.alerts = AlertMetrics(r)
        self.caa = CaaMetrics(r)
        self.lookalikes = LookalikeMetrics(r)
        self.outbox = OutboxMetrics(r)
        self.store = StoreMetrics(r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
