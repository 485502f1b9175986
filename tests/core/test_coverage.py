"""One log's coverage: positions, gaps, limits (pure logic)."""

from __future__ import annotations

from certwatch.core.coverage import MAX_GAPS, PLAUSIBLE_GROWTH, LogCoverage
from certwatch.core.ctlog import MAX_TREE_SIZE


class TestLogCoverage:
    def test_a_log_never_seen_starts_at_its_first_index(self) -> None:
        """No back-fill reaches before the first position ever recorded."""
        log = LogCoverage("https://log.example")
        change = log.live(5_000)
        assert change.gap is None
        assert (log.position, log.gaps) == (5_000, [])

    def test_a_jump_is_missed_and_a_gap(self) -> None:
        """A jump within a connection is missed and a gap; the position stays below the gap."""
        log = LogCoverage("l")
        log.live(10)
        change = log.live(15)
        assert (change.missed, change.gap) == (4, (11, 14))
        assert (log.position, log.high, log.pending) == (10, 15, 4)
        log.live(16)
        assert log.position == 10

    def test_filled_gaps_move_the_position_on(self) -> None:
        """Filling the oldest gap moves the position to the next gap, then to the head."""
        log = LogCoverage("l")
        for index in (1, 5, 6, 10):
            log.live(index)
        assert log.gaps == [(2, 4), (7, 9)]
        log.filled((2, 3))
        assert (log.position, log.gaps) == (3, [(4, 4), (7, 9)])
        log.filled((4, 4))
        assert log.position == 6
        log.filled((7, 9))
        assert (log.position, log.pending, log.backfilled) == (10, 0, 6)

    def test_a_gap_over_the_limit_keeps_its_oldest_entries(self) -> None:
        """Over max_entries, a gap's oldest entries are kept and the rest is unrecovered at once."""
        log = LogCoverage("l", max_entries=100)
        log.live(0)
        log.new_connection()
        change = log.live(1_001)
        assert change.gap == (1, 100)
        assert change.unrecovered == (101, 1_000)
        assert log.unrecovered == 900
        assert log.gaps == [(1, 100)]

    def test_a_zero_limit_gives_every_gap_up(self) -> None:
        """max_entries 0: every gap is unrecovered, nothing pends."""
        log = LogCoverage("l", max_entries=0)
        log.live(0)
        change = log.live(11)
        assert (change.gap, change.unrecovered, log.pending) == (None, (1, 10), 0)

    def test_given_up_entries_count_as_unrecovered(self) -> None:
        """A range given up leaves the gaps and is counted."""
        log = LogCoverage("l")
        log.live(0)
        log.live(101)
        assert log.give_up((51, 100)) == 50
        assert (log.gaps, log.unrecovered, log.position) == ([(1, 50)], 50, 0)

    def test_the_tree_size_at_start_opens_the_downtime_gap(self) -> None:
        """A restored tree size beyond the head is a gap, unless certstream already sent the log."""
        # Once certstream sends the log, its first index made that gap.
        log = LogCoverage("l", high=100)
        assert log.extend_to(150).gap == (101, 149)
        restored = LogCoverage("l", high=100)
        restored.live(120)
        assert restored.gaps == [(101, 119)]
        assert restored.extend_to(200).gap is None

    def test_gaps_are_bounded(self) -> None:
        """Past MAX_GAPS the newest gaps merge (re-reading what lies between is harmless)."""
        log = LogCoverage("l")
        log.live(0)
        for n in range(MAX_GAPS + 5):
            log.live(2 * n + 2)
        assert len(log.gaps) == MAX_GAPS
        assert log.gaps[0] == (1, 1)
        assert log.gaps[-1][1] == 2 * (MAX_GAPS + 4) + 1

    def test_without_gap_tracking_only_misses_count(self) -> None:
        """track_gaps off (back-fill off): jumps are counted, no gap kept."""
        log = LogCoverage("l", track_gaps=False)
        log.live(1)
        change = log.live(4)
        assert (change.missed, change.gap, log.gaps) == (2, None, [])

    def test_merging_a_saved_state_keeps_only_what_neither_processed(self) -> None:
        """Merging a previous leader's saved coverage keeps the gaps of both."""
        # This replica followed from entry 50; the previous leader saved up to 80 with a gap 60-65.
        mine = LogCoverage("l")
        for index in (50, 51, 52, 70, 71):  # its own gap: 53-69
            mine.live(index)
        mine.merge(80, [(60, 65)])
        assert (mine.high, mine.gaps, mine.position) == (80, [(60, 65)], 59)

    def test_merging_keeps_own_gaps_beyond_the_saved_head(self) -> None:
        """Entries past what was saved are this process's: its gaps there stay."""
        mine = LogCoverage("l")
        for index in (10, 20, 30):
            mine.live(index)
        mine.merge(15, [])
        assert mine.gaps == [(16, 19), (21, 29)]
        assert mine.high == 30

    def test_merging_into_a_log_not_followed_adopts_the_saved_state(self) -> None:
        """A log this process never saw takes the saved position and gaps as they are."""
        mine = LogCoverage("l")
        mine.merge(99, [(3, 4)])
        assert (mine.high, mine.gaps, mine.position) == (99, [(3, 4)], 2)

    def test_merging_does_not_reach_before_either_start(self) -> None:
        """What the previous leader never tracked stays untracked: no gap below its entries."""
        # Even where this process started later.
        mine = LogCoverage("l")
        mine.live(500)
        mine.merge(400, [])
        assert mine.gaps == [(401, 499)]


