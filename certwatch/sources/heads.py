"""Tree heads: what each log says it holds, checked before it is believed.

Every tree head certwatch reads goes through :class:`TreeHeads`. One that the log signed
with its listed key is checked against the last one verified (RFC 6962 consistency: the
smaller tree a prefix of the larger; one root per size; no shrinking), and a log that
forks or shrinks is counted (``inconsistent``), logged with both heads and its evidence
stored; certwatch goes on. A head certwatch trusts (signed with the listed key, or, for a
log without one, the log's own word) raises the log's ceiling in coverage, against which
the indexes certstream claims are checked.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from certwatch.core import ctlog
from certwatch.core.ctlog import TreeHead, tree_head_json
from certwatch.core.loglist import LogInfo
from certwatch.errors import CTLogError, StoreError
from certwatch.pipeline.coverage import Coverage
from certwatch.retry import Retrying, retrying
from certwatch.sources.ctlog import CTLogReader, VerifiedHead
from certwatch.store import LogEvidence

__all__ = ["NotYet", "RecordEvidence", "TreeHeads", "read_retrying"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RecordEvidence = Callable[[LogEvidence], Awaitable[None]]


class NotYet(CTLogError):
    """The log has not published a tree that holds the entry yet (retried, not counted)."""

    def __init__(self, detail: str) -> None:
        super().__init__("http", detail)


async def read_retrying(
    operation: Callable[[], Awaitable[T]],
    retry: Retrying,
    info: LogInfo,
    note: Callable[[CTLogError | None], None] = lambda e: None,
) -> T:
    """``operation()`` (reads of ``info``), tried again while it fails with an error worth
    asking again for, waiting as ``retry`` says (the log's ``Retry-After`` honoured);
    ``note`` is told each failure and the success."""
    return await retrying(
        operation,
        retry,
        on=CTLogError,
        log=log,
        what=f"{info.read_url}: a read failed",
        worth_it=lambda e: isinstance(e, CTLogError) and e.transient,
        asked_s=lambda e: e.retry_after if isinstance(e, CTLogError) else None,
        level=lambda e: logging.INFO if isinstance(e, NotYet) else logging.WARNING,
        noted=lambda e: note(e if isinstance(e, CTLogError) else None),
    )


class TreeHeads:
    """Reads, checks and remembers logs' tree heads (see the module docstring)."""

    def __init__(
        self,
        reader: CTLogReader,
        coverage: Coverage,
        *,
        record_evidence: RecordEvidence | None,
        clock: Callable[[], float],
    ) -> None:
        self._reader = reader
        self._coverage = coverage
        self._record_evidence = record_evidence
        self._clock = clock
        self._latest: dict[str, VerifiedHead] = {}

    def latest(self, info: LogInfo) -> VerifiedHead | None:
        """The last tree head read from the log, if any."""
        return self._latest.get(info.read_url)

    async def read(self, info: LogInfo, *, extend: str | None = None) -> VerifiedHead:
        """The log's latest tree head (checked, and raising the ceiling if trusted; with
        ``extend``, a log's key at start, what lies past its position becomes a gap)."""
        head = await self._reader.tree_head(info)
        self._latest[info.read_url] = head
        if head.verified:
            await self._check_consistency(info, head.head)
        if head.verified or info.key is None:
            self._coverage.trusted_head(info, head.head, verified=head.verified, extend=extend)
        return head

    async def covering(self, info: LogInfo, index: int) -> VerifiedHead:
        """A tree head whose tree holds ``index``; :class:`NotYet` when the log has not
        published one yet."""
        head = self._latest.get(info.read_url)
        if head is None or head.head.size <= index:
            head = await self.read(info)
        if head.head.size <= index:
            raise NotYet(f"the log's latest tree has {head.head.size} entries")
        return head

    async def _check_consistency(self, info: LogInfo, new: TreeHead) -> None:
        old = self._coverage.reference_head(info)
        if old is None or old == new:
            return
        first, second = (old, new) if old.size <= new.size else (new, old)
        proof: list[bytes] = []
        # A smaller tree signed later than a larger one: the log shrank. (A smaller tree
        # signed earlier is a stale head, which is fine if it is a prefix.)
        shrank = new.size < old.size and new.timestamp_ms > old.timestamp_ms
        if not shrank:
            try:
                if first.size != second.size:
                    proof = await self._reader.consistency(info, first.size, second.size)
            except CTLogError as e:
                log.warning(
                    "%s: consistency of its tree heads %d and %d not checked: %s",
                    info.read_url, first.size, second.size, e,
                )  # fmt: skip
                return
            if ctlog.verify_consistency(
                first.size, second.size, first.root_hash, second.root_hash, proof
            ):
                return
        if shrank:
            why = "the later head is of a smaller tree"
        elif first.size == second.size:
            why = "the same size with another root"
        else:
            why = "no consistency proof leads from one to the other"
        await self._inconsistent(info, old, new, proof, why)

    async def _inconsistent(
        self, info: LogInfo, old: TreeHead, new: TreeHead, proof: list[bytes], why: str
    ) -> None:
        self._reader.fail(info, CTLogError("inconsistent", "two signed tree heads disagree"))
        detail: dict[str, Any] = {
            "earlier": tree_head_json(old),
            "later": tree_head_json(new),
            "proof": [base64.b64encode(h).decode() for h in proof],
            "problem": why,
        }
        log.error(
            "%s: INCONSISTENT tree heads, both signed by the log: %s then %s (%s): the log "
            "forked or shrank; evidence kept",
            info.read_url, detail["earlier"], detail["later"], why,
        )  # fmt: skip
        if self._record_evidence is not None:
            evidence = LogEvidence(info.read_url, "inconsistent", detail, self._clock())
            try:
                await self._record_evidence(evidence)
            except StoreError as e:
                log.error("%s: evidence not stored (it is in this log): %s", info.read_url, e)
