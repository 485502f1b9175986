"""The log list's schedule, on trio's virtual clock."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.sources.loglist import LogListLoader
from tests.support.ctlog import TestLog, log_list
from tests.support.timing import PRODUCTION


class MemoryList(LogListLoader):
    """The loader with the list read from memory (the virtual clock cannot wait on a
    worker thread's file read)."""

    def __init__(self, coverage: Coverage, metrics: Metrics, documents: list[bytes]) -> None:
        super().__init__("/etc/certwatch/log_list.json", coverage, metrics.coverage, PRODUCTION,
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
        coverage = Coverage(metrics.coverage, backfill=True)
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
        coverage = Coverage(metrics.coverage, backfill=True)
        loader = MemoryList(coverage, metrics, [b""])
        with caplog.at_level(logging.INFO, logger="certwatch.sources.loglist"):
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
