"""What certwatch has processed of each CT log, and the gaps left to fill. Pure logic, no I/O.

Per log, everything up to :attr:`LogCoverage.high` was either processed (from certstream
or back-filled from the log) or lies in one of the pending :attr:`LogCoverage.gaps`. The
log's *position* is the highest index up to which everything was processed: below the
first gap, or ``high`` when there is none. Positions survive restarts (the store), so a
start knows where the previous run stopped.

Gaps come from three places:

- an index jump within one connection: certstream skipped entries (they are also counted
  as *missed*, what certstream dropped);
- the first index of a log on a new connection, beyond ``high``: the reconnect window, or
  after a start the downtime;
- the log's tree size at start, beyond ``high``: the downtime of a log certstream has not
  sent yet.

A log seen for the first time starts at its first index: nothing before it is back-filled.
A gap larger than the per-gap limit keeps its oldest entries; the rest is unrecovered.

An index in a message is a claim, not a fact: a hostile or broken feed can say anything.
Each log has a **ceiling**, the size of the newest tree head certwatch trusts (signed by
the log's listed key, or, for a log without one, read from the log itself). An index at
or past ``ceiling + PLAUSIBLE_GROWTH`` is refused (counted, never stored, never a gap);
an index at or past the ceiling asks for a newer tree head (``wants_head``). Before the
first trusted head, the previous index of the connection (else the saved position) is the
reference. A trusted head that finds the coverage beyond what it allows (a claim accepted
before any head was known, or saved by an older certwatch) cuts it back to the tree
(:meth:`LogCoverage.confirm`).
"""

from __future__ import annotations

import attrs

from certwatch.core.ctlog import MAX_TREE_SIZE, TreeHead

__all__ = ["MAX_GAPS", "PLAUSIBLE_GROWTH", "Change", "LogCoverage", "Range"]

PLAUSIBLE_GROWTH = 1 << 20
"""How far past its newest trusted tree head (or the previous index) a log's entries may
be claimed: about an hour of the busiest log. Heads are read again well before that."""
MAX_GAPS = 1000
"""Pending gaps kept per log; past it the two newest are merged (what lies between them is
read again, which is harmless: one issuance still gives one event)."""

Range = tuple[int, int]
"""Log indexes ``(first, last)``, both included."""


def size(r: Range) -> int:
    return r[1] - r[0] + 1


@attrs.frozen
class Change:
    """What one observation did to a log's coverage."""

    missed: int = 0
    """Entries certstream skipped within the connection."""
    gap: Range | None = None
    """A new gap to fill."""
    unrecovered: Range | None = None
    """Entries given up on at once (the gap was over the limit)."""
    implausible: bool = False
    """The index was refused: beyond what the log can hold (see the module docstring)."""


NO_CHANGE = Change()
IMPLAUSIBLE = Change(implausible=True)


def _valid_range(r: Range) -> bool:
    return 0 <= r[0] <= r[1] < MAX_TREE_SIZE


