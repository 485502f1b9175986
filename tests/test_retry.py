"""Trying again after a failure: one schedule for every retry (virtual clock)."""

from __future__ import annotations

import logging

import pytest
import trio

from certwatch.retry import Retrying, retrying

log = logging.getLogger(__name__)


class TestRetrying:
    async def test_waits_grow_and_reset_after_a_success(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """1 s, then about 2 s, then about 4 s ...; after reset(), 1 s again."""
        retry = Retrying(1.0, 60.0)
        waits = [retry.failed() for _ in range(4)]
        bounds = [(0.5, 1), (1, 2), (2, 4), (4, 8)]
        for wait, (low, high) in zip(waits, bounds, strict=True):
            assert wait is not None
            assert low <= wait <= high
        retry.reset()
        first = retry.failed()
        assert first is not None
        assert first <= 1

    async def test_a_period_ends_the_run(self, autojump_clock: trio.abc.Clock) -> None:
        """Past its period since the first failure, failed() says stop (None)."""
        retry = Retrying(1.0, 60.0, period_s=10.0)
        assert retry.failed() is not None
        await trio.sleep(10)
        assert retry.failed() is None

    async def test_an_asked_wait_is_honoured_up_to_the_cap(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """A peer's Retry-After lengthens the wait, never past the cap."""
        assert Retrying(1.0, 60.0).failed(asked_s=30) == 30
        assert Retrying(1.0, 60.0).failed(asked_s=86400) == 60


async def test_retrying_an_operation_until_it_works(autojump_clock: trio.abc.Clock) -> None:
    """retrying() calls again after each failure it is told to retry, then returns."""
    calls = []

    async def flaky() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    assert await retrying(flaky, Retrying(1.0, 60.0), on=ConnectionError, log=log, what="x") == "up"
    assert len(calls) == 3


async def test_retrying_gives_up_on_what_is_not_worth_it(autojump_clock: trio.abc.Clock) -> None:
    """A failure that is not worth another try is raised at once."""

    async def broken() -> str:
        raise ValueError("never")

    with pytest.raises(ValueError, match="never"):
        await retrying(
            broken, Retrying(1.0, 60.0), on=ValueError, log=log, what="x", worth_it=lambda e: False
        )
