"""Lookups: the log entry of a matched certificate whose message had no DER.

certstream-server-go sends tiled logs' precerts without their DER, and the lite stream
never has it: without it, a key registered in advance or a TBS hash cannot be checked. So a
matched certificate without DER has its entry read from its log at once (on every replica),
within the grace period, and handed on like a live message.

Each log has its own queue and workers (:data:`QUEUE`, :data:`PER_LOG`), so a log that is
slow, failing or hostile delays only its own lookups; an entry already waiting is not asked
again (a thousand copies of one frame are one lookup).
"""

from __future__ import annotations

import logging
from typing import NoReturn

import attrs
import trio

from certwatch.core import ctlog
from certwatch.core.ctlog import LogEntry
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.errors import CTLogError
from certwatch.retry import Retrying
from certwatch.settings import Timing
from certwatch.sources.ctlog import CTLogReader
from certwatch.sources.entries import MatchedEntries
from certwatch.sources.heads import TreeHeads, read_retrying

__all__ = ["PER_LOG", "QUEUE", "WITHIN_S", "Lookups"]

log = logging.getLogger(__name__)

QUEUE = 64
"""Lookups waiting per log; one entry asked again while it waits is one lookup."""
PER_LOG = 2
"""Lookups in flight per log."""
WITHIN_S = 600.0
"""How long a lookup keeps trying."""


@attrs.define
class _LogLookups:
    """The lookups of one log: a bounded queue, and the entries in it (asked once)."""

    info: LogInfo
    send: trio.MemorySendChannel[int]
    receive: trio.MemoryReceiveChannel[int]
    waiting: set[int] = attrs.Factory(set)


class Lookups:
    """Reads single entries of matched certificates without DER (see the module docstring).
    Run :meth:`serve` as a task."""

    def __init__(
        self, reader: CTLogReader, heads: TreeHeads, entries: MatchedEntries, timing: Timing
    ) -> None:
        self._reader = reader
        self._heads = heads
        self._entries = entries
        self._timing = timing
        self._logs: dict[str, _LogLookups] = {}
        self._new_logs, self._logs_to_serve = trio.open_memory_channel[_LogLookups](
            float("inf")  # one item per log ever looked up in: bounded by the logs followed
        )
        self.started = 0
        """Lookups started (``/healthz``)."""
        self.dropped = 0

    def lookup(self, info: LogInfo, index: int) -> None:
        """Read entry ``index`` of ``info`` soon and hand it on (it matched already)."""
        lookups = self._logs.get(info.read_url)
        if lookups is None:
            send, receive = trio.open_memory_channel[int](QUEUE)
            lookups = self._logs[info.read_url] = _LogLookups(info, send, receive)
            self._new_logs.send_nowait(lookups)
        if index in lookups.waiting:
            return
        try:
            lookups.send.send_nowait(index)
        except trio.WouldBlock:
            self.dropped += 1
            log.warning("%s: too many lookups waiting: entry %d not read", info.read_url, index)
            return
        lookups.waiting.add(index)

    async def serve(self) -> NoReturn:
        async with trio.open_nursery() as nursery:
            async for lookups in self._logs_to_serve:
                for _ in range(PER_LOG):
                    nursery.start_soon(self._worker, lookups)
        raise AssertionError("the lookup channel closed")  # pragma: no cover

    async def _worker(self, lookups: _LogLookups) -> None:
        async for index in lookups.receive:
            try:
                await self._lookup(lookups.info, index)
            finally:
                lookups.waiting.discard(index)

    async def _lookup(self, info: LogInfo, index: int) -> None:
        self.started += 1
        t = self._timing
        try:
            entry = await read_retrying(
                lambda: self._read_one(info, index),
                Retrying(t.ct_backoff_initial_s, t.ct_backoff_max_s, WITHIN_S),
                info,
            )
        except CTLogError as e:
            log.error("%s: entry %d could not be read: %s", info.read_url, index, e)
            return
        await self._entries.check(info, entry)

    async def _read_one(self, info: LogInfo, index: int) -> LogEntry:
        if info.kind is LogKind.TILED:
            head = await self._heads.covering(info, index)
            n = index // ctlog.TILE_WIDTH
            entries = await self._reader.data_tile(info, n, ctlog.tile_width(0, n, head.head.size))
            return entries[index % ctlog.TILE_WIDTH]
        return (await self._reader.get_entries(info, index, index))[0]
