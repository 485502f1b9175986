"""Back-fill: every entry certstream did not deliver, read from the CT log itself.

:class:`~certwatch.pipeline.coverage.Coverage` keeps each log's gaps; this task fills them.
Each log with gaps gets one worker, which fills its oldest gap first: it reads the missing
entries in order (``get-entries``, or data tiles), a few requests ahead of the processing,
and runs every entry through the same match, recognise, decide and store path as a live
message. A gap's entries count as processed (and the log's position moves on) only after
they have been handled, so a crash or a restart reads them again rather than losing them.

Logs share :data:`LOGS_AT_ONCE` turns to read (which bounds the memory a long downtime's
gaps take), and a log holds one only while it reads: a log that fails waits out its
backoff (its ``Retry-After`` honoured) without one, and a log that has read for
:data:`TURN_S` gives its turn up when others wait. So a slow, failing or hostile log never
delays another log's back-fill. A log that keeps failing for ``CT_BACKFILL_RETRY_PERIOD_S``
has the rest of its gap given up and counted as unrecovered.

A matched entry is proven included in a tree head signed by the log's listed key before it
is handed on (``log_verified``); a failed proof is counted and the alert still goes out,
unverified. Every tree head read is a chance to check the log: one signed by its key must
be consistent with the last one (RFC 6962 consistency proofs, computed from hash tiles on
a tiled log), and a log that forks or shrinks is counted, logged with both heads and its
evidence stored. A head certwatch trusts also raises the log's ceiling in coverage, so the
indexes certstream claims are checked against what the log really holds; when coverage
asks for a newer head (live indexes reached it), one is read, at most every
``ct_head_refresh_s``.

Back-fill yields to the live feed: it processes a few dozen entries at a time, and waits
while live frames are waiting, so live alerts keep their latency while a big gap fills.

It also answers lookups: a matched certificate whose message has no DER (tiled precerts
from certstream-server-go, the lite stream) has its entry read from the log at once, so
that recognition by registered key and by TBS hash works for it too. Each log has its own
lookup queue and workers.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import attrs
import trio
import trio.lowlevel

from certwatch.core import ctlog
from certwatch.core.backoff import Backoff
from certwatch.core.coverage import LogCoverage, Range
from certwatch.core.ctlog import EntryType, LogEntry, TreeHead, tree_head_json
from certwatch.core.logentry import entry_names, entry_observation
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.core.names import Match, WatchIndex
from certwatch.errors import CTLogError, InvalidCertificate, StoreError
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.pipeline.matching import OnMatch
from certwatch.settings import Timing
from certwatch.sources.ctlog import GET_ENTRIES_BATCH, CTLogReader, VerifiedHead
from certwatch.store import LogEvidence

__all__ = ["Backfill"]

log = logging.getLogger("certwatch.backfill")

T = TypeVar("T")

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
LOOKUP_QUEUE = 64
"""Lookups waiting per log; one entry asked again while it waits is one lookup."""
LOOKUP_CONCURRENCY = 2
"""Lookups in flight per log (each log has its own: a slow or hostile log delays only its
own lookups)."""
LOOKUP_WITHIN_S = 600.0
"""How long a lookup (one entry, for a certificate without DER) keeps trying."""

RecordEvidence = Callable[[LogEvidence], Awaitable[None]]


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


class _Retrying:
    """A run of failures of one log: how long to wait before the next try (backoff, the
    log's ``Retry-After`` honoured up to the backoff's maximum), until ``period`` has
    passed since the first failure."""

    def __init__(self, timing: Timing, period: float) -> None:
        self._backoff = Backoff(timing.ct_backoff_initial_s, timing.ct_backoff_max_s)
        self._cap = timing.ct_backoff_max_s
        self._period = period
        self._since: float | None = None

    def failed(self, error: CTLogError) -> float | None:
        """The wait before the next try, or ``None`` once the period is over."""
        now = trio.current_time()
        self._since = now if self._since is None else self._since
        if now - self._since >= self._period:
            return None
        delay = self._backoff.next()
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self._cap))
        return delay

    def reset(self) -> None:
        self._since = None
        self._backoff.reset()


def _as_error(e: CTLogError | _NotYet) -> CTLogError:
    return e if isinstance(e, CTLogError) else CTLogError("http", str(e))


def _note(state: LogCoverage | None, error: CTLogError | None) -> None:
    """Keep why the log's last read failed (``None``: it worked), for ``/healthz``."""
    if state is not None:
        state.last_error = "" if error is None else f"{error.reason}: {error}"[:300]


