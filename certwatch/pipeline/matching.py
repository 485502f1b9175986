"""The processing task: frames from the feed channel to matches for the alerter.

Per frame: peek (decode only names, log and index), count, account coverage, match the
watch list, and (when there are brands, and nothing is watched) look for lookalikes. Only
a match or a lookalike decodes the whole message and awaits the alerter (which stores the
alert).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

import attrs
import trio

from certwatch.core.loglist import LogInfo, normalise_log_url
from certwatch.core.lookalikes import BrandIndex, LookalikeHit, match_names
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
from certwatch.metrics import MESSAGE_TYPES, FeedMetrics
from certwatch.pipeline.coverage import Coverage

__all__ = ["Hit", "Matcher", "OnMatch"]

log = logging.getLogger(__name__)

BATCH = 256
"""Frames processed per wake-up of the pipeline task at most."""
COALESCE_S = 0.002
"""Pause after the buffer runs dry (bounds the added latency; far below the 50 ms target)."""


OnMatch = Callable[[Observation, Match, tuple[LookalikeHit, ...]], Awaitable[None]]
"""The alerter: a certificate that matched the watch list, or (a match without entries)
whose names imitate brands."""
OnMissingDer = Callable[[LogInfo, int], None]
"""Called for a matched certificate whose message has no DER: fetch that entry from its
log (back-fill's lookup), so recognition by key and by TBS hash can work on it."""


@attrs.frozen
class Hit:
    """A frame whose certificate matched the watch list, or imitates a brand."""

    observation: Observation
    match: Match
    source_url: str
    source_type: str
    index: int | None
    lookalikes: tuple[LookalikeHit, ...] = ()


class Matcher:
    """Consumes the feed channel; hands matches on (to the alerter)."""

    def __init__(
        self,
        index: WatchIndex,
        metrics: FeedMetrics,
        coverage: Coverage,
        *,
        brands: BrandIndex | None = None,
        on_missing_der: OnMissingDer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._brands = brands if brands is not None else BrandIndex()
        self._metrics = metrics
        self._clock = clock
        self.coverage = coverage
        self._on_missing_der = on_missing_der
        self._drained = trio.Event()
        self.last_event_at: float | None = None
        self.processed = 0
        # Plain integers on the hot path; the metric reads them at scrape time.
        self.updates = 0
        self.by_type = dict.fromkeys(MESSAGE_TYPES, 0)
        self.coerced = dict.fromkeys(COERCIBLE_FIELDS, 0)
        """Fields of the wrong type, converted or left out (``certwatch_ct_coerced_fields``)."""
        metrics.count_messages(self.message_counts, lambda: self.coerced)
        metrics.last_ct_event.set_function(lambda: self.last_event_at or 0.0)

    def message_counts(self) -> dict[str, int]:
        """Messages received, by type (``certwatch_ct_messages_total``)."""
        return {**self.by_type, "certificate_update": self.updates}

    async def drained(self) -> None:
        """Wait until the pipeline next finds the feed channel empty (back-fill waits for
        this while live frames are waiting: live alerts go first)."""
        await self._drained.wait()

    def _now_drained(self) -> None:
        self._drained.set()
        self._drained = trio.Event()

    async def run(
        self, receive: trio.MemoryReceiveChannel[FeedItem], on_match: OnMatch
    ) -> NoReturn:
        metrics = self._metrics
        metrics.queue_depth.set_function(lambda: receive.statistics().current_buffer_used)
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
                        self._now_drained()
                        await trio.sleep(COALESCE_S)
                        break
                if isinstance(item, NewConnection):
                    self.coverage.new_connection()
                    continue
                hit = process(item)
                if hit is not None:
                    await on_match(hit.observation, hit.match, hit.lookalikes)
                    # Only now is the entry processed (its alert stored): its position may
                    # be saved from here on.
                    self.coverage.observe(hit.source_url, hit.source_type, hit.index)

    def process(self, raw: str | bytes) -> Hit | None:
        """Count, account and match one frame; the details of a match, else ``None``.

        The coverage of a match is accounted by the caller once the match is handled.
        """
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
        source = message.source
        match, lookalikes = match_names(self._index, self._brands, message.leaf_cert.all_domains)
        if match is None:
            self.coverage.observe(source.url, source.type, message.cert_index)
            return None
        try:
            observation = read_update(raw, self._coerced)
        except MalformedMessage as e:
            log.warning("a matching certificate_update could not be read: %s", e)
            self._skip(e, counted=True)
            self.coverage.observe(source.url, source.type, message.cert_index)
            return None
        info = self.coverage.resolve(source.url, source.type)
        log_url = info.read_url if info is not None else normalise_log_url(source.url)
        observation = attrs.evolve(
            observation, summary=attrs.evolve(observation.summary, log_url=log_url)
        )
        index = message.cert_index
        if (
            observation.facts.der is None
            and self._on_missing_der is not None
            and info is not None
            and index is not None
        ):
            self._on_missing_der(info, index)
        return Hit(observation, match, source.url, source.type, index, lookalikes)

    def _coerced(self, field: str) -> None:
        self.coerced[field] += 1

    def _skip(self, error: MalformedMessage, *, counted: bool = False) -> None:
        """Count a skipped message (``counted``: already counted under its type)."""
        if not counted:
            self.by_type["unknown" if error.reason == UNKNOWN_TYPE else "malformed"] += 1
        self._metrics.skipped.labels(error.reason).inc()
        log.debug("skipped a feed message: %s", error)
