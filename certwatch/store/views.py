"""The in-memory views the hot path reads, changed only together with the database.

The watch index and the inventory answer every feed message from memory, and the rules
every decision; the database holds the same rows. Every change to them goes through
:class:`Views`: the row is written and committed first, then the view follows, under one
lock held by the views themselves and shielded from cancellation. So a cancelled request
never leaves one changed without the other, two changes never interleave, and no caller
can bring the wrong lock.

Changes made elsewhere (another replica, another system writing the tables, an operator's
shell) reach the views through the database's log of changes (written by triggers):
:meth:`Views.follow` reads it as soon as PostgreSQL notifies a change, and at least every
second, so a change anywhere is in every replica's views within 2 s. Every hour, and after
an outage too long for the log, the views are read again whole. On a shared database a
decision waits for views that recent (:meth:`Views.wait_fresh`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

from certwatch.core.alerts import Alert
from certwatch.core.lookalikes import Brand, BrandIndex
from certwatch.core.names import WatchIndex
from certwatch.core.policy import Rule, Rules
from certwatch.core.recognition import Inventory, InventoryCert, KnownKey
from certwatch.errors import StoreError
from certwatch.metrics import StoreMetrics
from certwatch.retry import Retrying
from certwatch.settings import PRODUCTION_TIMING, Timing
from certwatch.store import PRUNE_BATCH, Acknowledged, Change, ViewsStore
from certwatch.store.rows import cert_rows

__all__ = ["CHANGES_RETENTION_S", "FOLLOW_INTERVAL_S", "MAX_VIEW_AGE_S", "Views"]

log = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 1.0
"""The change log is read at least this often (PostgreSQL's notifications: at once)."""
MAX_VIEW_AGE_S = 2.0
"""On a shared database, a decision waits for views read from the database this recently."""
RELOAD_S = 3600.0
"""The views are read again whole this often, whatever the change log says."""
CHANGES_RETENTION_S = 7 * 86400.0
"""Cleanup keeps this much of the change log; a replica away longer reads the views whole."""


class Views:
    """The watch index, the inventory (certificates and keys) and the rules, kept equal to
    the store."""

    def __init__(
        self,
        store: ViewsStore,
        index: WatchIndex,
        inventory: Inventory,
        rules: Rules | None = None,
        brands: BrandIndex | None = None,
        *,
        cursor: int = 0,
        timing: Timing = PRODUCTION_TIMING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._timing = timing
        self._lock = trio.Lock()
        self.index = index
        """Read it freely; change it only through these methods."""
        self.inventory = inventory
        """Read it freely; change it only through these methods."""
        self.rules = rules if rules is not None else Rules()
        """Read them freely; change them only through these methods."""
        self.brands = brands if brands is not None else BrandIndex()
        """Read them freely; change them only through these methods."""
        self._clock = clock
        self.cursor = cursor
        """The last change in the database's log that the views include."""
        self.synced_at = clock()
        """When the views were last brought up to the database."""
        self._synced = trio.Event()

    @classmethod
    async def load(
        cls,
        store: ViewsStore,
        *,
        timing: Timing = PRODUCTION_TIMING,
        clock: Callable[[], float] = time.time,
    ) -> Views:
        """The views of what ``store`` holds."""
        cursor = await store.last_change()  # first: later changes are read again, harmlessly
        index, inventory, rules, brands = await _read_all(store)
        return cls(
            store, index, inventory, rules, brands, cursor=cursor, timing=timing, clock=clock
        )

    @asynccontextmanager
    async def _change(self) -> AsyncIterator[None]:
        with trio.CancelScope(shield=True):
            async with self._lock:
                yield

    # --- watch entries ----------------------------------------------------------------------

    async def add_domain(self, value: str, note: str, now: float) -> bool:
        """Watch a normalised entry (or update its note); ``True`` when it is new."""
        async with self._change():
            created = await self._store.upsert_domain(value, note, now)
            self.index.add(value)
        return created

    async def delete_domain(self, value: str) -> bool:
        async with self._change():
            deleted = await self._store.delete_domain(value)
            if deleted:
                self.index.discard(value)
        return deleted

    # --- inventory --------------------------------------------------------------------------

    async def upsert_cert(self, cert: InventoryCert) -> InventoryCert | None:
        """Add or replace an inventory row; the row it replaced, if any."""
        async with self._change():
            old = await self._store.upsert_cert(cert)
            if old is not None:
                self.inventory.remove_cert(old)
            self.inventory.add_cert(cert)
        return old

    async def delete_cert(self, sha1: str) -> InventoryCert | None:
        async with self._change():
            old = await self._store.delete_cert(sha1)
            if old is not None:
                self.inventory.remove_cert(old)
        return old

    async def prune_certs(self, expired_before: float) -> int:
        """Remove every row with ``not_after < expired_before``, a short batch at a time
        (the event loop runs between batches); how many."""
        removed = 0
        while True:
            async with self._change():
                batch = await self._store.prune_certs(expired_before)
                for cert in batch:
                    self.inventory.remove_cert(cert)
            removed += len(batch)
            if len(batch) < PRUNE_BATCH:
                return removed
            await trio.lowlevel.checkpoint()

    # --- registered keys --------------------------------------------------------------------

    async def upsert_key(self, key: KnownKey) -> bool:
        """Register a key or replace its names and note; ``True`` when it is new."""
        async with self._change():
            created = await self._store.upsert_key(key)
            self.inventory.remove_key(key.spki_sha256)
            self.inventory.add_key(key)
        return created

    async def delete_key(self, spki_sha256: str) -> bool:
        async with self._change():
            deleted = await self._store.delete_key(spki_sha256)
            if deleted:
                self.inventory.remove_key(spki_sha256)
        return deleted

    # --- rules ------------------------------------------------------------------------------

    async def add_rule(self, rule: Rule) -> Rule:
        """Store a new rule and take it into account from now on; it comes back with its id."""
        async with self._change():
            stored = await self._store.insert_rule(rule)
            self.rules.add(stored)
        return stored

    async def delete_rule(self, rule_id: int) -> bool:
        async with self._change():
            deleted = await self._store.delete_rule(rule_id)
            self.rules.discard(rule_id)
        return deleted

    # --- brands -----------------------------------------------------------------------------

    async def upsert_brand(self, brand: Brand) -> tuple[Brand, bool]:
        """Add a brand or replace its note and allow list: the brand as stored, and
        ``True`` when it is new."""
        async with self._change():
            stored, created = await self._store.upsert_brand(brand)
            await self._rebrand(put=[stored])
        return stored, created

    async def delete_brand(self, domain: str) -> bool:
        async with self._change():
            deleted = await self._store.delete_brand(domain)
            if self.brands.get(domain) is not None:
                await self._rebrand(remove=[domain])
        return deleted

    async def _rebrand(self, *, put: Sequence[Brand] = (), remove: Sequence[str] = ()) -> None:
        """Take a change of brands in: the index is rebuilt in a worker thread (about 80 ms
        with a hundred brands, which would hold the feed and every alert on the event
        loop), then installed at once. Called with the views' lock held."""
        rebuilt = functools.partial(self.brands.rebuilt, put=put, remove=remove)
        self.brands.install(await trio.to_thread.run_sync(rebuilt))

    # --- acknowledgements -------------------------------------------------------------------

    async def acknowledge(
        self,
        alert_id: int,
        outcome: Callable[[Alert, Sequence[Rule]], Alert],
        rules: Sequence[Rule],
        key: KnownKey | None,
    ) -> Acknowledged | None:
        """Store an acknowledgement (see :meth:`ViewsStore.acknowledge`), and take the rules
        and the key it created into the views."""
        async with self._change():
            done = await self._store.acknowledge(alert_id, outcome, rules, key)
            if done is not None:
                for rule in done.rules:
                    self.rules.add(rule)
                if done.key is not None:
                    self.inventory.remove_key(done.key.spki_sha256)
                    self.inventory.add_key(done.key)
        return done

    # --- changes made elsewhere -------------------------------------------------------------

    async def wait_fresh(self) -> None:
        """Return once the views are at most :data:`MAX_VIEW_AGE_S` old (at once on a
        database no other process writes)."""
        if not self._store.shared:
            return
        while self._clock() - self.synced_at > MAX_VIEW_AGE_S:
            await self._synced.wait()

    async def follow(
        self,
        metrics: StoreMetrics,
        on_change: Callable[[], Awaitable[None]] | None = None,
        *,
        interval_s: float = FOLLOW_INTERVAL_S,
    ) -> NoReturn:
        """Keep the views equal to the tables, whoever changes them; ``on_change`` after
        changes made elsewhere were applied (the alerter re-checks held alerts)."""
        retry = Retrying(interval_s, self._timing.store_retry_max_s)
        reloaded_at = self._clock()
        while True:
            try:
                now = self._clock()
                if now - self.synced_at > CHANGES_RETENTION_S / 2 or now - reloaded_at > RELOAD_S:
                    await self.reload()
                    reloaded_at = now
                    changed = True
                else:
                    changed = await self._catch_up(metrics)
                self.synced_at = now
                self._synced.set()
                self._synced = trio.Event()
                retry.reset()
                if changed and on_change is not None:
                    await on_change()
                await self._store.wait_for_changes(interval_s)
            except StoreError as e:
                wait = retry.failed() or 0.0  # (no period: never None)
                log.warning("views not refreshed from the database (retrying in %.1f s): %s",
                            wait, e)  # fmt: skip
                await trio.sleep(wait)

    async def _catch_up(self, metrics: StoreMetrics) -> bool:
        """Apply the changes logged since :attr:`cursor`; whether there were any."""
        any_change = False
        while changes := await self._store.changes_since(self.cursor):
            async with self._lock:  # not shielded: a cancelled read leaves the views as they were
                await self._apply(changes)
                self.cursor = changes[-1].id
            now = self._clock()
            for change in changes:
                metrics.views_lag.observe(max(0.0, now - change.at))
            any_change = True
        return any_change

    async def _apply(self, changes: Sequence[Change]) -> None:
        """Bring the rows these changes touched into the views, as the tables hold them now."""
        domains = sorted({c.key for c in changes if c.kind == "domain"})
        if domains:
            present = set(await self._store.domains_in(domains))
            for value in domains:
                if value in present:
                    self.index.add(value)
                else:
                    self.index.discard(value)
        certs = [c for c in changes if c.kind == "cert"]
        if certs:
            rows = await self._store.certs_in(sorted({c.key for c in certs}))
            for change in certs:
                if change.old is not None:
                    self.inventory.remove_cert(cert_rows().load(change.old))
            for row in rows:
                self.inventory.remove_cert(row)
                self.inventory.add_cert(row)
        keys = sorted({c.key for c in changes if c.kind == "key"})
        if keys:
            found = await self._store.keys_in(keys)
            for spki in keys:
                self.inventory.remove_key(spki)
            for key in found:
                self.inventory.add_key(key)
        rules = sorted({int(c.key) for c in changes if c.kind == "rule"})
        if rules:
            stored = await self._store.rules_in(rules)
            for rule_id in rules:
                self.rules.discard(rule_id)
            for rule in stored:
                self.rules.add(rule)
        changed_brands = sorted({c.key for c in changes if c.kind == "brand"})
        if changed_brands:
            current = await self._store.brands_in(changed_brands)
            await self._rebrand(put=current, remove=changed_brands)

    async def reload(self) -> None:
        """Read the views whole again, and take them in place."""
        cursor = await self._store.last_change()
        index, inventory, rules, brands = await _read_all(self._store)
        async with self._lock:
            current = set(self.index)
            wanted = set(index)
            for value in current - wanted:
                self.index.discard(value)
            for value in wanted - current:
                self.index.add(value)
            self.inventory.replace(inventory)
            for rule in list(self.rules):
                assert rule.id is not None
                self.rules.discard(rule.id)
            for rule in rules:
                self.rules.add(rule)
            self.brands.replace(brands)
            self.cursor = max(self.cursor, cursor)
        log.info("views read again whole: %d watch entries, %d inventory certs, %d keys, "
                 "%d rules", len(self.index), len(self.inventory), self.inventory.key_count,
                 len(self.rules))  # fmt: skip


async def _read_all(store: ViewsStore) -> tuple[WatchIndex, Inventory, Rules, BrandIndex]:
    """Everything the views hold, from ``store`` (the inventory read in batches: 100,000
    rows read whole would churn far more memory than the views keep)."""
    index = WatchIndex(await store.domain_values())
    inventory = Inventory(keys=await store.list_keys())
    async for batch in store.cert_batches():
        inventory.add_certs(batch)
    rules = Rules(await store.list_rules())
    brands = await trio.to_thread.run_sync(BrandIndex, await store.list_brands())
    return index, inventory, rules, brands
