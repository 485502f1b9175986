"""What certwatch needs of its database: the :class:`Store` protocol.

Every method is one transaction: committed when it returns, nothing changed when it
raises. A transient fault (a lock held elsewhere, a read-only or full disk, a lost
connection) raises :class:`~certwatch.errors.StoreUnavailable`, which callers retry or
answer with a 503; :class:`~certwatch.errors.StoreError` is anything worse.

Each part of certwatch is typed against the small protocol of what it uses
(:class:`ViewsStore`, :class:`AlerterStore`, :class:`OutboxStore`, ...); :class:`Store` is
all of them. :mod:`.queries` holds the queries both implementations run, as plain
functions by table: :mod:`.sqlite` on one SQLite file (one process), :mod:`.postgres` on a
PostgreSQL database shared by several replicas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from certwatch.core.alerts import Alert, Severity, Status
from certwatch.core.ctlog import TreeHead
from certwatch.core.lookalikes import Brand
from certwatch.core.policy import Rule
from certwatch.core.recognition import InventoryCert, KnownKey

__all__ = [
    "PRUNE_BATCH",
    "Acknowledged",
    "AlerterStore",
    "ApiStore",
    "CaaStore",
    "Change",
    "Claim",
    "CleanupStore",
    "Domain",
    "LeadershipStore",
    "LogEvidence",
    "OutboxStats",
    "OutboxStore",
    "PoolUsage",
    "PositionsStore",
    "SavedPosition",
    "Store",
    "ViewsStore",
]

PRUNE_BATCH = 500
"""The most rows one ``prune_*`` call deletes: cleanup stays a series of short transactions."""


@attrs.frozen
class Domain:
    value: str
    note: str
    added_at: float


@attrs.frozen
class OutboxStats:
    pending: int
    failed: int
    oldest_pending_at: float | None


@attrs.frozen
class Claim:
    """What claiming one alert for delivery came to: the alert, claimed; or nothing, because
    another replica holds it (``lost``) or because it is not pending any more."""

    alert: Alert | None
    lost: bool = False


@attrs.frozen
class SavedPosition:
    """How far one CT log has been processed (see :mod:`certwatch.core.coverage`)."""

    log: str
    """The log as certstream names it (``source.url``, normalised)."""
    kind: str
    position: int | None
    """Everything up to here was processed (``None``: not even the first entry)."""
    high: int
    """Everything up to here was processed or lies in ``gaps``."""
    gaps: tuple[tuple[int, int], ...]
    """Ranges (first, last) not processed yet."""
    updated_at: float
    head: TreeHead | None = None
    """The newest tree head of the log that verified with its listed key: the next one
    must be consistent with it (a log that forks or shrinks is caught across restarts)."""


@attrs.frozen
class LogEvidence:
    """Proof that a CT log misbehaved (two tree heads it signed that cannot both be true),
    kept for the operator and for the log's operator."""

    log: str
    kind: str
    """``inconsistent``."""
    detail: dict[str, Any]
    """Both tree heads (size, timestamp, root hash, signature, base64) and the proof."""
    found_at: float
    id: int | None = None


@attrs.frozen
class Change:
    """One change to a table the views mirror (``domains``, ``certs``, ``keys``, ``rules``,
    ``brands``), written by
    the database itself (a trigger), whoever made it: this replica, another one, or another
    system writing the tables."""

    id: int
    kind: str
    """``domain``, ``cert``, ``key``, ``rule`` or ``brand``."""
    key: str
    """The row's key (the value, the SHA-1, the SPKI SHA-256, the rule's id)."""
    old: dict[str, Any] | None
    """The row before the change (columns as stored), ``None`` for an insert."""
    at: float
    """When it was made, by the database's clock."""


@attrs.frozen
class Acknowledged:
    """What an acknowledgement stored."""

    alert: Alert
    """The verdict on the held alert, or the ``resolved`` follow-up of a sent one."""
    rules: tuple[Rule, ...]
    """The ``expect`` rules it created (``issuer``)."""
    key: KnownKey | None
    """The key it registered (``key``), with every name it is registered for."""


@attrs.frozen
class PoolUsage:
    """The connections for transactions (``certwatch_db_connections``)."""

    size: int
    """The pool's size (1 on SQLite)."""
    in_use: int
    waiting: int
    """Transactions waiting for a connection."""


# --- what each part of certwatch needs of the database ----------------------------------------


