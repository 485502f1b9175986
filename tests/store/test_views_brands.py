"""The views' brands: a change is indexed in a worker thread, never on the event loop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from certwatch.core import lookalikes
from certwatch.core.lookalikes import Brand, IndexedBrands
from certwatch.store import SQLiteStore
from certwatch.store.views import Views


async def test_a_brand_change_is_indexed_while_the_event_loop_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a new brand is indexed the loop runs and the old index answers; then the new."""
    store = await SQLiteStore.open(tmp_path / "cw.db")
    try:
        views = await Views.load(store)
        building, release = threading.Event(), threading.Event()
        index = lookalikes._indexed

        def held_build(brands: dict[str, Brand]) -> IndexedBrands:
            building.set()
            # Built on the event loop, this would hold it: the test's task could not release it.
            assert release.wait(10), "the event loop did not run while brands were indexed"
            return index(brands)

        monkeypatch.setattr(lookalikes, "_indexed", held_build)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(views.upsert_brand, Brand("ethereum.org", "ethereum"))
            assert await trio.to_thread.run_sync(building.wait, 10)
            assert views.brands.check(["ethereum.com"]) == ()  # the old index, still serving
            release.set()
        assert [hit.technique for hit in views.brands.check(["ethereum.com"])] == ["tld-swap"]
        assert [b.domain for b in views.brands.brands()] == ["ethereum.org"]

        monkeypatch.setattr(lookalikes, "_indexed", index)
        assert await views.delete_brand("ethereum.org")
        assert views.brands.check(["ethereum.com"]) == ()
    finally:
        store.close()
