"""The webhook schedule: what follows each failed attempt (pure logic, no sender, no clock)."""

from __future__ import annotations

import datetime

import pytest

from certwatch.core.schedule import RetryPolicy, parse_retry_after, retry_delay


class TestSchedule:
    """The schedule alone: what follows each failed attempt (pure, no sender, no clock)."""

    POLICY = RetryPolicy(retry_period_s=600)

    def plan(
        self, attempts: int, retry_after: float | None = None, now: float = 0
    ) -> tuple[float, bool, bool]:
        nxt = self.POLICY.next_attempt(
            attempts, retry_after=retry_after, queued_at=0, now=now, rng=lambda: 0.5
        )
        return nxt.delay_s, nxt.give_up, nxt.quick

    def test_the_contracts_quick_attempts_come_first(self) -> None:
        """After attempts 1 and 2: 1 s and 4 s, made by the same delivery; then the schedule."""
        assert self.plan(1) == (1.0, False, True)
        assert self.plan(2) == (4.0, False, True)
        assert self.plan(3) == (30.0, False, False)
        assert self.plan(4) == (60.0, False, False)

    def test_retry_after_can_lengthen_a_wait_but_never_past_the_caps(self) -> None:
        """Retry-After is honoured, capped by the hour-long maximum and by the retry period."""
        assert self.plan(1, retry_after=20) == (20.0, False, False)  # no longer a quick one
        assert self.plan(3, retry_after=5) == (30.0, False, False)  # never shorter
        long = RetryPolicy(retry_period_s=86400)
        capped = long.next_attempt(3, retry_after=99999999999, queued_at=0, now=0)
        assert capped.delay_s == 3600
        short = RetryPolicy(retry_period_s=100)
        assert short.next_attempt(3, retry_after=500, queued_at=0, now=0).delay_s == 100

    def test_it_gives_up_when_the_next_try_would_fall_past_the_period(self) -> None:
        """Once the quick attempts are spent, a wait past the period means `failed` now."""
        assert self.plan(3, now=500)[1] is False  # 500 + 30 < 600
        assert self.plan(3, now=580)[1] is True  # 580 + 30 > 600
        assert self.plan(2, now=599)[1] is False  # the quick attempts are always made

    def test_retry_delay_doubles_to_an_hour(self) -> None:
        """After the quick attempts: 30 s doubling, capped at an hour, jittered by ±20 %."""
        assert [retry_delay(n, lambda: 0.5) for n in (3, 4, 5, 9, 20)] == [30, 60, 120, 1920, 3600]
        assert retry_delay(3, lambda: 0.0) == pytest.approx(24)
        assert retry_delay(3, lambda: 1.0) == pytest.approx(36)

    def test_parse_retry_after(self) -> None:
        """Retry-After is delta-seconds or an HTTP date; anything else is ignored."""
        date = datetime.datetime(2026, 10, 21, 7, 28, tzinfo=datetime.UTC).timestamp()
        assert parse_retry_after("120", 0.0) == 120
        assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", date - 90) == 90
        assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", date + 90) == 0
        assert parse_retry_after("soon", 0.0) is None
        assert parse_retry_after(None, 0.0) is None
        assert parse_retry_after(" 120 ", 0.0) == 120

    @pytest.mark.parametrize(
        "value",
        ["\u00b2", "\u0661\u0662", "1_000", "1e3", "0x10", "-5", "+5", "5.5", "9" * 400, ""],
    )
    def test_retry_after_accepts_only_ascii_digits_or_a_date(self, value: str) -> None:
        """Superscripts, other scripts' digits, signs, floats and huge numbers are no delay."""
        assert parse_retry_after(value, 0.0) is None

    def test_a_date_without_a_zone_is_utc(self) -> None:
        """An HTTP date is always UTC, whatever the host's time zone."""
        date = datetime.datetime(2026, 10, 21, 7, 28, tzinfo=datetime.UTC).timestamp()
        assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 -0000", date - 5) == 5