@attrs.define
class _LogLookups:
    """The lookups of one log: a bounded queue, and the entries in it (asked once)."""

    info: LogInfo
    send: trio.MemorySendChannel[int]
    receive: trio.MemoryReceiveChannel[int]
    waiting: set[int] = attrs.Factory(set)


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
        record_evidence: RecordEvidence | None = None,
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
        self._record_evidence = record_evidence
        self._clock = clock
        self._working: set[str] = set()
        self._refreshing: set[str] = set()
        self._at_once = trio.CapacityLimiter(LOGS_AT_ONCE)
        self._heads: dict[str, VerifiedHead] = {}
        self._batch: dict[str, int] = {}
        self._lookups: dict[str, _LogLookups] = {}
        self._new_lookup_logs, self._lookup_logs = trio.open_memory_channel[_LogLookups](
            float("inf")  # one item per log ever looked up in: bounded by the logs followed
        )
        self.lookups = 0
        self.lookups_dropped = 0

    # --- supervision ------------------------------------------------------------------------

    async def fill(self, catch_up: list[str]) -> NoReturn:
        """Fill gaps as they appear, and read the tree heads coverage asks for (the leader's
        duty); first read the tree head of each log in ``catch_up`` (logs with a saved
        position: what they logged while no certwatch was following them)."""
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
            await self._attempt(info, state, lambda: self._read_head(info, extend=key))
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
                    await self._read_head(info)
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
        retrying = _Retrying(self._timing, self._retry_period_s)
        try:
            while (gap := state.next_gap()) is not None:
                async with self._at_once:
                    try:
                        await self._fill(info, state, gap)
                    except (CTLogError, _NotYet) as e:
                        error, not_yet = _as_error(e), isinstance(e, _NotYet)
                    else:
                        retrying.reset()
                        _note(state, None)
                        continue
                _note(state, error)
                delay = retrying.failed(error)
                if delay is None:
                    remaining = state.next_gap() or gap
                    self._coverage.give_up(state.key, remaining, f"{error.reason}: {error}")
                    retrying.reset()
                    continue
                level = logging.INFO if not_yet else logging.WARNING
                log.log(level, "%s: %s; trying again in %.1f s", info.read_url, error, delay)
                await trio.sleep(delay)
        finally:
            self._working.discard(state.key)

    # --- tree heads -------------------------------------------------------------------------

    async def _read_head(self, info: LogInfo, *, extend: str | None = None) -> VerifiedHead:
        """The log's latest tree head. One it signed with its listed key is checked for
        consistency with the last one; one certwatch trusts (that, or the word of a log
        without a key) raises the log's ceiling in coverage."""
        head = await self._reader.tree_head(info)
        self._heads[info.read_url] = head
        if head.verified:
            await self._check_consistency(info, head.head)
        if head.verified or info.key is None:
            self._coverage.trusted_head(info, head.head, verified=head.verified, extend=extend)
        return head

    async def _check_consistency(self, info: LogInfo, new: TreeHead) -> None:
        """Whether the log's signed tree heads agree: the smaller tree a prefix of the
        larger (RFC 6962 consistency), or the same root for the same size. A log that
        forks or shrinks is counted (``inconsistent``), logged with both heads, and its
        evidence kept; certwatch goes on."""
        old = self._coverage.reference_head(info)
        if old is None or old == new:
            return
        first, second = (old, new) if old.size <= new.size else (new, old)
        proof: list[bytes] = []
        # A smaller tree signed later than a larger one: the log shrank. (A smaller tree
        # signed earlier is a stale head, which is fine if it is a prefix.)
        shrank = new.size < old.size and new.timestamp_ms > old.timestamp_ms
        if not shrank:
            try:
                if first.size != second.size:
                    proof = await self._reader.consistency(info, first.size, second.size)
            except CTLogError as e:
                log.warning(
                    "%s: consistency of its tree heads %d and %d not checked: %s",
                    info.read_url, first.size, second.size, e,
                )  # fmt: skip
                return
            if ctlog.verify_consistency(
                first.size, second.size, first.root_hash, second.root_hash, proof
            ):
                return
        self._reader.fail(info, CTLogError("inconsistent", "two signed tree heads disagree"))
        detail: dict[str, Any] = {
            "earlier": tree_head_json(old),
            "later": tree_head_json(new),
            "proof": [base64.b64encode(h).decode() for h in proof],
        }
        if shrank:
            why = "the later head is of a smaller tree"
        elif first.size == second.size:
            why = "the same size with another root"
        else:
            why = "no consistency proof leads from one to the other"
        detail["problem"] = why
        log.error(
            "%s: INCONSISTENT tree heads, both signed by the log: %s then %s (%s): the log "
            "forked or shrank; evidence kept",
            info.read_url, detail["earlier"], detail["later"], why,
        )  # fmt: skip
        if self._record_evidence is not None:
            evidence = LogEvidence(info.read_url, "inconsistent", detail, self._clock())
            try:
                await self._record_evidence(evidence)
            except StoreError as e:
                log.error("%s: evidence not stored (it is in this log): %s", info.read_url, e)

    async def _head_covering(self, info: LogInfo, index: int) -> VerifiedHead:
        """A tree head whose tree holds ``index`` (the log may not have published one yet)."""
        head = self._heads.get(info.read_url)
        if head is None or head.head.size <= index:
            head = await self._read_head(info)
        if head.head.size <= index:
            raise _NotYet(f"the log's latest tree has {head.head.size} entries")
        return head

    # --- filling a gap ----------------------------------------------------------------------

    async def _fill(self, info: LogInfo, state: LogCoverage, gap: Range) -> None:
        """Read and process ``gap`` in order, until it is done or the turn is over (others
        wait and :data:`TURN_S` has passed). A failed read raises its error; what was
        processed before it counts."""
        first, last = gap
        log.debug("%s: back-filling entries %d-%d", info.read_url, first, last)
        if info.kind is LogKind.TILED:
            head = await self._head_covering(info, last)
            ranges = self._tile_ranges(first, last)
            read = self._tile_reader(info, head.head.size)
        else:
            ranges = self._batch_ranges(info, first, last)
            read = self._entries_reader(info)
        turn_ends = trio.current_time() + TURN_S

        async def consume(entries: list[LogEntry]) -> bool:
            await self._process(info, state, entries, gap)
            waiting = self._at_once.statistics().tasks_waiting
            return not (waiting and trio.current_time() >= turn_ends)

        await self._in_order(ranges, read, consume)

    def _batch_ranges(self, info: LogInfo, first: int, last: int) -> Iterator[Range]:
        start = first
        while start <= last:
            # The log's cap per answer, once learned, sizes the next requests.
            end = min(last, start + self._batch.get(info.read_url, GET_ENTRIES_BATCH) - 1)
            yield start, end
            start = end + 1

    def _entries_reader(self, info: LogInfo) -> Callable[[Range], Awaitable[list[LogEntry]]]:
        async def read(r: Range) -> list[LogEntry]:
            start, end = r
            entries: list[LogEntry] = []
            while start <= end:
                got = await self._reader.get_entries(info, start, end)
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
        self, info: LogInfo, size: int
    ) -> Callable[[Range], Awaitable[list[LogEntry]]]:
        async def read(r: Range) -> list[LogEntry]:
            start, end = r
            n = start // ctlog.TILE_WIDTH
            entries = await self._reader.data_tile(info, n, ctlog.tile_width(0, n, size))
            return [e for e in entries if start <= e.index <= end]

        return read

    async def _in_order(
        self,
        ranges: Iterator[Range],
        read: Callable[[Range], Awaitable[list[LogEntry]]],
        consume: Callable[[list[LogEntry]], Awaitable[bool]],
    ) -> None:
        """Read ``ranges`` a few ahead, and consume the answers in order until ``consume``
        says stop. A read that fails cancels those ahead of it and raises its
        :class:`CTLogError`."""
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
                    if not await consume(entries):
                        nursery.cancel_scope.cancel()
                        break
        if failed is not None:
            raise failed

    async def _process(
        self, info: LogInfo, state: LogCoverage, entries: list[LogEntry], gap: Range
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
                head = await self._read_head(info)
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
        """Read entry ``index`` of ``info`` soon and hand it on (it matched already).

        Each log has its own queue and workers, so a log that is slow, failing or hostile
        delays only its own lookups; an entry already waiting is not asked twice."""
        lookups = self._lookups.get(info.read_url)
        if lookups is None:
            send, receive = trio.open_memory_channel[int](LOOKUP_QUEUE)
            lookups = self._lookups[info.read_url] = _LogLookups(info, send, receive)
            self._new_lookup_logs.send_nowait(lookups)
        if index in lookups.waiting:
            return
        try:
            lookups.send.send_nowait(index)
        except trio.WouldBlock:
            self.lookups_dropped += 1
            log.warning("%s: too many lookups waiting: entry %d not read", info.read_url, index)
            return
        lookups.waiting.add(index)

    async def serve_lookups(self) -> NoReturn:
        """Read the entries of matched certificates without DER (every replica)."""
        async with trio.open_nursery() as nursery:
            async for lookups in self._lookup_logs:
                for _ in range(LOOKUP_CONCURRENCY):
                    nursery.start_soon(self._lookup_worker, lookups)
        raise AssertionError("the lookup channel closed")  # pragma: no cover

    async def _lookup_worker(self, lookups: _LogLookups) -> None:
        async for index in lookups.receive:
            try:
                await self._lookup(lookups.info, index)
            finally:
                lookups.waiting.discard(index)

    async def _lookup(self, info: LogInfo, index: int) -> None:
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
        retrying = _Retrying(self._timing, self._retry_period_s if within is None else within)
        while True:
            try:
                result = await operation()
            except (CTLogError, _NotYet) as e:
                error = _as_error(e)
                _note(state, error)
                delay = retrying.failed(error)
                if delay is None:
                    raise error from None
                level = logging.INFO if isinstance(e, _NotYet) else logging.WARNING
                log.log(level, "%s: %s; trying again in %.1f s", info.read_url, error, delay)
                await trio.sleep(delay)
            else:
                _note(state, None)
                return result
