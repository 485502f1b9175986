"""Back-fill's retry policy and the log list's schedule, on trio's virtual clock."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio

from certwatch.core.coverage import LogCoverage
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.core.names import WatchIndex
from certwatch.errors import CTLogError
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.sources.backfill import Backfill
from certwatch.sources.ctlog import CTLogReader
from certwatch.sources.loglist import LogListLoader
from tests.support.ctlog import TestLog, log_list
from tests.support.timing import PRODUCTION

LOG = LogInfo("https://log.example", LogKind.RFC6962)


async def nothing(*_: Any) -> None:
    """An on_match that does nothing."""


def backfill(retry_period_s: float = 21600.0) -> Backfill:
    metrics = Metrics()
    reader = CTLogReader(metrics, timeout_s=15)
    coverage = Coverage(metrics, backfill=True)
    return Backfill(
        reader, coverage, WatchIndex(), nothing, metrics,
        timing=PRODUCTION, retry_period_s=retry_period_s, clock=trio.current_time,
    )  # fmt: skip


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


class TestRetries:
    async def test_retry_after_is_honoured(self, autojump_clock: trio.abc.Clock) -> None:
        """A 429 asking for 30 s is asked again no sooner than 30 s later."""
        operation = Flaky(CTLogError("rate_limited", "429", retry_after=30))
        assert await backfill()._attempt(LOG, None, operation) == "answer"
        assert operation.calls[1] - operation.calls[0] >= 30

    async def test_retry_after_is_capped_by_the_backoff_maximum(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """A Retry-After of a day waits the backoff's maximum (5 min), not a day."""
        operation = Flaky(CTLogError("rate_limited", "429", retry_after=86400))
        await backfill()._attempt(LOG, None, operation)
        assert operation.calls[1] - operation.calls[0] == pytest.approx(300)

    async def test_failures_back_off_exponentially(self, autojump_clock: trio.abc.Clock) -> None:
        """Waits grow from 1 s, doubling (jittered in the upper half), up to 5 min."""
        operation = Flaky(*[CTLogError("unreachable", "refused")] * 12)
        state = LogCoverage("https://log.example")
        await backfill()._attempt(LOG, state, operation)
        waits = [b - a for a, b in zip(operation.calls, operation.calls[1:], strict=False)]
        assert 0.5 <= waits[0] <= 1
        assert 1 <= waits[1] <= 2
        assert all(150 <= w <= 300 for w in waits[-3:])
        assert state.last_error == ""  # cleared by the success

    async def test_a_log_failing_for_the_retry_period_is_given_up(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """After the retry period of failures, the last error is raised (and kept)."""
        operation = Flaky(*[CTLogError("timeout", "slow")] * 1000)
        state = LogCoverage("https://log.example")
        with pytest.raises(CTLogError, match="slow"):
            await backfill(retry_period_s=3600)._attempt(LOG, state, operation)
        assert 3600 <= operation.calls[-1] - operation.calls[0] <= 3600 + 300
        assert state.last_error == "timeout: slow"


class MemoryList(LogListLoader):
    """The loader with the list read from memory (the virtual clock cannot wait on a
    worker thread's file read)."""

    def __init__(self, coverage: Coverage, metrics: Metrics, documents: list[bytes]) -> None:
        super().__init__("/etc/certwatch/log_list.json", coverage, metrics, PRODUCTION,
                         clock=trio.current_time)  # fmt: skip
        self.documents = documents
        self.reads: list[float] = []

    async def _read(self) -> bytes:
        self.reads.append(trio.current_time())
        document = self.documents.pop(0) if len(self.documents) > 1 else self.documents[0]
        if not document:
            raise OSError("No such file or directory")
        return document


class TestLogList:
    async def test_the_list_is_loaded_at_start_and_daily(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """A loaded list is read again a day later, and the new one replaces it."""
        one, two = TestLog("rfc6962", name="one"), TestLog("rfc6962", name="two")
        metrics = Metrics()
        coverage = Coverage(metrics, backfill=True)
        documents = [json.dumps(log_list(one)).encode(), json.dumps(log_list(one, two)).encode()]
        loader = MemoryList(coverage, metrics, documents)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loader.run)
            await loader.attempted.wait()
            assert len(coverage.log_list) == 1
            await trio.sleep(86400 + 1)
            nursery.cancel_scope.cancel()
        assert len(coverage.log_list) == 2
        assert loader.reads[1] - loader.reads[0] == pytest.approx(86400)
        assert metrics.registry.get_sample_value("certwatch_ct_log_list_logs") == 2

    async def test_an_unreadable_list_is_said_once_and_retried_sooner(
        self, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An unreadable log list is said once and retried (1 min to 1 h); the old one is kept."""
        metrics = Metrics()
        coverage = Coverage(metrics, backfill=True)
        loader = MemoryList(coverage, metrics, [b""])
        with caplog.at_level(logging.INFO, logger="certwatch.loglist"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(loader.run)
                await trio.sleep(6 * 3600)
                nursery.cancel_scope.cancel()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "cannot load the CT log list" in warnings[0].getMessage()
        waits = [b - a for a, b in zip(loader.reads, loader.reads[1:], strict=False)]
        assert 30 <= waits[0] <= 60
        assert max(waits) <= 3600
        assert loader.error == "No such file or directory"
        assert len(coverage.log_list) == 0