class ViewsStore(Protocol):
    """What :mod:`certwatch.store.views` needs: the watch list, the inventory and the keys,
    and the log of changes made to them elsewhere."""

    shared: bool
    """Other certwatch processes (replicas) use this database too."""

    async def domain_values(self) -> list[str]: ...
    async def upsert_domain(self, value: str, note: str, now: float) -> bool:
        """Add an entry or update its note; ``True`` when it is new."""
        ...

    async def delete_domain(self, value: str) -> bool: ...
    async def domains_in(self, values: Sequence[str]) -> list[str]:
        """Which of ``values`` are watched entries."""
        ...

    def cert_batches(self, size: int = 5000) -> AsyncIterator[list[InventoryCert]]:
        """Every inventory row, a batch at a time, with the columns the views use."""
        ...

    async def upsert_cert(self, cert: InventoryCert) -> InventoryCert | None:
        """Insert or replace a row keyed on its SHA-1; the row it replaced."""
        ...

    async def delete_cert(self, sha1: str) -> InventoryCert | None: ...
    async def certs_in(self, sha1s: Sequence[str]) -> list[InventoryCert]:
        """The inventory rows of these fingerprints that exist."""
        ...

    async def prune_certs(self, expired_before: float) -> list[InventoryCert]:
        """Delete at most :data:`PRUNE_BATCH` rows with ``not_after < expired_before``."""
        ...

    async def list_keys(self) -> list[KnownKey]: ...
    async def upsert_key(self, key: KnownKey) -> bool:
        """Register a key or replace its names and note; ``True`` when it is new."""
        ...

    async def delete_key(self, spki_sha256: str) -> bool: ...
    async def keys_in(self, spki_sha256s: Sequence[str]) -> list[KnownKey]: ...
    async def list_rules(self) -> list[Rule]: ...
    async def insert_rule(self, rule: Rule) -> Rule:
        """Store a new rule; it comes back with its id."""
        ...

    async def delete_rule(self, rule_id: int) -> bool: ...
    async def rules_in(self, ids: Sequence[int]) -> list[Rule]: ...
    async def list_brands(self) -> list[Brand]: ...
    async def upsert_brand(self, brand: Brand) -> tuple[Brand, bool]:
        """Add a brand or replace its note and allow list: the brand as stored (added when
        it first was), and ``True`` when it is new."""
        ...

    async def delete_brand(self, domain: str) -> bool: ...
    async def brands_in(self, domains: Sequence[str]) -> list[Brand]: ...
    async def acknowledge(
        self,
        alert_id: int,
        outcome: Callable[[Alert, Sequence[Rule]], Alert],
        rules: Sequence[Rule],
        key: KnownKey | None,
    ) -> Acknowledged | None:
        """An analyst's acknowledgement of an alert, atomically: the rules and the key it
        creates, the acknowledgement on the alert, and what ``outcome`` decides of it (from
        the alert as stored, and the stored rules). ``None`` when there is no such alert;
        :class:`~certwatch.errors.Conflict` (nothing stored) when it cannot be decided."""
        ...

    async def changes_since(self, cursor: int, limit: int = 1000) -> list[Change]:
        """Changes to the views' tables after change ``cursor``, in order."""
        ...

    async def last_change(self) -> int:
        """The id of the newest change (where a fresh view starts following)."""
        ...

    async def wait_for_changes(self, at_most_s: float) -> None:
        """Return when a change may have been made (a notification), or after ``at_most_s``."""
        ...


class AlerterStore(Protocol):
    """What :mod:`certwatch.pipeline.alerter` needs: alerts and their decisions."""

    shared: bool

    async def insert_alert(self, alert: Alert) -> Alert:
        """Store a new alert; it comes back with its id. An issuance has one alert in the
        database: if another replica stored one for it first, that alert comes back instead
        (its ``event_id`` is not this one's)."""
        ...

    async def get_alert(self, alert_id: int) -> Alert | None: ...
    async def decide(self, verdict: Alert) -> Alert | None:
        """Store the verdict on a held alert; ``None`` when it was not held any more."""
        ...

    async def resolve(self, follow_up: Alert) -> Alert | None:
        """Mark the follow-up's parent resolved and store the follow-up, atomically;
        ``None`` when the parent was already resolved."""
        ...

    async def held_alerts(self) -> list[Alert]: ...
    async def unresolved_suspicious(self, since: float) -> list[Alert]:
        """Suspicious alerts stored at or after ``since`` that nothing resolved yet."""
        ...

    async def recent_issuances(self, since: float) -> list[tuple[str, int, float]]:
        """(issuance, alert id, created_at) of every alert stored at or after ``since``."""
        ...


