"""No frame of any shape can stop the pipeline or the positions saver: hypothesis writes
the frames (indexes of every type and size, strings with NUL and control characters,
URLs of any text), each goes through the pipeline, every match is stored as an alert,
and the positions are saved to and read back from a real database of each backend."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from certwatch.core.alerts import new_alert
from certwatch.core.names import WatchIndex
from certwatch.metrics import Metrics
from certwatch.pipeline.coverage import Coverage
from certwatch.pipeline.matching import Matcher
from certwatch.store import open_store
from tests.support.service import make_settings

WATCHED = "watched.example"
LOG = "https://ct.example/2026h2"

texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
) | st.sampled_from(["\x00", "a\x00b", "\x1b[31m", "\n", "\u202e", ""])
indexes = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=2000),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.none(),
    st.booleans(),
    st.just("99999999999999999999"),
)
urls = st.one_of(st.just(LOG), texts, st.builds(lambda s: f"{LOG}/{s}", texts))
names = st.lists(st.one_of(st.just(f"www.{WATCHED}"), st.just(WATCHED), texts), max_size=4)


def frame(index: Any, url: Any, kind: Any, all_domains: list[Any], text: Any) -> str:
    return json.dumps(
        {
            "message_type": "certificate_update",
            "data": {
                "cert_index": index,
                "update_type": text,
                "cert_link": text,
                "source": {"url": url, "type": kind, "name": text},
                "leaf_cert": {
                    "all_domains": all_domains,
                    "fingerprint": text,
                    "serial_number": text,
                    "issuer": {"O": text, "CN": text, "aggregated": text},
                    "subject": {"CN": text},
                    "extensions": {"authorityKeyIdentifier": text},
                },
            },
        }
    )


frames = st.lists(
    st.builds(frame, indexes, urls, st.sampled_from(["rfc6962", "tiled", "", 5]), names, texts),
    min_size=1,
    max_size=12,
)


@hypothesis.given(frames=frames)
@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_no_frame_stops_the_pipeline_or_the_positions_saver(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, frames: list[str]
) -> None:
    """Any frames: processed or skipped, matches stored, positions saved and read back."""
    backend = {} if kind == "sqlite" else {"database_url": _database(request)}
    store = await open_store(
        make_settings(tmp_path, db_path=tmp_path / f"{next(_files)}.db", **backend)
    )
    try:
        metrics = Metrics()
        coverage = Coverage(metrics.coverage, backfill=True)
        pipeline = Matcher(WatchIndex([WATCHED]), metrics.feed, coverage=coverage)
        for n, raw in enumerate(frames):
            hit = pipeline.process(raw)
            if hit is None:
                continue
            alert = new_alert(hit.observation, hit.match, event_id=f"e-{n}-{id(raw)}", now=1.0)
            await store.insert_alert(alert)
            coverage.observe(hit.source_url, hit.source_type, hit.index)
        await coverage.save(store)
        again = Coverage(Metrics().coverage, backfill=True)
        await again.adopt(store)
        saved = {state.key: state.high for _, state in again}
        for _, state in coverage:
            if state.high is not None:
                assert saved[state.key] == state.high
        assert pipeline.processed == len(frames)
    finally:
        store.close()


_files = itertools.count()
_databases: dict[str, str] = {}


def _database(request: pytest.FixtureRequest) -> str:
    """One PostgreSQL database for every example of the test (examples add rows to it)."""
    if "url" not in _databases:
        cluster = request.getfixturevalue("postgres")
        _databases["url"] = cluster.new_database()
    return _databases["url"]
