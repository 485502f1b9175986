"""Helpers for tests that run the whole service against real CT logs on loopback: the
watched name, a hijack of it, and waiting for a log's coverage through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from certwatch.settings import Settings
from tests.support.certs import CA, Issuance
from tests.support.ctlog import TestLog, message_for
from tests.support.servers import FeedServer
from tests.support.service import RunningService, run_service, wait_until

__all__ = [
    "WATCHED",
    "coverage",
    "errors",
    "followed",
    "hijack",
    "log_health",
    "log_with_hijack",
    "send_range",
    "settled",
    "skip",
    "start_log",
    "watching",
]

WATCHED = "victim.example"


async def start_log(nursery: trio.Nursery, kind: str, **kwargs: Any) -> TestLog:
    return await TestLog(kind, **kwargs).start(nursery)


def hijack(ca: CA, name: str = f"login.{WATCHED}") -> Issuance:
    return ca.issue([name])


@asynccontextmanager
async def watching(settings: Settings) -> AsyncIterator[RunningService]:
    """The service, watching ``WATCHED``."""
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        yield service


async def log_with_hijack(nursery: trio.Nursery, kind: str, ca: CA, **kwargs: Any) -> TestLog:
    """A log of 7 entries whose entry 3 is a hijack of a watched name."""
    log = await start_log(nursery, kind, **kwargs)
    log.add_filler(3)
    assert log.add_issuance(hijack(ca)) == 3
    log.add_filler(3)
    return log


async def skip(feed: FeedServer, log: TestLog, first: int, last: int) -> None:
    """certstream delivers the entries around ``first``-``last``, not those: a gap."""
    await feed.send(message_for(log, first - 1))
    await feed.send(message_for(log, last + 1))


async def send_range(feed: FeedServer, log: TestLog, indexes: range) -> None:
    for index in indexes:
        await feed.send(message_for(log, index))


async def coverage(service: RunningService) -> dict[str, Any]:
    health = (await service.client.get("/healthz")).json()
    return health["coverage"]  # type: ignore[no-any-return]


async def followed(service: RunningService, log: TestLog) -> dict[str, Any] | None:
    """The log's coverage in /healthz, if it is followed (yet)."""
    for entry in (await coverage(service))["logs"]:
        if entry["log"] == log.url:
            return entry  # type: ignore[no-any-return]
    return None


async def log_health(service: RunningService, log: TestLog) -> dict[str, Any]:
    entry = await followed(service, log)
    if entry is None:
        raise AssertionError(f"{log.url} not in /healthz")
    return entry


async def settled(service: RunningService, log: TestLog, position: int) -> None:
    """Wait until the log is processed up to ``position`` with nothing pending, and every
    alert has reached the receiver."""

    async def done() -> bool:
        entry = await followed(service, log)
        outbox = (await service.client.get("/healthz")).json()["outbox"]
        return (
            entry is not None
            and entry["position"] == position
            and entry["pending"] == 0
            and (outbox is None or outbox["pending"] == 0)
        )

    await wait_until(done, within=30)


async def errors(service: RunningService, log: TestLog, reason: str) -> float:
    text = (await service.client.get("/metrics")).text
    name = f'certwatch_ct_log_errors_total{{log="{log.url}",reason="{reason}"}}'
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
