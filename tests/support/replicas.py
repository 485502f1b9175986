"""certwatch replicas as real processes on one PostgreSQL database, each with a feed of
its own (the same messages sent to every feed), for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.support.servers import FeedServer, free_port
from tests.support.service import TOKEN

__all__ = ["Fleet", "Replica", "open_fleet"]


class Replica:
    """One ``python -m certwatch`` process (started, killed, started again)."""

    def __init__(self, name: str, feed: FeedServer, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.feed = feed
        self.port = free_port()
        self.env = {
            **env,
            "API_PORT": str(self.port),
            "CERTSTREAM_URL": feed.url,
        }
        self.log = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "certwatch"], env=self.env, stdout=log, stderr=log
            )

    def kill(self) -> None:
        """kill -9: no shutdown, no last save, connections cut."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    async def health(self) -> dict[str, Any]:
        response = await self.client.get("/healthz")
        return response.json()  # type: ignore[no-any-return]

    async def wait_ready(self) -> None:
        """Until the API answers and the feed is connected (checked every 50 ms: the
        process gives no other sign)."""
        with trio.fail_after(60):
            while True:
                with contextlib.suppress(httpx.TransportError, json.JSONDecodeError):
                    health = await self.health()
                    if health["feed"]["connected"]:
                        return
                await trio.sleep(0.05)

    async def wait_watching(self, entries: int) -> None:
        """Until this replica's views hold ``entries`` watch entries (checked every 50 ms)."""
        with trio.fail_after(10):
            while (await self.health())["watch_entries"] < entries:  # noqa: ASYNC110
                await trio.sleep(0.05)


class Fleet:
    """Replicas on one database, a feed each, the same messages to every feed."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas

    async def send(self, message: dict[str, Any]) -> None:
        """One message to every feed (each replica reads its own)."""
        for replica in self.replicas:
            if replica.feed.connections:
                await replica.feed.send(message)

    async def leader(self) -> Replica:
        """The replica holding the leader role (waiting for one to take it)."""
        with trio.fail_after(30):
            while True:
                for replica in self.replicas:
                    if replica.proc is None:
                        continue
                    with contextlib.suppress(httpx.TransportError, json.JSONDecodeError):
                        if (await replica.health())["database"]["leader"]:
                            return replica
                await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def open_fleet(
    nursery: trio.Nursery, env: dict[str, str], logs: Path, *, watch: str
) -> AsyncIterator[Fleet]:
    """Three replicas (``a``, ``b``, ``c``) with ``env``, a feed each, started and ready,
    watching ``watch``; stopped at the end."""
    replicas = []
    for name in ("a", "b", "c"):
        feed = await FeedServer().start(nursery)
        replicas.append(Replica(name, feed, env, logs))
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            await replica.wait_ready()
        response = await replicas[0].client.post("/domains", json={"value": watch})
        assert response.status_code == 201, response.text
        # The others learn of the entry within 2 s: until they do, a frame only the first
        # matches is lost if the first is killed before storing it (so a test that kills
        # the leader at once lost two issuances so in a CI run).
        for replica in replicas:
            await replica.wait_watching(1)
        yield Fleet(replicas)
    finally:
        for replica in replicas:
            replica.stop()
            await replica.client.aclose()
