"""CAA for the service: each decision's evaluation, and the history that makes it fair.

A CA may rely on a CAA answer up to 8 hours old, so a record that changed around an
issuance proves nothing: ``forbidden`` needs an RRset certwatch has seen unchanged since
``CAA_STABLE_S`` before the issuance. So certwatch keeps a history (the ``caa_rrsets``
table), fed by every lookup: each watch entry's when it is added, every watch entry's and
inventory name's every ``CAA_REFRESH_S`` (on the leader, spread over the interval), and
each matched SAN's when an alert is decided.

An evaluation never takes longer than ``CAA_TIMEOUT_S``: what is not answered by then is
``unknown``. It runs beside the feed, never on its path (see
:meth:`certwatch.pipeline.alerter.Alerter.run_caa_checks`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn

import trio

from certwatch.core.alerts import Alert
from certwatch.core.caa import CaaFinding, CaaVerdict, Lookup, finding_for, worst
from certwatch.core.cas import CAIdentity
from certwatch.errors import StoreError
from certwatch.store import CaaStore

__all__ = ["MAX_REFRESH_NAMES", "CaaChecker"]

log = logging.getLogger(__name__)

MAX_REFRESH_NAMES = 2000
"""Names looked up again every ``CAA_REFRESH_S``: the watch entries first, then the
inventory's names, newest first."""
NEW_ENTRIES_BUFFER = 256
"""Watch entries added and waiting for their first lookup (more are looked up at the next
refresh)."""
HISTORY_RETENTION_S = 30 * 86400.0
"""RRsets not seen for this long are forgotten (cleanup)."""
REWRITE_AFTER_S = 60.0
"""An RRset seen again, unchanged, is written to the history at most this often: a
decision reads its first sighting from memory rather than wait for a database write."""
REMEMBERED_OWNERS = 10_000
"""Owners whose last RRset is remembered in memory (the history itself is in the store)."""


class CaaChecker:
    """Evaluates CAA for decisions and keeps the history of what it saw."""

    def __init__(
        self,
        relevant: Callable[[str], Awaitable[Lookup | None]],
        store: CaaStore,
        *,
        timeout_s: float,
        stable_s: float,
        refresh_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._relevant = relevant
        """The relevant RRset of a name (:meth:`certwatch.sources.caa.CaaResolver.relevant`)."""
        self._store = store
        self._timeout_s = timeout_s
        self._stable_s = stable_s
        self._refresh_s = refresh_s
        self._clock = clock
        self._new, self._new_receive = trio.open_memory_channel[str](NEW_ENTRIES_BUFFER)
        self._seen: dict[str, tuple[tuple[str, ...], float, float]] = {}
        """owner -> (its RRset, first seen, when written): what this process last wrote."""

    # --- decisions ----------------------------------------------------------------------------

    async def check(self, alert: Alert, ca: CAIdentity | None) -> CaaFinding:
        """What CAA says of ``alert``'s issuance by ``ca`` (``None``: unknown), within
        ``CAA_TIMEOUT_S``: the most severe verdict of its matched SANs."""
        identifiers = None if ca is None else ca.caa_domains
        issued_at = alert.cert.log_timestamp or alert.created_at
        found: dict[str, CaaFinding] = {}

        async def one(san: str) -> None:
            lookup = await self._relevant(san)
            first_seen = await self._observe(lookup)
            if lookup is not None and lookup.owner is not None and first_seen is None:
                lookup = None  # its history could not be read: stability unknown
            found[san] = finding_for(
                san, lookup, identifiers,
                first_seen=first_seen, issued_at=issued_at, stable_s=self._stable_s,
            )  # fmt: skip

        with trio.move_on_after(self._timeout_s):
            async with trio.open_nursery() as nursery:
                for san in alert.matched_sans:
                    nursery.start_soon(one, san)
        findings = [
            found.get(san, CaaFinding(CaaVerdict.UNKNOWN, san)) for san in alert.matched_sans
        ]
        return worst(findings) or CaaFinding(CaaVerdict.UNKNOWN, "")

    async def _observe(self, lookup: Lookup | None) -> float | None:
        """Note ``lookup``'s RRset in the history; when it was first seen, unchanged."""
        if lookup is None or lookup.owner is None:
            return None
        owner, texts, now = lookup.owner, lookup.texts(), self._clock()
        remembered = self._seen.get(owner)
        if (
            remembered is not None
            and remembered[0] == texts
            and now - remembered[2] < REWRITE_AFTER_S
        ):
            return remembered[1]
        try:
            first_seen = await self._store.observe_caa(owner, texts, now)
        except StoreError as e:
            log.warning("CAA history of %s not updated: %s", owner, e)
            return None
        if len(self._seen) >= REMEMBERED_OWNERS:
            self._seen.clear()
        self._seen[owner] = (texts, first_seen, now)
        return first_seen

    # --- the history --------------------------------------------------------------------------

    def soon(self, name: str) -> None:
        """Look ``name`` up soon (a watch entry just added); dropped when many wait."""
        try:
            self._new.send_nowait(name)
        except trio.WouldBlock:
            log.info("CAA of %s is looked up at the next refresh (%d entries waiting)",
                     name, NEW_ENTRIES_BUFFER)  # fmt: skip

    async def look(self, name: str) -> None:
        """Look ``name`` up and note what it has, within ``CAA_TIMEOUT_S``."""
        with trio.move_on_after(self._timeout_s):
            await self._observe(await self._relevant(name))

    async def run_new_entries(self) -> NoReturn:
        """Look up each watch entry as it is added (every replica: the one that added it)."""
        async with trio.open_nursery() as nursery:
            async for name in self._new_receive:
                nursery.start_soon(self.look, name)
        raise AssertionError("the channel of new entries never closes")

    async def refresh(self, names: Callable[[], Awaitable[Iterable[str]]]) -> NoReturn:
        """Every ``CAA_REFRESH_S``, look up every name of ``names()`` (at most
        :data:`MAX_REFRESH_NAMES`), spread evenly over the interval (the leader's duty)."""
        while True:
            started = trio.current_time()
            try:
                wanted = list(dict.fromkeys(n.removeprefix("*.") for n in await names()))
            except StoreError as e:
                log.warning("CAA refresh skipped, the database is unavailable: %s", e)
                wanted = []
            wanted = wanted[:MAX_REFRESH_NAMES]
            gap = self._refresh_s / len(wanted) if wanted else math.inf
            async with trio.open_nursery() as nursery:
                for name in wanted:
                    nursery.start_soon(self.look, name)
                    await trio.sleep(gap)
            await trio.sleep_until(started + self._refresh_s)
