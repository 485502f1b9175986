"""Waiting before trying again. Pure logic, no I/O (the caller sleeps).

One :class:`Backoff` serves every retry loop that waits on something outside: reconnecting
to the feed, and writing alert state through a database fault. (Webhook deliveries follow
their own contract schedule, :mod:`.schedule`.)
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

__all__ = ["Backoff"]


@attrs.define
class Backoff:
    """Capped exponential backoff with jitter: ``initial * 2**n``, drawn from its upper half.

    Jitter keeps many clients (replicas, reconnecting after one outage) from retrying in
    step; drawing from the upper half keeps the wait close to the intended one.
    """

    initial: float
    cap: float
    rng: Callable[[], float] = random.random
    attempts: int = 0

    def next(self) -> float:
        """The wait before the next try (and count this one)."""
        ceiling = min(self.cap, self.initial * 2.0**self.attempts)
        self.attempts = min(self.attempts + 1, 62)
        return ceiling / 2 + self.rng() * ceiling / 2

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self.attempts = 0
