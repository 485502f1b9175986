"""Trying again: the one way certwatch waits out a failure of something outside it.

Every retry in certwatch (a store write through a database fault, a CT log read, the
feed's reconnect, the views' refresh, the log list's reload, the leader's adoption of
saved positions) waits the same way: capped exponential backoff with jitter
(:class:`~certwatch.core.backoff.Backoff`) from timings in
:class:`~certwatch.settings.Timing`, the peer's ``Retry-After`` honoured up to the cap,
for as long as it takes or for a period. What cannot improve by asking again (a
signature that does not verify, a log that lied) is not asked again.

:class:`Retrying` is a run of failures, for loops that do other work between tries (the
feed, back-fill's turns); :func:`retrying` retries one operation until it works.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from certwatch.core.backoff import Backoff

__all__ = ["Retrying", "retrying"]

T = TypeVar("T")


class Retrying:
    """A run of failures: how long to wait before the next try, until ``period_s`` has
    passed since the first failure (``None``: never give up)."""

    def __init__(self, initial_s: float, max_s: float, period_s: float | None = None) -> None:
        self._backoff = Backoff(initial_s, max_s)
        self._cap = max_s
        self._period_s = period_s
        self._since: float | None = None

    @property
    def failing_since(self) -> float | None:
        return self._since

    def failed(self, asked_s: float | None = None) -> float | None:
        """Another failure: the wait before the next try (at least ``asked_s``, the peer's
        ``Retry-After``, up to the backoff's cap), or ``None`` once the period is over."""
        now = trio.current_time()
        self._since = now if self._since is None else self._since
        if self._period_s is not None and now - self._since >= self._period_s:
            return None
        delay = self._backoff.next()
        if asked_s is not None:
            delay = max(delay, min(asked_s, self._cap))
        return delay

    def reset(self) -> None:
        """It worked: the next failure starts a new run."""
        self._since = None
        self._backoff.reset()


async def retrying(
    operation: Callable[[], Awaitable[T]],
    retry: Retrying,
    *,
    on: type[Exception] | tuple[type[Exception], ...],
    log: logging.Logger,
    what: str,
    worth_it: Callable[[Exception], bool] = lambda e: True,
    asked_s: Callable[[Exception], float | None] = lambda e: None,
    level: Callable[[Exception], int] = lambda e: logging.WARNING,
    noted: Callable[[Exception | None], None] = lambda e: None,
) -> T:
    """``operation()``, tried again while it raises ``on`` and the failure is
    ``worth_it``, waiting as ``retry`` says; the last error is raised when the period is
    over. Each failure is logged (``what`` says what failed) and ``noted``, as is the
    success (``noted(None)``)."""
    while True:
        try:
            result = await operation()
        except on as e:
            noted(e)
            delay = retry.failed(asked_s(e)) if worth_it(e) else None
            if delay is None:
                raise
            log.log(level(e), "%s (trying again in %.1f s): %s", what, delay, e)
            await trio.sleep(delay)
        else:
            retry.reset()
            noted(None)
            return result
