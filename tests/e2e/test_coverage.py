"""Coverage through the service: skipped entries counted per log, a reconnect no gap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from certwatch.metrics import Metrics
from tests.support.certs import CA
from tests.support.servers import FeedServer
from tests.support.service import make_settings, run_service, wait_until

LOG_A = "https://log-a.example"
LOG_B = "https://log-b.example"


def missed(metrics: Metrics, log: str) -> float:
    value = metrics.registry.get_sample_value("certwatch_ct_missed_entries_total", {"log": log})
    return value or 0.0


def at(message: dict[str, Any], log: str, index: int) -> str:
    message["data"]["source"]["url"] = log
    message["data"]["cert_index"] = index
    return json.dumps(message)


async def test_gaps_through_the_service_and_no_gap_across_a_reconnect(
    tmp_path: Path, feed: FeedServer, ca: CA
) -> None:
    """Skipped indices in one log are counted; a reconnect does not count as a gap."""
    settings = make_settings(tmp_path, certstream_url=feed.url)
    template = ca.issue(["www.unwatched.example"]).message()
    async with run_service(settings) as service:
        for log, index in [(LOG_A, 1), (LOG_A, 2), (LOG_A, 6), (LOG_B, 40), (LOG_B, 41)]:
            await feed.send(at(template, log, index))

        async def processed(n: int) -> bool:
            total = await service.metric('certwatch_ct_messages_total{type="certificate_update"}')
            return total >= n

        await wait_until(lambda: processed(5))
        name = f'certwatch_ct_missed_entries_total{{log="{LOG_A}"}}'
        assert await service.metric(name) == 3
        await feed.drop()
        await feed.wait_for_connections(2)
        await feed.send(at(template, LOG_A, 1000))
        await feed.send(at(template, LOG_A, 1001))
        await wait_until(lambda: processed(7))
        assert await service.metric(name) == 3
        health = (await service.client.get("/healthz")).json()
    assert health["feed"]["missed_entries"] == 3
    assert health["feed"]["dropped"] == 0
    assert health["feed"]["disconnected_seconds"] >= 0
