"""Run the real supervisor in-process, with a real Hypercorn on a loopback port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from certwatch.service import serve
from certwatch.settings import Settings
from tests.support.timing import FAST

TOKEN = "test-token-0123456789"


def wired(tmp_path: Path, feed: Any, receiver: Any, **overrides: Any) -> Settings:
    """Settings for a service reading ``feed`` and delivering to ``receiver`` (test peers)."""
    return make_settings(tmp_path, certstream_url=feed.url, webhook_url=receiver.url, **overrides)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_token": TOKEN,
        "certstream_url": "ws://127.0.0.1:9/full-stream",  # discard port: nothing listens
        "db_path": tmp_path / "certwatch.db",
        "api_host": "127.0.0.1",
        "api_port": 0,
        "suspicious_grace_s": 0.0,
        "ct_backfill": False,  # tests that back-fill turn it on, with a log list of test logs
        "caa_check": False,  # tests of CAA turn it on, with a resolver of their own
        "timing": FAST,
    }
    values.update(overrides)
    return Settings(**values)


@attrs.define
class RunningService:
    url: str
    client: httpx.AsyncClient
    shutdown: trio.Event
    stopped: trio.Event
    """Set when the service has returned (after ``shutdown``)."""

    async def add_domain(self, value: str) -> None:
        """Watch ``value``: 201 when new, 200 when a restart finds it already watched."""
        response = await self.client.post("/domains", json={"value": value})
        assert response.status_code in (200, 201), response.text

    async def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/alerts", params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def metric(self, name: str) -> float:
        """One sample of ``/metrics``, e.g. ``certwatch_ct_messages_total{type="malformed"}``."""
        text = (await self.client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in /metrics")


@asynccontextmanager
async def run_service(settings: Settings, **kwargs: Any) -> AsyncIterator[RunningService]:
    """The whole service in this trio run; shut down (as on SIGTERM) on exit."""
    shutdown, stopped = trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(settings, shutdown, task_status=task_status, **kwargs)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run)
        headers = {"Authorization": f"Bearer {settings.api_token}"}
        # A connection per request: the fault tests' server closes idle connections after
        # 0.5 s, and a request sent on a pooled connection just as the server closes it is
        # lost ("Server disconnected without sending a response"; httpx retries no POST).
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=binds[0], headers=headers, limits=no_reuse) as client:
            yield RunningService(binds[0], client, shutdown, stopped)
        shutdown.set()


async def wait_until(check: Callable[[], Awaitable[bool]], *, within: float = 10) -> None:
    """Wait for a condition the service exposes only through its API (checked every 20 ms)."""
    with trio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - a condition behind HTTP, not an event
            await trio.sleep(0.02)


def run_certwatch(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m certwatch ARGS`` to its end, as a shell runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "certwatch", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
