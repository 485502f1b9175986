"""The CAA checker's history: new entries and the leader's refresh, on trio's clock."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from certwatch.core.caa import CaaRecord, Lookup
from certwatch.pipeline.caa import CaaChecker
from certwatch.store import SQLiteStore


class Resolver:
    """Answers every name with example.org's CAA, and notes when each name was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[float, str]] = []

    async def relevant(self, name: str) -> Lookup | None:
        self.asked.append((trio.current_time(), name))
        return Lookup("example.org", (CaaRecord(0, "issue", "letsencrypt.org"),))


async def test_the_refresh_spreads_its_lookups_over_the_interval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Four names every 400 s: one every 100 s, then the next round; *. dropped, once each."""
    store = await SQLiteStore.open(tmp_path / "cw.db", threaded=False)
    resolver = Resolver()
    checker = CaaChecker(resolver.relevant, store, timeout_s=2, stable_s=0, refresh_s=400,
                         clock=lambda: trio.current_time())  # fmt: skip

    async def names() -> list[str]:
        return ["a.example.org", "*.b.example.org", "b.example.org", "c.example.org", "d.org"]

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checker.refresh, names)
            await trio.sleep(799)
            nursery.cancel_scope.cancel()
        first_seen = await store.observe_caa("example.org", ['0 issue "letsencrypt.org"'], 900)
    finally:
        store.close()
    assert [(round(t), n) for t, n in resolver.asked] == [
        (0, "a.example.org"), (100, "b.example.org"), (200, "c.example.org"), (300, "d.org"),
        (400, "a.example.org"), (500, "b.example.org"), (600, "c.example.org"),
        (700, "d.org"),
    ]  # fmt: skip
    assert first_seen == 0  # the history has it from the first lookup on


async def test_a_new_watch_entry_is_looked_up_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """soon() queues a lookup that runs right away, beside everything else."""
    store = await SQLiteStore.open(tmp_path / "cw.db", threaded=False)
    resolver = Resolver()
    checker = CaaChecker(resolver.relevant, store, timeout_s=2, stable_s=0, refresh_s=400)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checker.run_new_entries)
            checker.soon("new.example.org")
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    assert resolver.asked == [(0, "new.example.org")]
