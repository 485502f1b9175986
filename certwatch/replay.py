"""``certwatch replay FILE``: the real pipeline over a capture, printing what would alert.

The capture is certstream messages, one JSON object per line (``-`` reads stdin). Each line
goes through the same decoding and matching as the service, and the same decision
(:mod:`certwatch.core.decision`: dedupe, recognition, the grace period, follow-ups, the
rules' ladder, lookalikes of the brands), against the watch list, inventory, rules and
brands in the database, and the CA
identities the service uses; nothing is stored and nothing is sent. The
clock is the messages' own ``seen``, so a later copy of an issuance that arrives within the
grace period can still recognise it, as in the service; holds still open when the capture
ends are decided then. Every event that would be sent is printed as its webhook payload
(one JSON line); a summary goes to stderr. The inventory does not change during a replay:
a certificate registered within the grace period in real life is not simulated.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import attrs
import msgspec
import trio

from certwatch.core.alerts import Alert, Kind, Severity, Status, webhook_payload
from certwatch.core.decision import (
    Action,
    Decisions,
    Fetch,
    Policy,
    StoreAlert,
    StoreFollowUp,
    StoreVerdict,
)
from certwatch.core.lookalikes import BrandIndex
from certwatch.core.messages import SKIP_REASONS
from certwatch.core.names import WatchIndex
from certwatch.core.policy import Rules
from certwatch.core.recognition import Inventory
from certwatch.errors import StoreError
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.pipeline.matching import Matcher
from certwatch.store import SQLiteStore, Store
from certwatch.store.views import Views

__all__ = ["ReplayReport", "ReplayViews", "load_views", "replay"]


@attrs.frozen
class ReplayReport:
    messages: int
    matched: int
    severities: dict[Severity, int]
    """Alerts that would be sent, by severity (every severity, 0 when none)."""
    duplicates: int
    skipped: int
    seconds: float

    def summary(self) -> str:
        rate = self.messages / self.seconds if self.seconds else 0.0
        each = ", ".join(f"{n} {severity}" for severity, n in self.severities.items())
        return (
            f"replayed {_count(self.messages, 'message')} in {self.seconds:.2f} s "
            f"({rate:,.0f} msg/s): {self.matched} matched, {sum(self.severities.values())} "
            f"would alert ({each}), "
            f"{_count(self.duplicates, 'duplicate copy', 'duplicate copies')}, "
            f"{self.skipped} skipped as malformed or unknown"
        )


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


@attrs.frozen
class ReplayViews:
    """What a replay decides with, as the database holds it."""

    index: WatchIndex
    inventory: Inventory
    rules: Rules
    brands: BrandIndex


async def _load(db_path: Path, database_url: str | None) -> ReplayViews:
    store: Store
    if database_url is not None:
        from certwatch.store.postgres import PostgresStore

        store = await PostgresStore.open(database_url)
    else:
        store = await SQLiteStore.open(db_path)
    try:
        views = await Views.load(store)
    finally:
        store.close()
    return ReplayViews(views.index, views.inventory, views.rules, views.brands)


def load_views(db_path: Path, database_url: str | None = None) -> ReplayViews:
    """The watch list, inventory and rules of an existing database (PostgreSQL at
    ``database_url`` if given, else the SQLite file)."""
    if database_url is None and not db_path.exists():
        raise StoreError(f"no database at {str(db_path)!r} (set DB_PATH)")
    return trio.run(_load, db_path, database_url)


def replay(
    lines: Iterable[str],
    index: WatchIndex,
    inventory: Inventory,
    out: TextIO,
    *,
    grace_s: float = 0.0,
    policy: Policy | None = None,
    brands: BrandIndex | None = None,
) -> ReplayReport:
    """Run the pipeline over ``lines``; write would-be webhook payloads to ``out``."""
    metrics = Metrics()
    pipeline = Matcher(index, metrics.feed, Coverage(metrics.coverage), brands=brands)
    ids = itertools.count(1)
    decisions = Decisions(
        grace_s=grace_s, observer=True, new_event_id=lambda: f"replay-{next(ids)}", policy=policy
    )
    alerts: dict[int, Alert] = {}
    """The store, in memory: what a real one would hold, by id."""
    severities = dict.fromkeys(Severity, 0)
    counts = {"matched": 0, "duplicates": 0}
    started = time.perf_counter()
    encode = msgspec.json.encode
    now = 0.0

    def send(alert: Alert) -> None:
        """An event the service would send: counted, printed, remembered."""
        assert alert.id is not None
        alerts[alert.id] = alert
        if alert.kind is Kind.ALERT:
            severities[alert.severity or Severity.SUSPICIOUS] += 1
        # Nothing is stored: no alert has an id (the ones here are the replay's own).
        out.write(encode({**webhook_payload(alert), "alert_id": None}).decode() + "\n")

    def make(actions: list[Action]) -> None:
        """What the alerter does with the store, done to the dict."""
        for action in actions:
            match action:
                case StoreAlert(alert):
                    stored = attrs.evolve(alert, id=next(ids))
                    alerts[stored.id or 0] = stored
                    make(decisions.stored(alert, stored, inventory=inventory, now=now, hold=True))
                    if stored.status is not Status.HELD:
                        send(stored)
                case StoreVerdict(verdict):
                    send(verdict)
                case StoreFollowUp(event):
                    parent = alerts[event.parent_id or 0]
                    alerts[parent.id or 0] = attrs.evolve(parent, resolved_at=now)
                    send(attrs.evolve(event, id=next(ids)))
                case Fetch(alert_id, recognition):
                    make(decisions.fetched(alerts[alert_id], recognition, now=now))

    for line in lines:
        if not line.strip():
            continue
        hit = pipeline.process(line)
        if hit is None:
            continue
        counts["matched"] += 1
        now = max(now, hit.observation.seen or now)
        make(decisions.due(now, inventory=inventory))
        if hit.match.entries:
            actions = decisions.match(hit.observation, hit.match, inventory=inventory, now=now)
        else:
            actions = decisions.lookalike(hit.observation, hit.lookalikes, now=now)
        if not any(isinstance(action, StoreAlert) for action in actions):
            counts["duplicates"] += 1
        make(actions)
    make(decisions.end_holds(now, inventory=inventory))  # the capture is over: so is every hold
    skipped = sum(
        metrics.registry.get_sample_value("certwatch_ct_skipped_total", {"reason": r}) or 0
        for r in SKIP_REASONS
    )
    return ReplayReport(
        messages=pipeline.processed,
        matched=counts["matched"],
        severities=severities,
        duplicates=counts["duplicates"],
        skipped=int(skipped),
        seconds=time.perf_counter() - started,
    )