@attrs.define
class LogCoverage:
    """The coverage of one log (see the module docstring).

    ``track_gaps=False`` (back-fill off) only counts what certstream skipped.
    """

    key: str
    """The log as certstream names it (``source.url``, normalised)."""
    kind: str = ""
    high: int | None = None
    gaps: list[Range] = attrs.Factory(list)
    max_entries: int = 2_000_000
    track_gaps: bool = True
    last_live: int | None = None
    """The previous index of this log in the current connection."""
    first: int | None = None
    """The first index this process processed, for a log it started following itself (not
    from a saved position): nothing below it is known to it."""
    missed: int = 0
    backfilled: int = 0
    unrecovered: int = 0
    dirty: bool = False
    """Changed since it was last saved."""
    last_error: str = ""
    """Why back-fill last failed to read this log, if it did (for ``/healthz``)."""
    ceiling: int | None = None
    """The size of the newest tree head certwatch trusts for this log."""
    wants_head: bool = False
    """An index reached the ceiling (or there is none yet): a newer tree head is wanted."""
    implausible: int = 0
    """Indexes refused as beyond what the log can hold."""
    head: TreeHead | None = None
    """The newest tree head of the log that verified with its listed key (saved): the next
    one must be consistent with it."""
    fast_below: int = attrs.field(init=False)
    """Indexes below this need no look at the ceiling (the hot path's test): the ceiling;
    before one is known, none when heads will come (back-fill on), all when they never do."""

    def __attrs_post_init__(self) -> None:
        self.fast_below = MAX_TREE_SIZE if not self.track_gaps else -1

    @property
    def position(self) -> int | None:
        """The highest index up to which everything was processed."""
        if self.gaps:
            return self.gaps[0][0] - 1
        return self.high

    @property
    def pending(self) -> int:
        return sum(size(g) for g in self.gaps)

    def new_connection(self) -> None:
        self.last_live = None

    def plausible(self, index: int) -> bool:
        """Whether ``index`` can be an entry of this log (see the module docstring)."""
        reference = self.ceiling if self.ceiling is not None else self.last_live
        if reference is None and self.track_gaps:
            reference = self.high
        return reference is None or index < reference + PLAUSIBLE_GROWTH

    def live(self, index: int) -> Change:
        """certstream delivered (and certwatch processed) entry ``index``."""
        if self.track_gaps and (self.ceiling is None or index >= self.ceiling):
            self.wants_head = True
        if not self.plausible(index):
            self.implausible += 1
            return IMPLAUSIBLE
        last, high = self.last_live, self.high
        if last is not None and last - index >= PLAUSIBLE_GROWTH:
            last = None  # the previous index was the lie: this connection starts again here
        self.last_live = index if last is None or index > last else last
        if high is None:
            self.high = self.first = index  # a log never seen: tracking starts here
            self.dirty = True
            return NO_CHANGE
        missed = index - last - 1 if last is not None and index > last + 1 else 0
        self.missed += missed
        if index <= high:
            return Change(missed=missed) if missed else NO_CHANGE
        self.high = index
        self.dirty = True
        if index == high + 1:
            return Change(missed=missed) if missed else NO_CHANGE
        return attrs.evolve(self._add_gap((high + 1, index - 1)), missed=missed)

    def confirm(self, tree_size: int) -> int:
        """A trusted tree head of ``tree_size``: the ceiling moves up to it, and coverage
        claimed beyond what it allows is cut back to the tree. How many entries were cut."""
        if self.ceiling is None or tree_size > self.ceiling:
            self.ceiling = self.fast_below = tree_size
        self.wants_head = False
        limit = self.ceiling + PLAUSIBLE_GROWTH
        if self.last_live is not None and self.last_live >= limit:
            self.last_live = None
        if self.high is None or self.high < limit:
            return 0
        cut = self.high - (self.ceiling - 1)
        self.high = self.ceiling - 1 if self.ceiling else None
        self.first = None if self.first is not None and self.first >= self.ceiling else self.first
        self.gaps = [(a, min(b, self.ceiling - 1)) for a, b in self.gaps if a < self.ceiling]
        self.dirty = True
        return cut

    def extend_to(self, tree_size: int) -> Change:
        """The log holds ``tree_size`` entries: whatever lies beyond ``high`` is a gap.

        Not once certstream delivers the log in this connection: its first index made the
        gap already, and what follows it arrives live.
        """
        if self.high is None or self.last_live is not None or tree_size - 1 <= self.high:
            return NO_CHANGE
        gap = (self.high + 1, tree_size - 1)
        self.high = tree_size - 1
        self.dirty = True
        return self._add_gap(gap)

    def _add_gap(self, gap: Range) -> Change:
        if not self.track_gaps:
            return NO_CHANGE
        unrecovered = None
        if size(gap) > self.max_entries:
            unrecovered = (gap[0] + self.max_entries, gap[1])
            gap = (gap[0], gap[0] + self.max_entries - 1)
            self.unrecovered += size(unrecovered)
            if self.max_entries == 0:
                return Change(unrecovered=unrecovered)
        self.gaps.append(gap)
        self.gaps.sort()
        if len(self.gaps) > MAX_GAPS:
            (a, _), (_, d) = self.gaps[-2], self.gaps[-1]
            self.gaps[-2:] = [(a, d)]
        return Change(gap=gap, unrecovered=unrecovered)

    def next_gap(self) -> Range | None:
        """The oldest pending gap."""
        return self.gaps[0] if self.gaps else None

    def filled(self, done: Range) -> int:
        """Entries ``done`` were back-filled; how many of them were pending."""
        removed = self._remove(done)
        self.backfilled += removed
        return removed

    def give_up(self, lost: Range) -> int:
        """Entries ``lost`` cannot be read; how many of them were pending."""
        removed = self._remove(lost)
        self.unrecovered += removed
        return removed

    def merge(self, high: int, gaps: list[Range]) -> bool:
        """Take in what another process saved (the previous leader): an entry processed by
        either is processed. The gaps left are those of both, where they overlap.

        Saved values are checked like any other claim: gaps that are not ranges of entries
        a log can hold are dropped, and a position no log can have is not taken in."""
        if not 0 <= high < MAX_TREE_SIZE:
            return False
        gaps = [g for g in gaps if _valid_range(g) and g[1] <= high]
        if self.high is None:
            self.high, self.gaps = high, sorted(gaps)
            self.dirty = True
            return True
        mine = list(self.gaps)
        if self.first is not None and self.first > 0:
            mine.append((0, self.first - 1))  # before this process followed the log
        mine.append((self.high + 1, high))  # after it: theirs, where theirs goes further
        theirs = [*gaps, (high + 1, self.high)]
        top = max(self.high, high)
        merged = [
            (max(a, c), min(b, d))
            for a, b in sorted(mine)
            for c, d in sorted(theirs)
            if max(a, c) <= min(b, d) and max(a, c) <= top
        ]
        self.high, self.gaps, self.first = top, sorted(merged), None
        self.dirty = True
        return True

    def _remove(self, cut: Range) -> int:
        lo, hi = cut
        kept: list[Range] = []
        removed = 0
        for a, b in self.gaps:
            if b < lo or a > hi:
                kept.append((a, b))
                continue
            removed += min(b, hi) - max(a, lo) + 1
            if a < lo:
                kept.append((a, lo - 1))
            if b > hi:
                kept.append((hi + 1, b))
        if removed:
            self.gaps = kept
            self.dirty = True
        return removed
