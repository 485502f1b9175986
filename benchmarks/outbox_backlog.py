"""The feed's rate and memory with 1,000 pending alerts and a receiver answering in 2 s.

    uv run python benchmarks/outbox_backlog.py [--messages 200000]

Runs certwatch twice over the same feed (full-stream frames flat out from a separate
process): once with an empty outbox and an instant receiver, once with 1,000 alerts
pending and a receiver that takes 2 s per request. The feed rate should not change, nor
should memory grow: the backlog lives in SQLite and at most 4 deliveries are in flight.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from benchmarks.common import Certwatch, capture, feed_server, machine, prepare_db
from certwatch.store.sqlite import SQLiteStore
from tests.support.alerts import pending_alert
from tests.support.servers import Receiver


async def add_backlog(db: Path, count: int) -> None:
    store = await SQLiteStore.open(db)
    now = time.time()
    for n in range(count):
        await store.insert_alert(pending_alert(n, now))
    store.close()


Health = dict[str, Any]


def measure(db: Path, url: str, hook: str, messages: int) -> tuple[float, list[float], Health]:
    """(frames/s, RSS samples in MB, final /healthz) for one certwatch run."""
    service = Certwatch(db, url, WEBHOOK_URL=hook, WEBHOOK_TIMEOUT_S="10")
    try:
        service.wait_ready()
        samples: list[tuple[int, float]] = []
        rate, health = service.follow(messages, samples=samples, every=messages // 5)
        return rate, [rss for _, rss in samples], health
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    frames = capture()
    results: dict[str, tuple[float, list[float], Health, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:

        async def run() -> None:
            runs = (("empty outbox", 0, 0.0), ("1,000 pending, 2 s receiver", 1000, 2.0))
            async with trio.open_nursery() as nursery:
                for label, backlog, delay in runs:
                    db = Path(tmp) / f"cw-{backlog}.db"
                    await trio.to_thread.run_sync(
                        functools.partial(prepare_db, db, entries=10, certs=1000)
                    )
                    await add_backlog(db, backlog)
                    receiver = await Receiver().start(nursery)
                    receiver.delay = delay
                    with feed_server(frames, args.messages) as url:
                        rate, rss, health = await trio.to_thread.run_sync(
                            measure, db, url, receiver.url, args.messages
                        )
                    results[label] = (rate, rss, health, receiver.attempts)
                    receiver.stop()

        trio.run(run)
    print(f"machine: {machine()}")
    print(f"{args.messages:,} full-stream frames per run")
    print("| outbox | feed msgs/s | RSS samples | pending at end | receiver requests |")
    print("|---|---|---|---|---|")
    for label, (rate, rss, health, attempts) in results.items():
        samples = ", ".join(f"{x:.0f}" for x in rss)
        pending = health.get("outbox", {}).get("pending")
        print(f"| {label} | {rate:,.0f} | {samples} MB | {pending} | {attempts} |")


if __name__ == "__main__":
    main()
