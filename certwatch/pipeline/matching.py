"""The processing task: frames from the feed channel to matches for the alerter.

Per frame: peek (decode only names, log and index), count, account coverage, match. Only a
match decodes the whole message and awaits the alerter (which stores the alert).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from certwatch.core.messages import (
    COERCIBLE_FIELDS,
    UNKNOWN_TYPE,
    FeedItem,
    NewConnection,
    Other,
    peek,
    read_update,
)
from certwatch.core.names import Match, WatchIndex
from certwatch.core.observation import Observation
from certwatch.errors import MalformedMessage
from certwatch.metrics import MESSAGE_TYPES, Metrics

__all__ = ["MAX_TRACKED_LOGS", "Coverage", "OnMatch", "Pipeline"]

log = logging.getLogger("certwatch.pipeline")

MAX_TRACKED_LOGS = 512
"""Bound on the logs followed for gaps and on the ``log`` label: there are a few dozen CT
logs; beyond this a hostile feed's logs are not followed and their gaps count as "other"."""
MAX_LOG_URL = 256
"""A log URL longer than this is not followed (real ones are under 100 characters)."""
BATCH = 256
"""Frames processed per wake-up of the pipeline task at most."""
COALESCE_S = 0.002
"""Pause after the buffer runs dry (bounds the added latency; far below the 50 ms target)."""


class Coverage:
    """Entries the feed skipped, from ``cert_index`` jumps per log within one connection.

    certstream-server-go reads each log in order, so within a connection the index of a log
    rises by exactly one per entry; a jump of ``n`` means ``n - 1`` entries were lost
    (server-side overflow or parse failures). A new connection starts afresh: what was
    missed while disconnected is counted as disconnected time, not here.

    Memory is bounded: at most :data:`MAX_TRACKED_LOGS` logs are followed, none with a URL
    over :data:`MAX_LOG_URL` characters; messages from any other log are counted as
    ``untracked``. Each log's ``certwatch_ct_missed_entries_total`` series exists from its
    first message, at 0, so that ``increase()`` sees its first gap.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._last: dict[str, int] = {}
        self._labels: dict[str, str] = {}
        self.missed = 0
        self.untracked = 0

    def reset(self) -> None:
        self._last.clear()

    def observe(self, log_url: str, index: int | None) -> None:
        if index is None:
            return
        last = self._last.get(log_url)
        if last is None:
            self._start(log_url, index)
            return
        if index <= last:
            return  # a repeat or an out-of-order entry: nothing was skipped
        gap = index - last - 1
        if gap:
            self.missed += gap
            self._metrics.ct_missed_entries.labels(self._labels[log_url]).inc(gap)
        self._last[log_url] = index

    def _start(self, log_url: str, index: int) -> None:
        """The first message of a log in this connection."""
        if len(log_url) > MAX_LOG_URL or len(self._last) >= MAX_TRACKED_LOGS:
            self.untracked += 1
            self._metrics.ct_untracked.inc()
            return
        if log_url not in self._labels:
            label = log_url if len(self._labels) < MAX_TRACKED_LOGS else "other"
            self._labels[log_url] = label
            self._metrics.ct_missed_entries.labels(label)  # the series, at 0
        self._last[log_url] = index


OnMatch = Callable[[Observation, Match], Awaitable[None]]


class Pipeline:
    """Consumes the feed channel; hands matches on (to the alerter)."""

    def __init__(
        self,
        index: WatchIndex,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._metrics = metrics
        self._clock = clock
        self.coverage = Coverage(metrics)
        self.last_event_at: float | None = None
        self.processed = 0
        # Plain integers on the hot path; the metric reads them at scrape time.
        self.updates = 0
        self.by_type = dict.fromkeys(MESSAGE_TYPES, 0)
        self.coerced = dict.fromkeys(COERCIBLE_FIELDS, 0)
        """Fields of the wrong type, converted or left out (``certwatch_ct_coerced_fields``)."""
        metrics.count_messages(self.message_counts, lambda: self.coerced)
        metrics.mirror(metrics.last_ct_event, lambda: self.last_event_at or 0.0)

    def message_counts(self) -> dict[str, int]:
        """Messages received, by type (``certwatch_ct_messages_total``)."""
        return {**self.by_type, "certificate_update": self.updates}

    async def run(
        self, receive: trio.MemoryReceiveChannel[FeedItem], on_match: OnMatch
    ) -> NoReturn:
        metrics = self._metrics
        metrics.mirror(metrics.feed_queue_depth, lambda: receive.statistics().current_buffer_used)
        process = self.process
        while True:
            # Wait for one frame, then take what else is already buffered without a trip
            # through the scheduler for each (up to BATCH: the loop must yield now and then).
            # When the buffer ran dry, pause briefly so frames arrive in batches: waking up
            # once per frame would cost about as much as processing it.
            item = await receive.receive()
            for taken in range(BATCH):
                if taken:
                    try:
                        item = receive.receive_nowait()
                    except trio.WouldBlock:
                        await trio.sleep(COALESCE_S)
                        break
                if isinstance(item, NewConnection):
                    self.coverage.reset()
                    continue
                hit = process(item)
                if hit is not None:
                    await on_match(*hit)

    def process(self, raw: str | bytes) -> tuple[Observation, Match] | None:
        """Count, account and match one frame; the details of a match, else ``None``."""
        self.processed += 1
        try:
            message = peek(raw, self._coerced)
        except MalformedMessage as e:
            self._skip(e)
            return None
        if isinstance(message, Other):
            self.by_type[message.message_type] += 1
            return None
        self.updates += 1
        self.last_event_at = self._clock()
        self.coverage.observe(message.source.url, message.cert_index)
        match = self._index.match(message.leaf_cert.all_domains)
        if match is None:
            return None
        try:
            details = read_update(raw, self._coerced)
        except MalformedMessage as e:
            log.warning("a matching certificate_update could not be read: %s", e)
            self._skip(e, counted=True)
            return None
        return details, match

    def _coerced(self, field: str) -> None:
        self.coerced[field] += 1

    def _skip(self, error: MalformedMessage, *, counted: bool = False) -> None:
        """Count a skipped message (``counted``: already counted under its type)."""
        if not counted:
            self.by_type["unknown" if error.reason == UNKNOWN_TYPE else "malformed"] += 1
        self._metrics.ct_skipped.labels(error.reason).inc()
        log.debug("skipped a feed message: %s", error)
