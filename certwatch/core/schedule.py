"""When to try a webhook delivery again. Pure logic, no I/O.

The contract's three quick attempts (waiting 1 s, then 4 s); then a growing schedule,
30 s doubling to an hour, each wait drawn within ±20 %; ``Retry-After`` honoured but never
beyond the schedule's maximum nor the retry period; after ``WEBHOOK_RETRY_PERIOD_S`` from
when the alert was queued, the alert is given up (``failed``).
"""

from __future__ import annotations

import datetime
import email.utils
import random
import re
from collections.abc import Callable

import attrs

from certwatch.core.alerts import Status

__all__ = ["QUICK_ATTEMPTS", "NextAttempt", "RetryPolicy", "parse_retry_after", "retry_delay"]

QUICK_ATTEMPTS = 3
"""The contract's attempts in quick succession."""


@attrs.frozen
class RetryPolicy:
    """The schedule's settings (production defaults; tests shorten the waits)."""

    quick_delays_s: tuple[float, ...] = (1.0, 4.0)
    """Waits between the quick attempts."""
    backoff_s: float = 30.0
    """The first wait after the quick attempts, doubling at each further failure..."""
    backoff_max_s: float = 3600.0
    """...up to this, the longest any wait is."""
    retry_period_s: float = 86400.0
    """How long after being queued an alert is retried before it is given up."""

    def next_attempt(
        self,
        attempts: int,
        *,
        retry_after: float | None,
        queued_at: float,
        now: float,
        rng: Callable[[], float] = random.random,
    ) -> NextAttempt:
        """What follows failed attempt number ``attempts`` (1 for the first) made ``now``."""
        if attempts < QUICK_ATTEMPTS and attempts - 1 < len(self.quick_delays_s):
            delay = self.quick_delays_s[attempts - 1]
        else:
            delay = retry_delay(attempts, rng, base_s=self.backoff_s, cap_s=self.backoff_max_s)
        if retry_after is not None:
            delay = max(delay, retry_after)
        # No wait beyond the schedule's longest, nor past the retry period: an alert a
        # receiver asks to hold for 3,000 years is retried hourly, then given up.
        delay = min(delay, self.backoff_max_s, self.retry_period_s)
        give_up = attempts >= QUICK_ATTEMPTS and now + delay > queued_at + self.retry_period_s
        quick = attempts < QUICK_ATTEMPTS and delay <= max(self.quick_delays_s, default=0.0)
        return NextAttempt(delay, give_up=give_up, quick=quick)


@attrs.frozen
class NextAttempt:
    delay_s: float
    give_up: bool
    """The retry period is over: the alert is ``failed`` now."""
    quick: bool
    """One of the quick attempts: made right away by the same delivery, not by the poller."""

    @property
    def status(self) -> Status:
        """The alert's status after a failed attempt: ``failed``, or ``pending`` again."""
        return Status.FAILED if self.give_up else Status.PENDING


def retry_delay(
    attempts: int,
    rng: Callable[[], float] = random.random,
    *,
    base_s: float = 30.0,
    cap_s: float = 3600.0,
) -> float:
    """Wait before the next attempt once the quick attempts are spent.

    ``base_s`` after the third attempt, doubling up to ``cap_s``, each drawn within ±20 %.
    """
    exponent = max(0, attempts - QUICK_ATTEMPTS)
    return min(cap_s, base_s * 2.0 ** min(exponent, 30)) * (0.8 + 0.4 * rng())


_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")
"""RFC 9110 delay-seconds: ASCII digits only (``"²".isdigit()`` is true); 12 digits are
already 30,000 years, and any wait is capped far below that."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    ``None`` for a missing header and for anything else (the caller counts those).
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": an HTTP date is always UTC
            when = when.replace(tzinfo=datetime.UTC)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
