"""Back-fill: every entry certstream did not deliver, read from the CT log itself.

:class:`~certwatch.pipeline.coverage.Coverage` keeps each log's gaps; this task fills them.
Each log with gaps gets one worker, which fills its oldest gap first: it reads the missing
entries in order (``get-entries``, or data tiles), a few requests ahead of the processing,
and runs every entry through the same match, recognise, decide and store path as a live
message. A gap's entries count as processed (and the log's position moves on) only after
they have been handled, so a crash or a restart reads them again rather than losing them.

A matched entry is proven included in a tree head signed by the log's listed key before it
is handed on (``log_verified``); a failed proof is counted and the alert still goes out,
unverified. A log that keeps failing is retried with backoff (its ``Retry-After``
honoured) for ``CT_BACKFILL_RETRY_PERIOD_S``, then the rest of the gap is given up and
counted as unrecovered.

Back-fill yields to the live feed: it processes a few dozen entries at a time, and waits
while live frames are waiting, so live alerts keep their latency while a big gap fills.

It also answers lookups: a matched certificate whose message has no DER (tiled precerts
from certstream-server-go, the lite stream) has its entry read from the log at once, so
that recognition by registered key and by TBS hash works for it too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

import trio
import trio.lowlevel

from certwatch.core import ctlog
from certwatch.core.backoff import Backoff
from certwatch.core.coverage import LogCoverage, Range
from certwatch.core.ctlog import EntryType, LogEntry
from certwatch.core.logentry import entry_names, entry_observation
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.core.names import Match, WatchIndex
from certwatch.errors import CTLogError, InvalidCertificate
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.pipeline.matching import OnMatch
from certwatch.settings import Timing
from certwatch.sources.ctlog import GET_ENTRIES_BATCH, CTLogReader, VerifiedHead

__all__ = ["Backfill"]

log = logging.getLogger("certwatch.backfill")

T = TypeVar("T")

PREFETCH = 2
"""Reads of one log queued ahead of the one being processed."""
LOGS_AT_ONCE = 4
"""Logs back-filled at the same time; the others wait their turn. After a long downtime
every log has a gap: this bounds the memory held (a few reads of about 0.5 MB per log)."""
YIELD_EVERY = 32
"""Entries processed between two looks at the live feed."""
LIVE_FIRST_MAX_S = 0.05
"""The longest back-fill waits, each time, for the live feed's backlog to clear."""
LOOKUP_QUEUE = 256
LOOKUP_CONCURRENCY = 8
LOOKUP_WITHIN_S = 600.0
"""How long a lookup (one entry, for a certificate without DER) keeps trying."""


class _NotYet(Exception):
    """The log has not published a tree that holds the entry yet (retried, not counted)."""


