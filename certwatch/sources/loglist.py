"""Loading the CT log list (``CT_LOG_LIST``): a file, or an http(s) URL.

Loaded at start, then again every day; a load that fails keeps the list already loaded
and is tried again sooner (backing off up to an hour). Without any list, back-fill still
reads each log from the URL certstream names it by, unverified: that is said once, when
the first load fails, not at every retry.

A load is bounded whatever is at the other end: only a regular file is read (a FIFO or a
device such as ``/dev/zero`` is refused before it is opened for reading), at most
:data:`MAX_LIST_BYTES`, raw or decoded; a URL has :data:`LOAD_DEADLINE_FACTOR` times the
request timeout for the whole answer (a server dripping a byte at a time is cut off); and
the list is parsed in a worker thread, its size checked before any key is loaded.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from typing import NoReturn

import attrs
import httpx
import trio

from certwatch.core.loglist import parse_log_list
from certwatch.errors import BodyError, InvalidLogList
from certwatch.httpclient import new_client, read_bounded
from certwatch.metrics import CoverageMetrics
from certwatch.pipeline.coverage import Coverage
from certwatch.retry import Retrying
from certwatch.settings import Timing, redact_url

__all__ = ["LOAD_DEADLINE_FACTOR", "MAX_LIST_BYTES", "LogListLoader", "LogListStatus"]

log = logging.getLogger(__name__)

MAX_LIST_BYTES = 4 * 1024 * 1024
"""Chrome's list is about 100 KiB; anything past this is not a log list."""
LOAD_DEADLINE_FACTOR = 3
"""A load from a URL must be complete within this many request timeouts."""


@attrs.frozen
class LogListStatus:
    source: str
    logs: int
    loaded_at: float | None
    error: str | None


class LogListLoader:
    """Keeps the coverage's log list loaded (see the module docstring)."""

    def __init__(
        self,
        source: str,
        coverage: Coverage,
        metrics: CoverageMetrics,
        timing: Timing,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._source = source
        self._coverage = coverage
        self._metrics = metrics
        self._timing = timing
        self._clock = clock
        self._transport = transport
        self.attempted = trio.Event()
        """Set once the first load has succeeded or failed."""
        self.loaded_at: float | None = None
        self.error: str | None = None

    @property
    def shown_source(self) -> str:
        return redact_url(self._source) if "://" in self._source else self._source

    def status(self) -> LogListStatus:
        return LogListStatus(
            self.shown_source, len(self._coverage.log_list), self.loaded_at, self.error
        )

    async def run(self) -> NoReturn:
        t = self._timing
        retry = Retrying(t.ct_log_list_retry_initial_s, t.ct_log_list_retry_s)
        while True:
            loaded = await self.load()
            self.attempted.set()
            if loaded:
                retry.reset()
                wait = t.ct_log_list_refresh_s
            else:
                wait = retry.failed() or 0.0  # (no period: never None)
            await trio.sleep(wait)

    async def load(self) -> bool:
        """Load the list once; whether it worked (a failure keeps the current list)."""
        try:
            data = await self._read()
            log_list = await trio.to_thread.run_sync(parse_log_list, data)
        except (InvalidLogList, BodyError, OSError, httpx.HTTPError) as e:
            problem = str(e) or type(e).__name__
        except trio.TooSlowError:
            deadline = LOAD_DEADLINE_FACTOR * self._timing.ct_request_timeout_s
            problem = f"not loaded within {deadline:g} s"
        else:
            self._coverage.set_log_list(log_list)
            self.loaded_at = self._clock()
            self.error = None
            self._metrics.log_list_logs.set(len(log_list))
            self._metrics.log_list_loaded.set(self.loaded_at)
            log.info(
                "CT log list from %s: %d logs, %d with a key to verify them",
                self.shown_source, len(log_list), sum(1 for x in log_list.logs if x.key),
            )  # fmt: skip
            for problem in log_list.problems[:20]:
                log.warning("CT log list: %s", problem)
            return True
        first = self.error is None and self.loaded_at is None
        self.error = problem[:300]
        if first:
            log.warning(
                "cannot load the CT log list from %s (%s): back-fill reads each log from "
                "the URL certstream gives, and cannot verify what it reads, until it loads",
                self.shown_source, self.error,
            )  # fmt: skip
        else:
            log.info("CT log list not reloaded from %s: %s", self.shown_source, self.error)
        return False

    async def _read(self) -> bytes:
        if "://" not in self._source:
            return await trio.to_thread.run_sync(_read_file, self._source)
        timeout = self._timing.ct_request_timeout_s
        with trio.fail_after(LOAD_DEADLINE_FACTOR * timeout):
            async with (
                new_client(timeout, transport=self._transport) as client,
                client.stream("GET", self._source) as response,
            ):
                if response.status_code != 200:
                    raise InvalidLogList(f"HTTP {response.status_code}")
                return await read_bounded(response, MAX_LIST_BYTES)


def _read_file(path: str) -> bytes:
    """A log list file, if it is a regular file of at most :data:`MAX_LIST_BYTES`.

    Opened without blocking, then checked: opening a FIFO for reading would wait for a
    writer, and a device never ends.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidLogList("not a regular file")
        data = f.read(MAX_LIST_BYTES + 1)
    if len(data) > MAX_LIST_BYTES:
        raise InvalidLogList(f"over {MAX_LIST_BYTES:,} bytes")
    return data
