"""Every store method, as one call of a query (:mod:`.queries`) in one transaction.

:class:`SQLStore` is what both backends share: each method runs one query function of
:mod:`.queries` (grouped by table) as one transaction through the backend's ``_run`` (a
worker thread, with a limiter the size of the connection pool). The backends (:mod:`.sqlite`,
:mod:`.postgres`) own the connections and say where their SQL differs (a :class:`Dialect`).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

import trio

from certwatch.core.alerts import Alert, Severity, Status
from certwatch.core.lookalikes import Brand
from certwatch.core.policy import Rule
from certwatch.core.recognition import InventoryCert, KnownKey
from certwatch.store.interface import (
    Acknowledged,
    Change,
    Claim,
    Domain,
    LogEvidence,
    OutboxStats,
    PoolUsage,
    SavedPosition,
)
from certwatch.store.queries import (
    Dialect,
    alerts,
    brands,
    caa,
    changes,
    domains,
    inventory,
    positions,
    rules,
)
from certwatch.store.queries import transfer as rows

__all__ = ["SQLStore"]

T = TypeVar("T")


class SQLStore(abc.ABC):
    """Every :class:`~certwatch.store.interface.Store` method but the backend's own
    (connections, roles among replicas). A backend provides ``_run`` and ``dialect``."""

    backend: str
    """``sqlite`` or ``postgresql``."""
    shared = False
    """Other certwatch processes may change this database (replicas)."""
    dialect: Dialect
    size: int
    """Connections the backend uses at most (transactions at once)."""
    _limiter: trio.CapacityLimiter

    def usage(self) -> PoolUsage:
        stats = self._limiter.statistics()
        return PoolUsage(self.size, stats.borrowed_tokens, stats.tasks_waiting)

    @abc.abstractmethod
    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """``fn(connection, *args)`` as one transaction, in a worker thread."""

    # --- watch entries ----------------------------------------------------------------------

    async def list_domains(self) -> list[Domain]:
        return await self._run(domains.listed, write=False)

    async def domain_values(self) -> list[str]:
        return await self._run(domains.values, write=False)

    async def domains_in(self, values: Sequence[str]) -> list[str]:
        return await self._run(domains.present, self.dialect, values, write=False)

    async def upsert_domain(self, value: str, note: str, now: float) -> bool:
        return await self._run(domains.upsert, value, note, now)

    async def delete_domain(self, value: str) -> bool:
        return await self._run(domains.delete, value)

    # --- inventory and keys -----------------------------------------------------------------

    async def upsert_cert(self, cert: InventoryCert) -> InventoryCert | None:
        return await self._run(inventory.upsert_cert, cert)

    async def list_certs(self, limit: int, offset: int) -> list[InventoryCert]:
        return await self._run(inventory.list_certs, limit, offset, write=False)

    async def certs_in(self, sha1s: Sequence[str]) -> list[InventoryCert]:
        return await self._run(inventory.certs_in, self.dialect, sha1s, write=False)

    async def cert_batches(self, size: int = 5000) -> AsyncIterator[list[InventoryCert]]:
        """Every row, a batch at a time, with only the columns the in-memory index uses:
        reading 100,000 rows whole would churn far more memory than the index keeps."""
        after = ""
        while batch := await self._run(inventory.cert_batch, after, size, write=False):
            yield batch
            after = batch[-1].fingerprint_sha1

    async def delete_cert(self, sha1: str) -> InventoryCert | None:
        return await self._run(inventory.delete_cert, sha1)

    async def prune_certs(self, expired_before: float) -> list[InventoryCert]:
        return await self._run(inventory.prune_certs, expired_before)

    async def upsert_key(self, key: KnownKey) -> bool:
        return await self._run(inventory.upsert_key, key)

    async def list_keys(self) -> list[KnownKey]:
        return await self._run(inventory.list_keys, write=False)

    async def keys_in(self, spki_sha256s: Sequence[str]) -> list[KnownKey]:
        return await self._run(inventory.keys_in, self.dialect, spki_sha256s, write=False)

    async def delete_key(self, spki_sha256: str) -> bool:
        return await self._run(inventory.delete_key, spki_sha256)

    # --- what changed in the views' tables (other replicas, other writers) ------------------

    async def changes_since(self, cursor: int, limit: int = 1000) -> list[Change]:
        return await self._run(changes.since, cursor, limit, write=False)

    async def last_change(self) -> int:
        return await self._run(changes.last, write=False)

    async def prune_changes(self, before: float) -> int:
        return await self._run(changes.prune, before)

    # --- rules ------------------------------------------------------------------------------

    async def list_rules(self) -> list[Rule]:
        return await self._run(rules.listed, write=False)

    async def insert_rule(self, rule: Rule) -> Rule:
        return await self._run(rules.insert, rule)

    async def delete_rule(self, rule_id: int) -> bool:
        return await self._run(rules.delete, rule_id)

    async def rules_in(self, ids: Sequence[int]) -> list[Rule]:
        return await self._run(rules.present, self.dialect, ids, write=False)

    async def acknowledge(
        self,
        alert_id: int,
        outcome: Callable[[Alert, Sequence[Rule]], Alert],
        new_rules: Sequence[Rule],
        key: KnownKey | None,
    ) -> Acknowledged | None:
        return await self._run(alerts.acknowledge, alert_id, outcome, new_rules, key)

    # --- brands -----------------------------------------------------------------------------

    async def list_brands(self) -> list[Brand]:
        return await self._run(brands.listed, write=False)

    async def upsert_brand(self, brand: Brand) -> tuple[Brand, bool]:
        return await self._run(brands.upsert_brand, brand)

    async def delete_brand(self, domain: str) -> bool:
        return await self._run(brands.delete, domain)

    async def brands_in(self, domains: Sequence[str]) -> list[Brand]:
        return await self._run(brands.present, self.dialect, domains, write=False)

    # --- CAA --------------------------------------------------------------------------------

    async def observe_caa(self, owner: str, records: Sequence[str], now: float) -> float:
        return await self._run(caa.observe, owner, records, now)

    async def prune_caa(self, last_seen_before: float) -> int:
        return await self._run(caa.prune, last_seen_before)

    async def inventory_names(self, limit: int) -> list[str]:
        return await self._run(caa.inventory_names, limit, write=False)

    # --- alerts -----------------------------------------------------------------------------

    async def insert_alert(self, alert: Alert) -> Alert:
        return await self._run(alerts.insert, alert)

    async def get_alert(self, alert_id: int) -> Alert | None:
        return await self._run(alerts.get, alert_id, write=False)

    async def decide(self, verdict: Alert) -> Alert | None:
        return await self._run(alerts.decide, verdict)

    async def resolve(self, follow_up: Alert) -> Alert | None:
        return await self._run(alerts.resolve, follow_up)

    async def held_alerts(self) -> list[Alert]:
        return await self._run(alerts.held, write=False)

    async def unresolved_suspicious(self, since: float) -> list[Alert]:
        return await self._run(alerts.unresolved_suspicious, since, write=False)

    async def recent_issuances(self, since: float) -> list[tuple[str, int, float]]:
        return await self._run(alerts.recent_issuances, since, write=False)

    async def list_alerts(
        self,
        *,
        since: float | None = None,
        limit: int = 100,
        severity: Severity | None = None,
        status: Status | None = None,
        delivered: bool | None = None,
    ) -> list[Alert]:
        return await self._run(
            alerts.listed, since, limit, severity, status, delivered, write=False
        )

    async def requeue(self, alert_id: int | None, now: float) -> int:
        return await self._run(alerts.requeue, alert_id, now)

    async def prune_alerts(self, created_before: float) -> int:
        return await self._run(alerts.prune, created_before)

    # --- outbox -----------------------------------------------------------------------------

    async def claim_due(self, now: float, limit: int, *, claimer: str, until: float) -> list[Alert]:
        return await self._run(alerts.claim_due, self.dialect, now, limit, claimer, until)

    async def claim(self, alert_id: int, now: float, *, claimer: str, until: float) -> Claim:
        return await self._run(alerts.claim, alert_id, now, claimer, until)

    async def next_due_at(self) -> float | None:
        return await self._run(alerts.next_due_at, write=False)

    async def record_attempt(
        self,
        alert_id: int,
        *,
        status: Status,
        error: str | None,
        now: float,
        next_attempt_at: float | None = None,
    ) -> None:
        await self._run(alerts.record_attempt, alert_id, status, error, now, next_attempt_at)

    async def outbox_stats(self) -> OutboxStats:
        return await self._run(alerts.outbox_stats, write=False)

    # --- CT log positions (back-fill) -------------------------------------------------------

    async def log_positions(self) -> list[SavedPosition]:
        return await self._run(positions.listed, write=False)

    async def save_log_positions(self, saved: Iterable[SavedPosition]) -> None:
        await self._run(positions.save, list(saved))

    async def record_log_evidence(self, evidence: LogEvidence) -> None:
        await self._run(positions.record_evidence, evidence)

    async def list_log_evidence(self, limit: int = 100) -> list[LogEvidence]:
        return await self._run(positions.evidence, limit, write=False)

    # --- moving a deployment (certwatch migrate-db) -----------------------------------------

    async def export_rows(
        self, table: str, key: str, batch: int = 1000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row of ``table`` as stored, in batches ordered by ``key``."""
        after: Any = None
        while found := await self._run(rows.export_batch, table, key, after, batch, write=False):
            yield found
            after = found[-1][key]

    async def import_rows(self, table: str, found: Sequence[dict[str, Any]]) -> int:
        """Insert ``found`` (as :meth:`export_rows` gives them) where none of their unique
        values is taken yet, in one transaction; how many were new."""
        return await self._run(rows.import_rows, table, found)
