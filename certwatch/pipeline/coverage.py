"""Coverage for the service: which log each message belongs to, how far each log has been
processed, the gaps back-fill is to fill, and their persistence.

The state of one log is :class:`~certwatch.core.coverage.LogCoverage` (pure logic); this
module keeps one per log, resolves certstream's ``source.url`` to the log list's entry,
saves positions in batches (never per message), serves the per-log metrics at scrape time,
and wakes back-fill when a gap appears.

Memory and labels are bounded: every log in the list is followed, and at most
:data:`MAX_UNLISTED_LOGS` others (none with a URL over :data:`MAX_LOG_URL` characters);
messages from any further log are counted as ``untracked``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import trio

from certwatch.core.coverage import NO_CHANGE, Change, LogCoverage, Range
from certwatch.core.ctlog import TreeHead
from certwatch.core.loglist import (
    LogInfo,
    LogKind,
    LogList,
    normalise_log_url,
    readable_log_url,
)
from certwatch.errors import CTLogError, StoreError
from certwatch.metrics import CoverageMetrics, LogSample
from certwatch.store import PositionsStore, SavedPosition

__all__ = ["MAX_LOG_URL", "MAX_UNLISTED_LOGS", "Coverage"]

log = logging.getLogger(__name__)

MAX_UNLISTED_LOGS = 128
"""Logs not in the log list that are followed (there are a few dozen CT logs; past this a
hostile feed's logs are not followed, and never read)."""
MAX_LOG_URL = 256
"""A log URL longer than this is not followed (real ones are under 100 characters)."""
_KINDS = frozenset(kind.value for kind in LogKind)
_MAX_ALIASES = 4 * (1000 + MAX_UNLISTED_LOGS)
"""Spellings of ``source.url`` remembered for the hot path."""


def _usable_url(url: str) -> bool:
    """A ``source.url`` that can name a log: printable ASCII without spaces, not too long
    (it becomes a metric label, a log line and a database key)."""
    return 0 < len(url) <= MAX_LOG_URL and url.isascii() and url.isprintable() and " " not in url


class Coverage:
    """Per-log coverage (see the module docstring).

    ``backfill=False``: only what certstream skipped is counted, as without back-fill;
    nothing is saved and no gap is kept.
    """

    def __init__(
        self,
        metrics: CoverageMetrics,
        *,
        backfill: bool = False,
        max_entries: int = 2_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backfill = backfill
        self.max_entries = max_entries
        self._clock = clock
        self._logs: dict[str, LogCoverage] = {}
        self._infos: dict[str, LogInfo] = {}
        self._aliases: dict[str, LogCoverage] = {}
        self._unlisted = 0
        self.log_list = LogList()
        self.untracked = 0
        self.changed = trio.Event()
        """Set (and replaced) whenever a gap appears or a tree head is wanted: back-fill
        waits on it."""
        self.heads_wanted: set[str] = set()
        """Logs whose live indexes reached their trusted tree size (or that have none yet):
        back-fill reads their tree heads."""
        self._metrics = metrics
        metrics.serve(self.samples)

    # --- the logs ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[LogInfo, LogCoverage]]:
        for key, state in self._logs.items():
            yield self._infos[key], state

    def info(self, key: str) -> LogInfo:
        return self._infos[key]

    def state(self, key: str) -> LogCoverage:
        return self._logs[key]

    @property
    def missed(self) -> int:
        return sum(state.missed for state in self._logs.values())

    def label(self, key: str) -> str:
        """The ``log`` label and ``log_url`` of a followed log."""
        return self._infos[key].read_url

    def resolve(self, source_url: str, source_type: str = "") -> LogInfo | None:
        """The log a message names, if it is followed (starts following it if it can)."""
        state = self._state(source_url, source_type)
        return None if state is None else self._infos[state.key]

    def set_log_list(self, log_list: LogList) -> None:
        """A (re)loaded log list: every followed log is looked up again."""
        self.log_list = log_list
        self._unlisted = 0
        for key, state in self._logs.items():
            self._infos[key] = self._describe(key, state.kind)

    def _describe(self, key: str, kind: str) -> LogInfo:
        info = self.log_list.find(key)
        if info is None:
            self._unlisted += 1
            info = LogInfo.unlisted(key, LogKind(kind) if kind else LogKind.RFC6962)
        return info

    def _state(self, source_url: str, source_type: str) -> LogCoverage | None:
        state = self._aliases.get(source_url)
        if state is not None:
            return state
        if not _usable_url(source_url):
            return None
        key = normalise_log_url(source_url)
        state = self._logs.get(key)
        if state is None:
            state = self._follow(key, source_type)
            if state is None:
                return None
        if len(self._aliases) < _MAX_ALIASES:
            self._aliases[source_url] = state
        return state

    def _follow(self, key: str, source_type: str) -> LogCoverage | None:
        listed = self.log_list.find(key)
        if listed is None and (self._unlisted >= MAX_UNLISTED_LOGS or not readable_log_url(key)):
            return None
        kind = listed.kind if listed else (source_type if source_type in _KINDS else "")
        state = LogCoverage(key, kind=kind, max_entries=self.max_entries, track_gaps=self.backfill)
        self._logs[key] = state
        self._infos[key] = self._describe(key, kind)
        return state

    # --- what the pipeline and back-fill report ---------------------------------------------

    def new_connection(self) -> None:
        for state in self._logs.values():
            state.new_connection()

    def observe(self, source_url: str, source_type: str, index: int | None) -> None:
        """certstream delivered entry ``index`` of a log, and it has been processed."""
        if index is None:
            return
        state = self._aliases.get(source_url) or self._state(source_url, source_type)
        if state is None:
            self.untracked += 1
            self._metrics.untracked.inc()
            return
        # The hot path: the next entry of a log, as most are, below its trusted tree size.
        last = state.last_live
        if (
            last is not None
            and index == last + 1
            and index - 1 == state.high
            and index < state.fast_below
        ):
            state.last_live = state.high = index
            state.dirty = True
            return
        change = state.live(index)
        if state.wants_head and state.key not in self.heads_wanted:
            self.heads_wanted.add(state.key)
            self._wake()
        if change is not NO_CHANGE:
            self._report(state, change)

    def _states_of(self, info: LogInfo) -> list[LogCoverage]:
        """The coverage of every ``source.url`` naming this log (usually one)."""
        return [
            state for key, state in self._logs.items() if self._infos[key].read_url == info.read_url
        ]

    def reference_head(self, info: LogInfo) -> TreeHead | None:
        """The newest tree head of this log that verified with its listed key, if any."""
        heads = [state.head for state in self._states_of(info) if state.head is not None]
        return max(heads, key=lambda head: head.size, default=None)

    def trusted_head(
        self, info: LogInfo, head: TreeHead, *, verified: bool, extend: str | None = None
    ) -> None:
        """A tree head that certwatch trusts was read from ``info`` (see
        :meth:`LogCoverage.confirm`): it raises the log's ceiling and cuts back coverage
        claimed beyond it; ``verified`` heads become the reference for the next consistency
        check. With ``extend`` (a log's key at start), whatever the log holds beyond that
        log's position is a gap (the downtime)."""
        for state in self._states_of(info):
            self.heads_wanted.discard(state.key)
            cut = state.confirm(head.size)
            if cut:
                log.warning(
                    "%s: coverage claimed %d entries past what its tree of %d holds "
                    "(an implausible index from the feed, or a saved position): cut back",
                    self.label(state.key), cut, head.size,
                )  # fmt: skip
            if verified and (state.head is None or head.size >= state.head.size):
                state.head = head
                state.dirty = True
        if extend is not None:
            state = self._logs[extend]
            self._report(state, state.extend_to(head.size))

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def _report(self, state: LogCoverage, change: Change) -> None:
        if change.implausible:
            self._metrics.count_log_error(
                self.label(state.key), CTLogError("implausible_index", "")
            )
            if state.implausible == 1 or state.implausible % 1000 == 0:
                log.warning(
                    "%s: an index beyond what the log can hold was refused (%d so far): a "
                    "feed that lies, or a log certwatch has no recent tree head of",
                    self.label(state.key), state.implausible,
                )  # fmt: skip
            return
        if change.gap is not None:
            first, last = change.gap
            log.info(
                "%s: entries %d-%d not seen from certstream (%d): queued for back-fill",
                self.label(state.key), first, last, last - first + 1,
            )  # fmt: skip
            self._wake()
        if change.unrecovered is not None:
            first, last = change.unrecovered
            log.warning(
                "%s: entries %d-%d are beyond the back-fill limit of %d per gap: "
                "%d entries unrecovered",
                self.label(state.key), first, last, self.max_entries, last - first + 1,
            )  # fmt: skip

    def filled(self, key: str, done: Range) -> None:
        self._logs[key].filled(done)

    def give_up(self, key: str, lost: Range, reason: str) -> None:
        state = self._logs[key]
        removed = state.give_up(lost)
        if removed:
            log.error(
                "%s: gave up on entries %d-%d (%d entries unrecovered): %s",
                self.label(key), lost[0], lost[1], removed, reason,
            )  # fmt: skip

    # --- metrics and health -----------------------------------------------------------------

    def samples(self) -> dict[str, LogSample]:
        """Per ``log`` label: missed, back-filled, unrecovered and pending entries. Every
        log of the list has its series from the start, at 0, followed yet or not: a log's
        first gap then shows in ``increase()`` even before Prometheus scraped it once."""
        out: dict[str, LogSample] = dict.fromkeys(
            (info.read_url for info in self.log_list.logs), LogSample()
        )
        for key, state in self._logs.items():
            label = self._infos[key].read_url
            prior = out.get(label, LogSample())
            out[label] = LogSample(
                missed=prior.missed + state.missed,
                backfilled=prior.backfilled + state.backfilled,
                unrecovered=prior.unrecovered + state.unrecovered,
                pending=prior.pending + state.pending,
            )
        return out

    # --- persistence ------------------------------------------------------------------------

    async def adopt(self, store: PositionsStore) -> list[str]:
        """Take in the saved positions and gaps (at start, or on becoming the leader: what
        the previous leader processed counts as processed here too); the logs they name."""
        saved_logs = await store.log_positions()
        for saved in saved_logs:
            gaps: list[Range] = [(a, b) for a, b in saved.gaps]
            state = self._logs.get(saved.log)
            if state is None:
                state = LogCoverage(
                    saved.log,
                    kind=saved.kind,
                    max_entries=self.max_entries,
                    track_gaps=self.backfill,
                )
                self._logs[saved.log] = state
                self._infos[saved.log] = self._describe(saved.log, saved.kind)
            if not state.merge(saved.high, gaps):
                log.warning(
                    "%s: the saved position %d is not one a log can have: not taken in",
                    self.label(saved.log), saved.high,
                )  # fmt: skip
            if saved.head is not None and (state.head is None or saved.head.size > state.head.size):
                state.head = saved.head
        return [saved.log for saved in saved_logs]

    async def save(self, store: PositionsStore) -> int:
        """Save every log whose coverage changed; how many."""
        dirty = [state for state in self._logs.values() if state.dirty and state.high is not None]
        if not dirty:
            return 0
        now = self._clock()
        rows = []
        for state in dirty:
            assert state.high is not None  # (filtered above)
            rows.append(
                SavedPosition(
                    log=state.key,
                    kind=state.kind,
                    position=state.position,
                    high=state.high,
                    gaps=tuple(state.gaps),
                    updated_at=now,
                    head=state.head,
                )
            )
        for state in dirty:
            state.dirty = False
        try:
            await store.save_log_positions(rows)
        except StoreError:
            for state in dirty:
                state.dirty = True
            raise
        return len(rows)

    async def run_saver(self, store: PositionsStore, interval_s: float) -> None:
        """Save changed positions every ``interval_s`` (a batch, not per message), and once
        more when stopped (shutdown, or the leader role lost)."""
        try:
            while True:
                await trio.sleep(interval_s)
                try:
                    await self.save(store)
                    continue
                except StoreError as e:
                    problem = str(e)
                log.error("cannot save CT log positions (will retry): %s", problem)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    saved = await self.save(store)
                except StoreError as e:
                    log.error("CT log positions not saved (back-fill reads from the last "
                              "save): %s", e)  # fmt: skip
                else:
                    if saved:
                        log.info("saved the positions of %d CT logs", saved)