class TestClaims:
    """An index is a claim, checked against the log's trusted tree head."""

    def test_an_index_past_the_ceiling_and_its_growth_is_refused(self) -> None:
        """Past ceiling + PLAUSIBLE_GROWTH: refused, counted, no gap, nothing missed."""
        log = LogCoverage("l")
        log.confirm(100)
        log.live(50)
        change = log.live(100 + PLAUSIBLE_GROWTH)
        assert change.implausible
        assert (log.high, log.gaps, log.missed, log.implausible) == (50, [], 0, 1)
        assert log.wants_head  # perhaps the log did grow: a newer head is asked for
        log.live(52)
        assert (log.gaps, log.missed) == ([(51, 51)], 1)

    def test_indexes_reaching_the_ceiling_ask_for_a_newer_head(self) -> None:
        """Below the ceiling no head is wanted; at it, one is."""
        log = LogCoverage("l")
        assert log.fast_below == -1  # no trusted head yet: every index is looked at
        wanted = []
        for step in (lambda: log.live(5), lambda: log.confirm(10), lambda: log.live(9),
                     lambda: log.live(10)):  # fmt: skip
            step()
            wanted.append(log.wants_head)
        assert wanted == [True, False, False, True]
        assert log.fast_below == 10

    def test_before_any_head_a_jump_from_the_previous_index_is_refused(self) -> None:
        """With no ceiling, the previous index of the connection is the reference."""
        log = LogCoverage("l")
        log.live(7)
        assert log.live(7 + PLAUSIBLE_GROWTH).implausible
        assert not log.live(7 + PLAUSIBLE_GROWTH - 1).implausible

    def test_a_first_lie_is_cut_back_by_the_first_trusted_head(self) -> None:
        """A log's first index past its tree is cut back to the tree when its head arrives."""
        log = LogCoverage("l")
        log.live(MAX_TREE_SIZE - 1)
        cut = log.confirm(20)
        assert cut == MAX_TREE_SIZE - 20
        assert (log.high, log.last_live, log.gaps) == (19, None, [])
        log.live(20)
        log.live(23)
        assert log.gaps == [(21, 22)]

    def test_a_lie_from_the_previous_connection_does_not_blind_the_next(self) -> None:
        """After a lie, indexes far below it re-anchor the connection."""
        log = LogCoverage("l", track_gaps=False)
        log.live(MAX_TREE_SIZE - 1)
        log.live(1000)
        log.live(1005)
        assert log.missed == 4

    def test_a_ceiling_never_goes_down(self) -> None:
        """An older, smaller head leaves the ceiling where it was."""
        log = LogCoverage("l")
        log.confirm(100)
        log.confirm(40)
        assert log.ceiling == 100

    def test_without_backfill_no_head_is_ever_wanted(self) -> None:
        """CT_BACKFILL=0: every index takes the fast path, and no head is asked for."""
        log = LogCoverage("l", track_gaps=False)
        log.live(3)
        assert (log.wants_head, log.fast_below) == (False, MAX_TREE_SIZE)

    def test_saved_values_no_log_can_have_are_not_merged(self) -> None:
        """A saved position of 2^62, or gaps with negative or reversed ends, are dropped."""
        log = LogCoverage("l")
        assert not log.merge(2**62, [])
        assert log.high is None
        other = LogCoverage("l")
        assert other.merge(100, [(-5, 3), (9, 4), (10, 20), (90, 2**50)])
        assert (other.high, other.gaps) == (100, [(10, 20)])