class _Slot:
    """One read in flight, its result awaited in order."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._entries: list[LogEntry] = []
        self._error: CTLogError | None = None

    async def run(self, read: Callable[[], Awaitable[list[LogEntry]]]) -> None:
        try:
            self._entries = await read()
        except CTLogError as e:
            self._error = e
        finally:
            self._done.set()

    async def entries(self) -> list[LogEntry]:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._entries


class Backfill:
    """Fills coverage gaps from the logs (see the module docstring)."""

    def __init__(
        self,
        reader: CTLogReader,
        coverage: Coverage,
        index: WatchIndex,
        on_match: OnMatch,
        metrics: Metrics,
        *,
        timing: Timing,
        retry_period_s: float,
        live_backlog: Callable[[], int] = lambda: 0,
        live_drained: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float],
    ) -> None:
        self._reader = reader
        self._coverage = coverage
        self._index = index
        self._on_match = on_match
        self._metrics = metrics
        self._timing = timing
        self._retry_period_s = retry_period_s
        self._live_backlog = live_backlog
        self._live_drained = live_drained
        self._clock = clock
        self._working: set[str] = set()
        self._at_once = trio.CapacityLimiter(LOGS_AT_ONCE)
        self._heads: dict[str, VerifiedHead] = {}
        self._batch: dict[str, int] = {}
        self._lookups_send, self._lookups_receive = trio.open_memory_channel[tuple[LogInfo, int]](
            LOOKUP_QUEUE
        )
        self.lookups = 0
        self.lookups_dropped = 0

    # --- supervision ------------------------------------------------------------------------

    async def fill(self, catch_up: list[str]) -> NoReturn:
        """Fill gaps as they appear (the leader's duty); first read the tree size of each log
        in ``catch_up`` (logs with a saved position: what they logged while no certwatch
        was following them)."""
        async with trio.open_nursery() as nursery:
            for key in catch_up:
                nursery.start_soon(self._catch_up, key)
            while True:
                changed = self._coverage.changed
                for _, state in self._coverage:
                    if state.gaps and state.key not in self._working:
                        self._working.add(state.key)
                        nursery.start_soon(self._work, state)
                await changed.wait()

    async def _catch_up(self, key: str) -> None:
        info = self._coverage.info(key)
        state = self._coverage.state(key)
        try:
            head = await self._attempt(info, state, lambda: self._reader.tree_head(info))
        except CTLogError as e:
            log.error(
                "%s: cannot read its tree size (%s): what it logged while certwatch was "
                "stopped is only back-filled from certstream's next message of it",
                info.read_url, e,
            )  # fmt: skip
            return
        self._heads[key] = head
        self._coverage.extend_to(key, head.head.size)

    async def _work(self, state: LogCoverage) -> None:
        """Fill one log's gaps, oldest first, until there are none."""
        try:
            async with self._at_once:
                while (gap := state.next_gap()) is not None:
                    await self._fill(state, gap)
        finally:
            self._working.discard(state.key)

    # --- filling a gap ----------------------------------------------------------------------

    async def _fill(self, state: LogCoverage, gap: Range) -> None:
        info = self._coverage.info(state.key)
        first, last = gap
        progress = [first]  # the first index not processed yet
        log.info("%s: back-filling entries %d-%d", info.read_url, first, last)
        try:
            if info.kind is LogKind.TILED:
                head = await self._attempt(info, state, lambda: self._head_covering(info, last))
                ranges = self._tile_ranges(first, last)
                read = self._tile_reader(info, state, head.head.size)
            else:
                ranges = self._batch_ranges(info, first, last)
                read = self._entries_reader(info, state)
            await self._in_order(ranges, read, lambda entries: self._process(
                info, state, entries, gap, progress))  # fmt: skip
        except CTLogError as e:
            self._coverage.give_up(state.key, (progress[0], last), f"{e.reason}: {e}")

    def _batch_ranges(self, info: LogInfo, first: int, last: int) -> Iterator[Range]:
        start = first
        while start <= last:
            # The log's cap per answer, once learned, sizes the next requests.
            end = min(last, start + self._batch.get(info.read_url, GET_ENTRIES_BATCH) - 1)
            yield start, end
            start = end + 1

    def _entries_reader(
        self, info: LogInfo, state: LogCoverage
    ) -> Callable[[Range], Awaitable[list[LogEntry]]]:
        async def read(r: Range) -> list[LogEntry]:
            start, end = r
            entries: list[LogEntry] = []
            while start <= end:

                async def get(start: int = start) -> list[LogEntry]:
                    return await self._reader.get_entries(info, start, end)

                got = await self._attempt(info, state, get)
                if len(got) < end - start + 1:
                    self._batch[info.read_url] = len(got)
                entries.extend(got)
                start += len(got)
            return entries

        return read

    @staticmethod
    def _tile_ranges(first: int, last: int) -> Iterator[Range]:
        width = ctlog.TILE_WIDTH
        for n in range(first // width, last // width + 1):
            yield max(first, n * width), min(last, n * width + width - 1)

    def _tile_reader(
        self, info: LogInfo, state: LogCoverage, size: int
    ) -> Callable[[Range], Awaitable[list[LogEntry]]]:
        async def read(r: Range) -> list[LogEntry]:
            start, end = r
            n = start // ctlog.TILE_WIDTH
            width = ctlog.tile_width(0, n, size)
            entries = await self._attempt(
                info, state, lambda: self._reader.data_tile(info, n, width)
            )
            return [e for e in entries if start <= e.index <= end]

        return read

    async def _in_order(
        self,
        ranges: Iterator[Range],
        read: Callable[[Range], Awaitable[list[LogEntry]]],
        consume: Callable[[list[LogEntry]], Awaitable[None]],
    ) -> None:
        """Read ``ranges`` a few ahead, and consume the answers in order. A read that
        fails for good cancels those ahead of it and raises its :class:`CTLogError`."""
        send, receive = trio.open_memory_channel[_Slot](PREFETCH - 1)
        failed: CTLogError | None = None
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                async with send:
                    for r in ranges:
                        slot = _Slot()
                        nursery.start_soon(slot.run, lambda r=r: read(r))
                        await send.send(slot)

            nursery.start_soon(produce)
            async with receive:
                async for slot in receive:
                    try:
                        entries = await slot.entries()
                    except CTLogError as e:
                        failed = e
                        nursery.cancel_scope.cancel()
                        break
                    await consume(entries)
        if failed is not None:
            raise failed

    async def _process(
        self,
        info: LogInfo,
        state: LogCoverage,
        entries: list[LogEntry],
        gap: Range,
        progress: list[int],
    ) -> None:
        """Match every entry, hand matches on; then count the range as processed."""
        if not entries:
            return
        index = self._index
        for n, entry in enumerate(entries, 1):
            try:
                names = entry_names(entry)
            except InvalidCertificate as e:
                self._reader.fail(info, CTLogError("unreadable_certificate", str(e)))
                log.warning("%s: entry %d: the certificate's %s", info.read_url, entry.index, e)
                continue
            match = index.match(names)
            if match is not None:
                await self._hand_on(info, entry, names, match)
            if n % YIELD_EVERY == 0:
                await self._yield_to_live()
        done = (max(gap[0], entries[0].index), min(gap[1], entries[-1].index))
        self._coverage.filled(state.key, done)
        progress[0] = done[1] + 1
        await self._yield_to_live()

    async def _yield_to_live(self) -> None:
        """Let the live feed go first: while frames wait for it, wait (a little) for the
        pipeline to take them all."""
        if self._live_drained is not None and self._live_backlog():
            with trio.move_on_after(LIVE_FIRST_MAX_S):
                await self._live_drained()
        else:
            await trio.lowlevel.checkpoint()

    # --- a matched entry --------------------------------------------------------------------

    async def _hand_on(
        self, info: LogInfo, entry: LogEntry, names: tuple[str, ...], match: Match
    ) -> None:
        verified = await self._verify(info, entry)
        first_issuer = await self._first_issuer(info, entry)
        observation = entry_observation(
            entry, names, info, verified=verified, seen=self._clock(), first_issuer=first_issuer
        )
        log.info(
            "%s: entry %d matches %s (%s)",
            info.read_url, entry.index, ",".join(match.sans),
            "verified" if verified else "not verified",
        )  # fmt: skip
        await self._on_match(observation, match)

    async def _verify(self, info: LogInfo, entry: LogEntry) -> bool:
        """Whether ``entry`` is proven in a tree head signed by the log's listed key."""
        if info.key is None:
            return False
        try:
            head = self._heads.get(info.read_url)
            if head is None or head.head.size <= entry.index:
                head = self._heads[info.read_url] = await self._reader.tree_head(info)
            if not head.verified or head.head.size <= entry.index:
                return False
            return await self._reader.prove(info, entry, head.head)
        except CTLogError as e:
            log.warning("%s: entry %d could not be verified: %s", info.read_url, entry.index, e)
            return False

    async def _first_issuer(self, info: LogInfo, entry: LogEntry) -> bytes | None:
        """A precert's first chain certificate (to see a precert signing certificate)."""
        if entry.entry_type is not EntryType.PRECERT:
            return None
        if entry.chain:
            return entry.chain[0]
        if not entry.chain_fingerprints:
            return None
        try:
            return await self._reader.issuer(info, entry.chain_fingerprints[0])
        except CTLogError as e:
            log.warning("%s: entry %d: issuer not read: %s", info.read_url, entry.index, e)
            return None

    # --- lookups: one entry, for a certificate whose message had no DER ---------------------

    def lookup(self, info: LogInfo, index: int) -> None:
        """Read entry ``index`` of ``info`` soon and hand it on (it matched already)."""
        try:
            self._lookups_send.send_nowait((info, index))
        except trio.WouldBlock:
            self.lookups_dropped += 1
            log.warning("%s: too many lookups waiting: entry %d not read", info.read_url, index)

    async def serve_lookups(self) -> NoReturn:
        """Read the entries of matched certificates without DER (every replica)."""
        limiter = trio.CapacityLimiter(LOOKUP_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            async for info, index in self._lookups_receive:
                nursery.start_soon(self._lookup, info, index, limiter)
        raise AssertionError("the lookup channel closed")  # pragma: no cover

    async def _lookup(self, info: LogInfo, index: int, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            self.lookups += 1
            try:
                entry = await self._attempt(
                    info, None, lambda: self._read_one(info, index), within=LOOKUP_WITHIN_S
                )
            except CTLogError as e:
                log.error("%s: entry %d could not be read: %s", info.read_url, index, e)
                return
            try:
                names = entry_names(entry)
            except InvalidCertificate as e:
                self._reader.fail(info, CTLogError("unreadable_certificate", str(e)))
                return
            match = self._index.match(names)
            if match is not None:
                await self._hand_on(info, entry, names, match)

    async def _read_one(self, info: LogInfo, index: int) -> LogEntry:
        if info.kind is LogKind.TILED:
            head = await self._head_covering(info, index)
            n = index // ctlog.TILE_WIDTH
            entries = await self._reader.data_tile(info, n, ctlog.tile_width(0, n, head.head.size))
            return entries[index % ctlog.TILE_WIDTH]
        return (await self._reader.get_entries(info, index, index))[0]

    async def _head_covering(self, info: LogInfo, index: int) -> VerifiedHead:
        """A tree head whose tree holds ``index`` (the log may not have published one yet)."""
        head = self._heads.get(info.read_url)
        if head is None or head.head.size <= index:
            head = self._heads[info.read_url] = await self._reader.tree_head(info)
        if head.head.size <= index:
            raise _NotYet(f"the log's latest tree has {head.head.size} entries")
        return head

    # --- retries ----------------------------------------------------------------------------

    async def _attempt(
        self,
        info: LogInfo,
        state: LogCoverage | None,
        operation: Callable[[], Awaitable[T]],
        *,
        within: float | None = None,
    ) -> T:
        """``operation()``, retried with backoff while it fails, for ``within`` seconds
        (``CT_BACKFILL_RETRY_PERIOD_S``) from the first failure; then its error."""
        period = self._retry_period_s if within is None else within
        backoff = Backoff(self._timing.ct_backoff_initial_s, self._timing.ct_backoff_max_s)
        failing_since: float | None = None
        while True:
            try:
                result = await operation()
            except (CTLogError, _NotYet) as e:
                now = trio.current_time()
                failing_since = now if failing_since is None else failing_since
                error = e if isinstance(e, CTLogError) else CTLogError("http", str(e))
                if state is not None:
                    state.last_error = f"{error.reason}: {error}"[:300]
                if now - failing_since >= period:
                    raise error from None
                delay = backoff.next()
                if error.retry_after is not None:
                    delay = max(delay, min(error.retry_after, self._timing.ct_backoff_max_s))
                level = logging.INFO if isinstance(e, _NotYet) else logging.WARNING
                log.log(level, "%s: %s; trying again in %.1f s", info.read_url, error, delay)
                await trio.sleep(delay)
            else:
                if state is not None:
                    state.last_error = ""
                return result
