"""Back-fill: every entry certstream did not deliver, read from the CT log itself.

:class:`~certwatch.pipeline.coverage.Coverage` keeps each log's gaps; this task (the
leader's) fills them. Each log with gaps gets one worker, which fills its oldest gap first:
it reads the missing entries in order (``get-entries``, or data tiles; :mod:`certwatch.core.plan`),
a few requests ahead of the processing (:func:`~certwatch.sources.prefetch.in_order`), and
runs every entry through the same match, recognise, decide and store path as a live message
(:class:`~certwatch.sources.entries.MatchedEntries`). A gap's entries count as processed
(and the log's position moves on) only after they have been handled, so a crash or a
restart reads them again rather than losing them.

Logs share :data:`LOGS_AT_ONCE` turns to read (which bounds the memory a long downtime's
gaps take), and a log holds one only while it reads: a log that fails waits out its
backoff (its ``Retry-After`` honoured) without one, and a log that has read for
:data:`TURN_S` gives its turn up when others wait. So a slow, failing or hostile log never
delays another log's back-fill. A log that keeps failing for ``CT_BACKFILL_RETRY_PERIOD_S``
has the rest of its gap given up and counted as unrecovered.

It also reads the tree heads coverage asks for (:class:`~certwatch.sources.heads.TreeHeads`):
those of logs with a saved position at start (what they logged while certwatch was
stopped), and those whose live indexes reached their trusted tree size, at most every
``ct_head_refresh_s``.

Back-fill yields to the live feed: it processes a few dozen entries at a time, and waits
while live frames are waiting, so live alerts keep their latency while a big gap fills.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio
import trio.lowlevel

from certwatch.core import ctlog
from certwatch.core.coverage import LogCoverage, Range
from certwatch.core.ctlog import LogEntry
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.core.plan import batch_ranges, tile_ranges
from certwatch.errors import CTLogError
from certwatch.pipeline.coverage import Coverage
from certwatch.retry import Retrying
from certwatch.settings import Timing
from certwatch.sources.ctlog import GET_ENTRIES_BATCH, CTLogReader
from certwatch.sources.entries import MatchedEntries
from certwatch.sources.heads import NotYet, TreeHeads, read_retrying
from certwatch.sources.prefetch import in_order

__all__ = ["Backfill"]

log = logging.getLogger(__name__)

PREFETCH = 2
"""Reads of one log queued ahead of the one being processed."""
LOGS_AT_ONCE = 4
"""Logs reading at the same time; the others wait their turn. After a long downtime every
log has a gap: this bounds the memory held (at most PREFETCH + 1 answers per log)."""
TURN_S = 5.0
"""A log that has been reading this long gives its turn up when other logs wait for one."""
YIELD_EVERY = 32
"""Entries processed between two looks at the live feed."""
LIVE_FIRST_MAX_S = 0.05
"""The longest back-fill waits, each time, for the live feed's backlog to clear."""


def _note(state: LogCoverage) -> Callable[[CTLogError | None], None]:
    """Keep why the log's last read failed (``None``: it worked), for ``/healthz``."""

    def note(error: CTLogError | None) -> None:
        state.last_error = "" if error is None else f"{error.reason}: {error}"[:300]

    return note


