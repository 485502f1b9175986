"""``certwatch replay FILE``: the real pipeline over a capture, printing what would alert.

The capture is certstream messages, one JSON object per line (``-`` reads stdin). Each line
goes through the same decode, match, dedupe and recognition as the service, against the
watch list and inventory in ``DB_PATH``; nothing is stored and nothing is sent. Every
issuance that would alert is printed as its webhook payload (one JSON line); a summary goes
to stderr. The grace period is not simulated: ``suspicious`` means "suspicious unless its
certificate is registered within SUSPICIOUS_GRACE_S".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import attrs
import msgspec
import trio

from certwatch.core.alerts import Severity, decided, new_alert, webhook_payload
from certwatch.core.messages import SKIP_REASONS
from certwatch.core.names import WatchIndex
from certwatch.core.recognition import Inventory
from certwatch.errors import StoreError
from certwatch.metrics import Metrics
from certwatch.pipeline.matching import Pipeline
from certwatch.store.sqlite import Store

__all__ = ["ReplayReport", "load_views", "replay"]


@attrs.frozen
class ReplayReport:
    messages: int
    matched: int
    info: int
    suspicious: int
    duplicates: int
    skipped: int
    seconds: float

    def summary(self) -> str:
        rate = self.messages / self.seconds if self.seconds else 0.0
        return (
            f"replayed {self.messages} messages in {self.seconds:.2f} s ({rate:,.0f} msg/s): "
            f"{self.matched} matched, {self.info + self.suspicious} would alert "
            f"({self.info} info, {self.suspicious} suspicious), {self.duplicates} duplicate "
            f"copies, {self.skipped} skipped as malformed or unknown"
        )


async def _load(db_path: Path) -> tuple[WatchIndex, Inventory]:
    store = await Store.open(db_path)
    try:
        index = WatchIndex(await store.domain_values())
        inventory = Inventory(keys=await store.list_keys())
        async for batch in store.cert_batches():
            inventory.add_certs(batch)
    finally:
        store.close()
    return index, inventory


def load_views(db_path: Path) -> tuple[WatchIndex, Inventory]:
    """The watch list and inventory of an existing database."""
    if not db_path.exists():
        raise StoreError(f"no database at {str(db_path)!r} (set DB_PATH)")
    return trio.run(_load, db_path)


def replay(
    lines: Iterable[str], index: WatchIndex, inventory: Inventory, out: TextIO
) -> ReplayReport:
    """Run the pipeline over ``lines``; write would-be webhook payloads to ``out``."""
    metrics = Metrics()
    pipeline = Pipeline(index, metrics)
    seen: set[str] = set()
    counts = {"matched": 0, Severity.INFO: 0, Severity.SUSPICIOUS: 0, "duplicates": 0}
    started = time.perf_counter()
    encode = msgspec.json.encode
    for line in lines:
        if not line.strip():
            continue
        hit = pipeline.process(line)
        if hit is None:
            continue
        observation, match = hit
        counts["matched"] += 1
        facts = observation.facts
        issuance = facts.issuance_key()
        if issuance in seen:
            counts["duplicates"] += 1
            continue
        seen.add(issuance)
        now = time.time()
        alert = new_alert(observation, match, event_id=f"replay-{len(seen)}", now=now)
        alert = decided(alert, inventory.recognise(facts), observer=True, now=now)
        counts[alert.severity or "suspicious"] += 1
        out.write(encode(webhook_payload(alert)).decode() + "\n")
    skipped = sum(
        metrics.registry.get_sample_value("certwatch_ct_skipped_total", {"reason": r}) or 0
        for r in SKIP_REASONS
    )
    return ReplayReport(
        messages=pipeline.processed,
        matched=counts["matched"],
        info=counts[Severity.INFO],
        suspicious=counts[Severity.SUSPICIOUS],
        duplicates=counts["duplicates"],
        skipped=int(skipped),
        seconds=time.perf_counter() - started,
    )
