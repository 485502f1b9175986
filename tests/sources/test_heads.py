"""Reading CT logs again after a failure, on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

from certwatch.core.loglist import LogInfo, LogKind
from certwatch.errors import CTLogError, CTLogReason
from certwatch.retry import Retrying
from certwatch.sources.heads import NotYet, read_retrying
from tests.support.timing import PRODUCTION

LOG = LogInfo("https://log.example", LogKind.RFC6962)


def retry(period_s: float = 21600.0) -> Retrying:
    return Retrying(PRODUCTION.ct_backoff_initial_s, PRODUCTION.ct_backoff_max_s, period_s)


class Flaky:
    """An operation that fails with ``errors`` in turn, then answers; records when."""

    def __init__(self, *errors: CTLogError) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(trio.current_time())
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


class TestReadRetrying:
    async def test_retry_after_is_honoured(self, autojump_clock: trio.abc.Clock) -> None:
        """A 429 asking for 30 s is asked again no sooner than 30 s later."""
        operation = Flaky(CTLogError("rate_limited", "429", retry_after=30))
        assert await read_retrying(operation, retry(), LOG) == "answer"
        assert operation.calls[1] - operation.calls[0] >= 30

    async def test_retry_after_is_capped_by_the_backoff_maximum(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """A Retry-After of a day waits the backoff's maximum (5 min), not a day."""
        operation = Flaky(CTLogError("rate_limited", "429", retry_after=86400))
        await read_retrying(operation, retry(), LOG)
        assert operation.calls[1] - operation.calls[0] == pytest.approx(300)

    async def test_failures_back_off_exponentially(self, autojump_clock: trio.abc.Clock) -> None:
        """Waits grow from 1 s, doubling (jittered in the upper half), up to 5 min."""
        operation = Flaky(*[CTLogError("unreachable", "refused")] * 12)
        noted: list[CTLogError | None] = []
        await read_retrying(operation, retry(), LOG, noted.append)
        waits = [b - a for a, b in zip(operation.calls, operation.calls[1:], strict=False)]
        assert 0.5 <= waits[0] <= 1
        assert 1 <= waits[1] <= 2
        assert all(150 <= w <= 300 for w in waits[-3:])
        assert noted[-1] is None  # the success is noted too

    async def test_a_log_failing_for_the_retry_period_is_given_up(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """After the retry period of failures, the last error is raised (and noted)."""
        operation = Flaky(*[CTLogError("timeout", "slow")] * 1000)
        noted: list[CTLogError | None] = []
        with pytest.raises(CTLogError, match="slow"):
            await read_retrying(operation, retry(3600), LOG, noted.append)
        assert 3600 <= operation.calls[-1] - operation.calls[0] <= 3600 + 300
        assert str(noted[-1]) == "slow"

    @pytest.mark.parametrize(
        "reason", ["bad_signature", "bad_proof", "unreadable_certificate", "inconsistent"]
    )
    async def test_what_cannot_improve_is_not_asked_again(
        self, autojump_clock: trio.abc.Clock, reason: CTLogReason
    ) -> None:
        """A bad signature (or proof, or a lie) is raised at once, not retried for 6 h."""
        operation = Flaky(CTLogError(reason, "no"))
        with pytest.raises(CTLogError):
            await read_retrying(operation, retry(), LOG)
        assert len(operation.calls) == 1

    async def test_a_tree_not_published_yet_is_waited_for(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """NotYet (the log's tree does not hold the entry yet) is retried."""
        operation = Flaky(NotYet("the log's latest tree has 5 entries"))
        assert await read_retrying(operation, retry(), LOG) == "answer"