class Backfill:
    """Fills coverage gaps from the logs (see the module docstring)."""

    def __init__(
        self,
        reader: CTLogReader,
        coverage: Coverage,
        heads: TreeHeads,
        entries: MatchedEntries,
        *,
        timing: Timing,
        retry_period_s: float,
        live_backlog: Callable[[], int] = lambda: 0,
        live_drained: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._reader = reader
        self._coverage = coverage
        self._heads = heads
        self._entries = entries
        self._timing = timing
        self._retry_period_s = retry_period_s
        self._live_backlog = live_backlog
        self._live_drained = live_drained
        self._working: set[str] = set()
        self._refreshing: set[str] = set()
        self._turns = trio.CapacityLimiter(LOGS_AT_ONCE)
        self._batch: dict[str, int] = {}

    def _retry(self, period_s: float) -> Retrying:
        return Retrying(self._timing.ct_backoff_initial_s, self._timing.ct_backoff_max_s, period_s)

    # --- supervision ------------------------------------------------------------------------

    async def fill(self, catch_up: list[str]) -> NoReturn:
        """Fill gaps as they appear, and read the tree heads coverage asks for; first read
        the tree head of each log in ``catch_up`` (logs with a saved position: what they
        logged while no certwatch was following them)."""
        async with trio.open_nursery() as nursery:
            for key in catch_up:
                nursery.start_soon(self._catch_up, key)
            while True:
                changed = self._coverage.changed
                for _, state in self._coverage:
                    key = state.key
                    if state.gaps and key not in self._working:
                        self._working.add(key)
                        nursery.start_soon(self._work, state)
                    if key in self._coverage.heads_wanted and key not in self._refreshing:
                        self._refreshing.add(key)
                        nursery.start_soon(self._refresh_heads, key)
                await changed.wait()

    async def _catch_up(self, key: str) -> None:
        info = self._coverage.info(key)
        state = self._coverage.state(key)
        try:
            await read_retrying(
                lambda: self._heads.read(info, extend=key),
                self._retry(self._retry_period_s),
                info,
                _note(state),
            )
        except CTLogError as e:
            log.error(
                "%s: cannot read its tree size (%s): what it logged while certwatch was "
                "stopped is only back-filled from certstream's next message of it",
                info.read_url, e,
            )  # fmt: skip

    async def _refresh_heads(self, key: str) -> None:
        """Read the log's tree head while coverage wants a newer one, at most once every
        ``ct_head_refresh_s``."""
        try:
            while key in self._coverage.heads_wanted:
                info = self._coverage.info(key)
                try:
                    await self._heads.read(info)
                except CTLogError as e:
                    log.info("%s: tree head not read (trying again later): %s", info.read_url, e)
                await trio.sleep(self._timing.ct_head_refresh_s)
        finally:
            self._refreshing.discard(key)

    async def _work(self, state: LogCoverage) -> None:
        """Fill one log's gaps, oldest first, until there are none. The log holds one of
        the :data:`LOGS_AT_ONCE` turns only while it reads: it waits out its retries
        without one, and gives it up after :data:`TURN_S` when others wait."""
        info = self._coverage.info(state.key)
        retry = self._retry(self._retry_period_s)
        note = _note(state)
        try:
            while (gap := state.next_gap()) is not None:
                async with self._turns:
                    try:
                        await self._fill(info, state, gap)
                    except CTLogError as e:
                        error = e
                    else:
                        retry.reset()
                        note(None)
                        continue
                note(error)
                delay = retry.failed(error.retry_after) if error.transient else None
                if delay is None:
                    remaining = state.next_gap() or gap
                    self._coverage.give_up(state.key, remaining, f"{error.reason}: {error}")
                    retry.reset()
                    continue
                level = logging.INFO if isinstance(error, NotYet) else logging.WARNING
                log.log(level, "%s: %s; trying again in %.1f s", info.read_url, error, delay)
                await trio.sleep(delay)
        finally:
            self._working.discard(state.key)

    # --- filling a gap ----------------------------------------------------------------------

    async def _fill(self, info: LogInfo, state: LogCoverage, gap: Range) -> None:
        """Read and process ``gap`` in order, until it is done or the turn is over (others
        wait and :data:`TURN_S` has passed). A failed read raises its error; what was
        processed before it counts."""
        first, last = gap
        log.debug("%s: back-filling entries %d-%d", info.read_url, first, last)
        turn_ends = trio.current_time() + TURN_S

        async def consume(entries: list[LogEntry]) -> bool:
            await self._process(info, state, entries, gap)
            waiting = self._turns.statistics().tasks_waiting
            return not (waiting and trio.current_time() >= turn_ends)

        if info.kind is LogKind.TILED:
            size = (await self._heads.covering(info, last)).head.size

            async def read_tile(r: Range) -> list[LogEntry]:
                start, end = r
                n = start // ctlog.TILE_WIDTH
                entries = await self._reader.data_tile(info, n, ctlog.tile_width(0, n, size))
                return [e for e in entries if start <= e.index <= end]

            await in_order(tile_ranges(first, last), read_tile, consume, ahead=PREFETCH)
        else:
            ranges = batch_ranges(
                first, last, lambda: self._batch.get(info.read_url, GET_ENTRIES_BATCH)
            )
            await in_order(ranges, lambda r: self._read_entries(info, r), consume, ahead=PREFETCH)

    async def _read_entries(self, info: LogInfo, r: Range) -> list[LogEntry]:
        """``get-entries`` for ``r``, asked again from where each (capped) answer ended."""
        start, end = r
        entries: list[LogEntry] = []
        while start <= end:
            got = await self._reader.get_entries(info, start, end)
            if len(got) < end - start + 1:
                self._batch[info.read_url] = len(got)  # the log's cap sizes later requests
            entries.extend(got)
            start += len(got)
        return entries

    async def _process(
        self, info: LogInfo, state: LogCoverage, entries: list[LogEntry], gap: Range
    ) -> None:
        """Match every entry, hand matches on; then count the range as processed."""
        if not entries:
            return
        for n, entry in enumerate(entries, 1):
            await self._entries.check(info, entry)
            if n % YIELD_EVERY == 0:
                await self._yield_to_live()
        done = (max(gap[0], entries[0].index), min(gap[1], entries[-1].index))
        self._coverage.filled(state.key, done)
        await self._yield_to_live()

    async def _yield_to_live(self) -> None:
        """Let the live feed go first: while frames wait for it, wait (a little) for the
        pipeline to take them all."""
        if self._live_drained is not None and self._live_backlog():
            with trio.move_on_after(LIVE_FIRST_MAX_S):
                await self._live_drained()
        else:
            await trio.lowlevel.checkpoint()
