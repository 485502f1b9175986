"""A log entry that matched the watch list, handed on like a live message.

Back-fill and lookups both end here: the entry is proven included in a tree head signed
by the log's listed key (``log_verified``), a precert's first issuer is read (to see a
Precertificate Signing Certificate), and the observation goes to the alerter through the
same path as a certstream message, so one issuance gives one event whichever way it came.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from certwatch.core.ctlog import EntryType, LogEntry
from certwatch.core.logentry import entry_names, entry_observation
from certwatch.core.loglist import LogInfo
from certwatch.core.lookalikes import BrandIndex, match_names
from certwatch.core.names import WatchIndex
from certwatch.errors import CTLogError, InvalidCertificate
from certwatch.pipeline.matching import OnMatch
from certwatch.sources.ctlog import CTLogReader
from certwatch.sources.heads import TreeHeads

__all__ = ["MatchedEntries"]

log = logging.getLogger(__name__)


class MatchedEntries:
    """Matches entries read from logs and hands the matches on (see the module docstring)."""

    def __init__(
        self,
        reader: CTLogReader,
        heads: TreeHeads,
        index: WatchIndex,
        on_match: OnMatch,
        *,
        brands: BrandIndex | None = None,
        clock: Callable[[], float],
    ) -> None:
        self._reader = reader
        self._heads = heads
        self._index = index
        self._brands = brands if brands is not None else BrandIndex()
        self._on_match = on_match
        self._clock = clock

    async def check(self, info: LogInfo, entry: LogEntry) -> None:
        """Hand ``entry`` on if it matches the watch list or imitates a brand (an unreadable
        one is counted)."""
        try:
            names = entry_names(entry)
        except InvalidCertificate as e:
            self._reader.fail(info, CTLogError("unreadable_certificate", str(e)))
            log.warning("%s: entry %d: the certificate's %s", info.read_url, entry.index, e)
            return
        match, lookalikes = match_names(self._index, self._brands, names)
        if match is None:
            return
        verified = await self._verify(info, entry)
        first_issuer = await self._first_issuer(info, entry)
        observation = entry_observation(
            entry, names, info, verified=verified, seen=self._clock(), first_issuer=first_issuer
        )
        log.info(
            "%s: entry %d matches %s (%s)",
            info.read_url, entry.index, ",".join(match.sans),
            "verified" if verified else "not verified",
        )  # fmt: skip
        await self._on_match(observation, match, lookalikes)

    async def _verify(self, info: LogInfo, entry: LogEntry) -> bool:
        """Whether ``entry`` is proven in a tree head signed by the log's listed key."""
        if info.key is None:
            return False
        try:
            head = self._heads.latest(info)
            if head is None or head.head.size <= entry.index:
                head = await self._heads.read(info)
            if not head.verified or head.head.size <= entry.index:
                return False
            return await self._reader.prove(info, entry, head.head)
        except CTLogError as e:
            log.warning("%s: entry %d could not be verified: %s", info.read_url, entry.index, e)
            return False

    async def _first_issuer(self, info: LogInfo, entry: LogEntry) -> bytes | None:
        """A precert's first chain certificate (to see a precert signing certificate)."""
        if entry.entry_type is not EntryType.PRECERT:
            return None
        if entry.chain:
            return entry.chain[0]
        if not entry.chain_fingerprints:
            return None
        try:
            return await self._reader.issuer(info, entry.chain_fingerprints[0])
        except CTLogError as e:
            log.warning("%s: entry %d: issuer not read: %s", info.read_url, entry.index, e)
            return None
