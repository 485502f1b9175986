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
"""

from __future__ import annotations

import attrs

__all__ = ["MAX_GAPS", "Change", "LogCoverage", "Range"]

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


NO_CHANGE = Change()


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

    def live(self, index: int) -> Change:
        """certstream delivered (and certwatch processed) entry ``index``."""
        last, high = self.last_live, self.high
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

    def merge(self, high: int, gaps: list[Range]) -> None:
        """Take in what another process saved (the previous leader): an entry processed by
        either is processed. The gaps left are those of both, where they overlap."""
        if self.high is None:
            self.high, self.gaps = high, sorted(gaps)
            self.dirty = True
            return
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
