"""The in-memory views the hot path reads, changed only together with the database.

The watch index and the inventory answer every feed message from memory; the database
holds the same rows. Every change to them goes through :class:`Views`: the row is written
and committed first, then the view follows, under one lock held by the views themselves
and shielded from cancellation. So a cancelled request never leaves one changed without
the other, two changes never interleave, and no caller can bring the wrong lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from certwatch.core.names import WatchIndex
from certwatch.core.recognition import Inventory, InventoryCert, KnownKey
from certwatch.store import PRUNE_BATCH, Store

__all__ = ["Views"]


class Views:
    """The watch index and the inventory (certificates and keys), kept equal to the store."""

    def __init__(self, store: Store, index: WatchIndex, inventory: Inventory) -> None:
        self._store = store
        self._lock = trio.Lock()
        self.index = index
        """Read it freely; change it only through these methods."""
        self.inventory = inventory
        """Read it freely; change it only through these methods."""

    @classmethod
    async def load(cls, store: Store) -> Views:
        """The views of what ``store`` holds (the inventory read in batches: 100,000 rows
        read whole would churn far more memory than the views keep)."""
        index = WatchIndex(await store.domain_values())
        inventory = Inventory(keys=await store.list_keys())
        async for batch in store.cert_batches():
            inventory.add_certs(batch)
        return cls(store, index, inventory)

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
