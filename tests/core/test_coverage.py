"""One log's coverage: positions, gaps, limits (pure logic)."""

from __future__ import annotations

from certwatch.core.coverage import MAX_GAPS, LogCoverage


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