class OutboxStore(Protocol):
    """What :mod:`certwatch.delivery.webhook` needs: the outbox."""

    async def claim_due(self, now: float, limit: int, *, claimer: str, until: float) -> list[Alert]:
        """Claim pending alerts that are due and unclaimed (or whose claim expired) for
        ``claimer`` until ``until``, oldest first: one replica delivers an alert at a time."""
        ...

    async def claim(self, alert_id: int, now: float, *, claimer: str, until: float) -> Claim:
        """Claim one pending alert, unless another replica holds an unexpired claim on it."""
        ...

    async def next_due_at(self) -> float | None:
        """When the next pending alert can be claimed."""
        ...

    async def record_attempt(
        self,
        alert_id: int,
        *,
        status: Status,
        error: str | None,
        now: float,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record one delivery attempt and the alert's next ``status`` (``pending`` again
        until ``next_attempt_at``, ``delivered`` or ``failed``), and release its claim."""
        ...

    async def outbox_stats(self) -> OutboxStats: ...


class LeadershipStore(Protocol):
    """What :mod:`certwatch.store.leadership` needs: one leader among replicas (the
    hold timer, cleanup and back-fill run on it)."""

    shared: bool

    async def try_lead(self) -> bool:
        """Take the leader role if no live replica holds it; whether this one does now."""
        ...

    async def still_leading(self) -> bool:
        """Whether this replica still holds the role (its session is alive)."""
        ...

    async def stop_leading(self) -> None: ...


class PositionsStore(Protocol):
    """What :mod:`certwatch.pipeline.coverage` and back-fill need: CT log positions and the
    evidence of logs that lied."""

    async def log_positions(self) -> list[SavedPosition]: ...
    async def save_log_positions(self, positions: Iterable[SavedPosition]) -> None:
        """Save (insert or replace) the positions of some logs, in one transaction."""
        ...

    async def record_log_evidence(self, evidence: LogEvidence) -> None: ...


class CaaStore(Protocol):
    """What :mod:`certwatch.pipeline.caa` needs: the history of CAA RRsets."""

    async def observe_caa(self, owner: str, records: Sequence[str], now: float) -> float:
        """Note ``owner``'s CAA RRset ``records`` now; when it was first seen, unchanged
        since (a set that changed and came back counts from its return)."""
        ...

    async def inventory_names(self, limit: int) -> list[str]:
        """Up to ``limit`` distinct names on the inventory's certificates (``*.`` dropped)."""
        ...


class CleanupStore(Protocol):
    """What :mod:`certwatch.pipeline.cleanup` needs besides the views."""

    async def prune_changes(self, before: float) -> int:
        """Delete at most :data:`PRUNE_BATCH` changes made before ``before``."""
        ...

    async def prune_alerts(self, created_before: float) -> int:
        """Delete at most :data:`PRUNE_BATCH` settled alerts stored before ``created_before``
        (never one that has not reached the receiver)."""
        ...

    async def prune_caa(self, last_seen_before: float) -> int:
        """Delete at most :data:`PRUNE_BATCH` CAA RRsets last seen before the time given."""
        ...


class ApiStore(Protocol):
    """What the HTTP API reads (its changes go through the views)."""

    async def list_domains(self) -> list[Domain]: ...
    async def list_certs(self, limit: int, offset: int) -> list[InventoryCert]: ...
    async def list_alerts(
        self,
        *,
        since: float | None = None,
        limit: int = 100,
        severity: Severity | None = None,
        status: Status | None = None,
        delivered: bool | None = None,
    ) -> list[Alert]:
        """Newest first, filtered."""
        ...

    async def requeue(self, alert_id: int | None, now: float) -> int:
        """Queue one alert (or, with ``None``, every failed one) for delivery again."""
        ...

    async def list_log_evidence(self, limit: int = 100) -> list[LogEvidence]:
        """Newest first."""
        ...


class Store(
    ViewsStore,
    AlerterStore,
    OutboxStore,
    LeadershipStore,
    PositionsStore,
    CaaStore,
    CleanupStore,
    ApiStore,
    Protocol,
):
    """The whole database (see the module docstring): every part's protocol, and what the
    supervisor and health checks need."""

    backend: str
    """``sqlite`` or ``postgresql``."""

    def close(self) -> None: ...
    def usage(self) -> PoolUsage: ...
    async def ping(self) -> float:
        """One round trip to the database, in seconds."""
        ...
